#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, end-to-end). The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
  echo "test: not root: tests that need root (bind mounts, network namespaces) will say SKIP" >&2
fi
cargo build --workspace --bins
# The syscall buffer is on by default; the socket and server tests run once more without it.
status=0
cargo test --workspace --no-fail-fast || status=$?
FTEXEC_SYSCALL_BUFFER=0 cargo test -p ft-testsuite --no-fail-fast --test servers --test real_servers \
  --test replication || status=$?
exit $status
