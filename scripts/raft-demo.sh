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
# The id of the node whose role is leader, or nothing.
leader() {
  "$FTCTL" status --config "$CFG" --json 2>/dev/null | python3 -c '
import json, sys
nodes = json.load(sys.stdin)
nodes = nodes["nodes"] if isinstance(nodes, dict) else nodes
print(next((str(n["id"]) for n in nodes if n.get("role") == "leader"), ""))' 2>/dev/null || true
}
for _ in $(seq 50); do
  [ -n "$(leader)" ] && break
  sleep 0.2
done
"$FTCTL" status --config "$CFG"
leader=$(leader)
[ -n "$leader" ] || { echo "no leader elected" >&2; exit 1; }
echo "== kill -9 of the leader (node $leader)"
kill -9 "${pids[$((leader - 1))]}"
for _ in $(seq 50); do
  sleep 0.2
  new=$(leader)
  [ -n "$new" ] && [ "$new" != "$leader" ] && break
done
"$FTCTL" status --config "$CFG"
