#!/usr/bin/env bash
# Starts the 3-node Raft cluster of examples/cluster.toml on loopback, shows `ftctl status`
# while all three run and again after the leader is killed, then stops the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ftctl
FTCTL=$PWD/target/release/ftctl
CFG=examples/cluster.toml
rm -rf /tmp/ftexec-demo
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
for id in 1 2 3; do
  "$FTCTL" serve --config "$CFG" --id "$id" >/tmp/ftexec-demo-node$id.log 2>&1 &
  pids+=($!)
done
echo "== Raft cluster of $CFG: 3 nodes started"
for _ in $(seq 50); do
  "$FTCTL" status --config "$CFG" 2>/dev/null | grep -q leader && break
  sleep 0.2
done
"$FTCTL" status --config "$CFG"
leader=$("$FTCTL" status --config "$CFG" --json | python3 -c 'import json,sys; print([n["id"] for n in json.load(sys.stdin)["nodes"] if n["role"]=="leader"][0])')
echo "== kill -9 of the leader (node $leader)"
kill -9 "${pids[$((leader - 1))]}"
for _ in $(seq 50); do
  sleep 0.2
  "$FTCTL" status --config "$CFG" 2>/dev/null | grep -q leader && break
done
"$FTCTL" status --config "$CFG"
