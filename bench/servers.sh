#!/usr/bin/env bash
# nginx (master + 4 workers, wrk) and memcached (-t 4, memcaslap: 90% get, 10% set) natively,
# under `ftexec record` and under `ftexec up --replicas 3`, each with and without the syscall
# buffer (`-nosb`: --no-syscall-buffer). Prints requests/s (memcached: operations/s), the ratio to
# native, and nginx's p50 latency. D=seconds per run (default 5), C=connections (16).
# Needs wrk and memcaslap (apt-get install wrk libmemcached-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ftexec -p ftctl
FT=${FTEXEC:-$PWD/target/release/ftexec}
D=${D:-5}; C=${C:-16}
for tool in wrk memcaslap nginx memcached; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || { echo "bench/servers.sh needs $tool (apt-get install wrk libmemcached-tools nginx-light memcached)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
work=$(mktemp -d /tmp/ftexec-bench-srv.XXXXXX)
chmod 755 "$work"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

wait_tcp() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# start MODE DIR -- CMD...: runs CMD natively or under ftexec; echoes its pid.
start() {
  local mode=$1 dir=$2; shift 3
  case "$mode" in
    native) "$@" >/dev/null 2>&1 & ;;
    record) "$FT" -q record -o "$dir/log" -- "$@" >/dev/null 2>&1 & ;;
    record-nosb) "$FT" -q --no-syscall-buffer record -o "$dir/log" -- "$@" >/dev/null 2>&1 & ;;
    up) "$FT" up --replicas 3 --dir "$dir/up" -- "$@" >/dev/null 2>&1 & ;;
    up-nosb) "$FT" --no-syscall-buffer up --replicas 3 --dir "$dir/up" -- "$@" >/dev/null 2>&1 & ;;
  esac
  echo $!
}
stop() { kill -INT "$1" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1" 2>/dev/null || true; }

printf "%-10s %-12s %12s %7s %9s\n" server mode "req/s" "x_native" "p50_ms"
native_nginx=0; native_mc=0
port=$((8600 + RANDOM % 300))
for mode in native record record-nosb up up-nosb; do
  port=$((port + 1))
  d="$work/nginx-$mode"; mkdir -p "$d/conf" "$d/html" "$d/logs"; chmod -R 755 "$d"
  echo "<h1>bench</h1>" > "$d/html/index.html"
  cat > "$d/conf/nginx.conf" <<EOF
daemon off; master_process on; worker_processes 4; error_log /dev/null; pid $d/logs/nginx.pid;
events { worker_connections 256; }
http { access_log off; server { listen 127.0.0.1:$port; root $d/html; } }
EOF
  pid=$(start "$mode" "$d" -- "$NGINX" -p "$d" -c conf/nginx.conf)
  wait_tcp "$port"; sleep 0.5
  out=$(wrk -t 2 -c "$C" -d "${D}s" --latency "http://127.0.0.1:$port/index.html" 2>&1)
  stop "$pid"
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {v=$2; if (v ~ /us$/) {sub(/us$/, "", v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v=v*1000}; print v}')
  [ "$mode" = native ] && native_nginx=$rps
  printf "%-10s %-12s %12.0f %7.2f %9s\n" nginx "$mode" "$rps" "$(echo "$rps / $native_nginx" | bc -l)" "$p50"
done
for mode in native record record-nosb up up-nosb; do
  port=$((port + 1))
  d="$work/mc-$mode"; mkdir -p "$d"
  pid=$(start "$mode" "$d" -- memcached -u memcache -p "$port" -U 0 -t 4)
  wait_tcp "$port"; sleep 0.5
  out=$(memcaslap -s "127.0.0.1:$port" -t "${D}s" -c "$C" -T 2 2>&1 || true)
  stop "$pid"
  tps=$(echo "$out" | sed -n 's/.*TPS: \([0-9]*\).*/\1/p' | tail -1)
  [ "$mode" = native ] && native_mc=$tps
  printf "%-10s %-12s %12.0f %7.2f %9s\n" memcached "$mode" "${tps:-0}" "$(echo "${tps:-0} / $native_mc" | bc -l)" "-"
done
