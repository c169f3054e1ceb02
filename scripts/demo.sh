#!/usr/bin/env bash
# The main job: redis-server replicated on 3 replicas of this machine with `ftexec up`.
# Shows writes, a kill -9 of the leader, the acknowledged writes still there, and the cluster's
# state; then leaves the cluster running in the foreground (Ctrl-C stops it; DEMO_EXIT=1 stops
# right after the show).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ftexec -p ftctl
FT=$PWD/target/release/ftexec
CTL=$PWD/target/release/ftctl
PORT=${PORT:-7777}
dir=$(mktemp -d /tmp/ftexec-up.XXXXXX)
echo "== ftexec up --replicas 3 --dir $dir -- redis-server --port $PORT --save ''"
"$FT" up --replicas 3 --dir "$dir" -- redis-server --port "$PORT" --save '' &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null || true' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
echo "== writes through the leader"
for i in 1 2 3; do redis-cli -p "$PORT" set "key$i" "value$i"; done
redis-cli -p "$PORT" incr visits
"$CTL" status --config "$dir/cluster.toml"
leader=$("$CTL" status --config "$dir/cluster.toml" --json |
  python3 -c 'import json,sys; print([n["pid"] for n in json.load(sys.stdin)["nodes"] if n["role"]=="leader"][0])')
echo "== kill -9 of the leader's ftexec (pid $leader)"
kill -9 "$leader"
start=$(date +%s%N)
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
echo "== a new leader answers after $(( ($(date +%s%N) - start) / 1000000 )) ms; the acknowledged writes:"
for i in 1 2 3; do redis-cli -p "$PORT" get "key$i"; done
redis-cli -p "$PORT" incr visits
sleep 2
"$CTL" status --config "$dir/cluster.toml"
if [ "${DEMO_EXIT:-0}" = 1 ]; then exit 0; fi
echo "== the cluster runs on (redis-cli -p $PORT); Ctrl-C stops it"
wait $up
