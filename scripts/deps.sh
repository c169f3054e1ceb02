#!/usr/bin/env bash
# Installs what ftexec's build, tests and demos need on Debian 12 (idempotent). Needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(build-essential gcc libc6-dev linux-libc-dev sqlite3 python3 redis-server redis-tools memcached iproute2 gdb busybox-static nginx-light postgresql openjdk-17-jdk-headless mariadb-server apache2 wrk libmemcached-tools gunicorn varnish)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian starts redis-server and memcached as services; the tests start their own.
for svc in redis-server memcached nginx postgresql mariadb apache2 varnish; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then systemctl stop "$svc" || true; fi
done
export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "deps: cargo is missing: install Rust with rustup (https://rustup.rs), then rerun" >&2
  exit 1
fi
