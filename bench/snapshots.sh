#!/usr/bin/env bash
# Checkpoints (issue 18). Part 1: redis-server filled with SIZES MB of random values under
# `ftexec record`, then 50,000 more SETs; its log replayed with checkpoints: the pause of the program for a capture, the
# background write, the file size, and how long a restore from the last checkpoint takes against
# a replay of the whole log. Part 2: `ftexec up --replicas 3 --snapshot-every EVERY` under
# redis-benchmark load: each node's Raft log size and newest checkpoint after LOAD1 and LOAD2
# seconds of load, and how long a follower killed with -9 at that point takes to be back in
# lockstep (its events at the leader's count at the kill); FILL_MB=N first fills redis with N MB
# (the state a rejoin restores). Part 3: the leader's throughput
# (redis-benchmark -t set,get -n N3 -P 1) with followers that never checkpoint and with followers
# checkpointing every EVERY3 events. PARTS="1 2 3" selects the parts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ftexec -p ftctl -p ftdbg
FT=${FTEXEC:-$PWD/target/release/ftexec}
CTL=$PWD/target/release/ftctl
SIZES=${SIZES:-"10 100"}; EVERY=${EVERY:-20000}; LOAD1=${LOAD1:-30}; LOAD2=${LOAD2:-120}
PARTS=${PARTS:-"1 2 3"}; N3=${N3:-100000}; EVERY3=${EVERY3:-5000}
has() { [[ " $PARTS " == *" $1 "* ]]; }
work=$(mktemp -d /tmp/ftexec-bench-snap.XXXXXX)
wait_port() { for _ in $(seq 300); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
fill() { # port megabytes: random 1000-byte values (hex of 500 random bytes)
  python3 - "$2" <<'EOF' | redis-cli -p "$1" --pipe >/dev/null
import os, sys
n = int(sys.argv[1]) * 1000
out = sys.stdout.buffer
for i in range(n):
    v = os.urandom(500).hex().encode()
    k = b"key:%d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
EOF
}

if has 1; then
echo "== part 1: capture and restore (redis under ftexec record, values of random bytes)"
printf "%8s %10s %10s %10s %12s %12s %12s\n" "data_MB" "rss_MB" "capture_ms" "write_ms" "file_MB" "restore_s" "replay_s"
for mb in $SIZES; do
  p=$((7600 + RANDOM % 300))
  log="$work/r$mb.ftlog"
  "$FT" -q record -o "$log" -- redis-server --port $p --save '' --appendonly no >/dev/null 2>&1 & pid=$!
  wait_port $p
  fill $p "$mb"
  rss=$(redis-cli -p $p info memory | awk -F: '/^used_memory_rss:/{printf "%.0f", $2/1048576}')
  # History after the fill: 50,000 small writes (a replay of the whole log re-executes them).
  redis-benchmark -p $p -t set -n 50000 -c 10 -r 1000 -d 10 >/dev/null 2>&1
  redis-cli -p $p shutdown nosave >/dev/null 2>&1 || true; wait $pid 2>/dev/null || true
  events=$("$PWD/target/release/ftdbg" stats --json "$log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
  t0=$(date +%s.%N)
  "$FT" -v replay "$log" --checkpoint-every $((events - 30)) >/dev/null 2>"$work/ck$mb.err"
  t1=$(date +%s.%N)
  line=$(grep "INFO checkpoint," "$work/ck$mb.err" | tail -1)
  pause=$(sed -n 's/.*capture_ms: \([0-9.]*\).*/\1/p' <<<"$line")
  wms=$(sed -n 's/.*written_ms: \([0-9.]*\).*/\1/p' <<<"$line")
  file=$(sed -n 's/.*file: \([^,]*\),.*/\1/p' <<<"$line")
  size=$(stat -c %s "$file")
  r0=$(date +%s.%N); "$FT" -q replay "$log" --from-checkpoint "$file" >/dev/null; r1=$(date +%s.%N)
  f0=$(date +%s.%N); "$FT" -q replay "$log" >/dev/null; f1=$(date +%s.%N)
  printf "%8s %10s %10s %10s %12.1f %12.2f %12.2f\n" "$mb" "$rss" "$pause" "$wms" "$(echo "$size/1048576" | bc -l)" \
    "$(echo "$r1-$r0" | bc -l)" "$(echo "$f1-$f0" | bc -l)"
done

fi
if has 2; then
echo "== part 2: ftexec up --replicas 3 --snapshot-every $EVERY under redis-benchmark load"
p=$((7900 + RANDOM % 90))
"$FT" up --replicas 3 --fsync never --dir "$work/up" --snapshot-every "$EVERY" -- \
  redis-server --port $p --save '' --appendonly no --bind 127.0.0.1 >"$work/up.out" 2>&1 & up=$!
trap 'kill -INT $up 2>/dev/null; sleep 3; kill -9 -- -$up 2>/dev/null || true' EXIT
wait_port $p
if [ "${FILL_MB:-0}" -gt 0 ]; then fill $p "$FILL_MB"; fi
redis-benchmark -p $p -t set,get -n 100000000 -c 20 -r 100000 -d 100 -P 1 >/dev/null 2>&1 & load=$!
st() { "$CTL" status --json --config "$work/up/cluster.toml" --timeout-ms 2000; }
printf "%6s %5s %9s %10s %10s %9s %16s %10s\n" "load_s" "node" "role" "events" "log_KiB" "entries" "ckpt_KiB(ev)" "rejoin_s"
start=$(date +%s)
for at in $LOAD1 $LOAD2; do
  while [ $(( $(date +%s) - start )) -lt "$at" ]; do sleep 1; done
  doc=$(st)
  victim=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(n["pid"] for n in d["nodes"] if n["role"]=="follower"))' <<<"$doc")
  vid=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(next(n["id"] for n in d["nodes"] if n["role"]=="follower"))' <<<"$doc")
  top=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(max(n.get("events") or 0 for n in d["nodes"]))' <<<"$doc")
  k0=$(date +%s.%N); kill -9 "$victim"
  while :; do
    ev=$(st | python3 -c "import json,sys; d=json.load(sys.stdin); n=[n for n in d['nodes'] if n['id']==$vid][0]; print(n.get('events') or 0 if n.get('pid') != $victim else 0)")
    [ "$ev" -ge "$top" ] && break
    sleep 0.1
  done
  k1=$(date +%s.%N)
  DOC="$doc" python3 - "$at" "$(echo "$k1-$k0" | bc -l)" "$vid" <<'EOF'
import json, os, sys
d = json.loads(os.environ["DOC"])
for n in d["nodes"]:
    c = n.get("checkpoint") or {}
    ck = "%d(%d)" % ((c.get("bytes") or 0) // 1024, c.get("event") or 0) if c else "-"
    rj = "%.2f" % float(sys.argv[2]) if str(n["id"]) == sys.argv[3] else ""
    held = (n.get("commit") or 0) - (n.get("first_index") or 1) + 1
    print("%6s %5s %9s %10s %10s %9s %16s %10s" % (sys.argv[1], n["id"], n["role"], n.get("events"), (n.get("log_bytes") or 0) // 1024, held, ck, rj))
EOF
done
kill $load 2>/dev/null || true
kill -INT $up 2>/dev/null || true; sleep 3; trap - EXIT
fi
if has 3; then
echo "== part 3: the leader's throughput, followers without and with checkpoints"
printf "%-22s %6s %12s %10s %10s\n" "followers" "test" "req/s" "p50_ms" "captures"
for every in 0 "$EVERY3"; do
  p=$((7990 + RANDOM % 9))
  d="$work/up3-$every"
  "$FT" -v up --replicas 3 --fsync never --dir "$d" --snapshot-every "$every" -- \
    redis-server --port $p --save '' --appendonly no --bind 127.0.0.1 >"$d.out" 2>&1 & up=$!
  wait_port $p
  redis-benchmark -p $p -t set,get -n "$N3" -c 50 -P 1 -r 100000 -d 100 --csv 2>/dev/null | python3 -c '
import csv, sys
for r in list(csv.reader(sys.stdin))[1:]:
    print(r[0].strip("\""), r[1], r[4])' > "$d.rps"
  kill -INT $up; wait $up 2>/dev/null || true
  caps=$(cat "$d"/n*/ftexec.log 2>/dev/null | grep -c "INFO checkpoint," || true)
  label="never"; [ "$every" != 0 ] && label="every $every events"
  while read -r t rps p50; do printf "%-22s %6s %12s %10s %10s\n" "$label" "$t" "$rps" "$p50" "$caps"; done < "$d.rps"
done
fi
echo "(work files in $work)"
