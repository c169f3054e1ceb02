#!/usr/bin/env bash
# redis-benchmark against redis-server: native, under `ftexec record` (no Raft), and under
# `ftexec up --replicas 3` (Raft, output commit), each without and with the syscall buffer
# (`+sb`: --syscall-buffer). Prints requests/s and p50/p99 latency (ms), then how long a replay
# of each recording takes. N=requests (default 20000), C=clients (50). FSYNC=never|always for
# the replicated runs.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p ftexec -p ftctl -p ftdbg
FT=${FTEXEC:-$PWD/target/release/ftexec}   # FTEXEC=another build to compare (before/after)
N=${N:-20000}; C=${C:-50}; FSYNC=${FSYNC:-never}
work=$(mktemp -d /tmp/ftexec-bench.XXXXXX)
wait_port() { for _ in $(seq 200); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
bench() { # port pipeline -> "rps p50 p99" for set and get
  redis-benchmark -p "$1" -t set,get -n "$N" -c "$C" -P "$2" --csv 2>/dev/null |
    python3 -c '
import csv,sys
rows=list(csv.reader(sys.stdin))
for r in rows[1:]:
    print(r[0].strip("\""), r[1], r[4], r[6])'
}
printf "%-10s %-3s %-4s %12s %9s %9s\n" mode P test "req/s" "p50_ms" "p99_ms"
run_mode() { # mode port
  for P in 1 16; do
    bench "$2" "$P" | while read -r t rps p50 p99; do printf "%-10s %-3s %-4s %12s %9s %9s\n" "$1" "$P" "$t" "$rps" "$p50" "$p99"; done
  done
}
p=$((7400 + RANDOM % 500))
redis-server --port $p --save '' >/dev/null & pid=$!
wait_port $p; run_mode native $p
redis-benchmark -p $p -t set -n 5000 -c 1 -P 1 --csv 2>/dev/null | python3 -c '
import csv,sys
r=list(csv.reader(sys.stdin))[1]
print("%-10s %-3s %-4s %12s %9s %9s" % ("native", "1", "SET", r[1], r[4], r[6]), "(C=1)")'
kill $pid; wait $pid 2>/dev/null || true
for sb in "" "+sb"; do
  flag=--no-syscall-buffer; [ -n "$sb" ] && flag=--syscall-buffer
  p=$((p + 1))
  "$FT" -q $flag record -o "$work/r$sb.ftlog" -- redis-server --port $p --save '' >/dev/null 2>&1 & pid=$!
  wait_port $p; run_mode "record$sb" $p; redis-cli -p $p shutdown nosave >/dev/null 2>&1 || true; wait $pid 2>/dev/null || true
done
for sb in "" "+sb"; do
  flag=--no-syscall-buffer; [ -n "$sb" ] && flag=--syscall-buffer
  p=$((p + 1))
  "$FT" $flag up --replicas 3 --fsync "$FSYNC" --dir "$work/up$sb" -- redis-server --port $p --save '' >/dev/null 2>&1 & pid=$!
  wait_port $p; run_mode "up$sb" $p
  # One client, one request at a time: the latency output commit adds.
  redis-benchmark -p $p -t set -n 5000 -c 1 -P 1 --csv 2>/dev/null | python3 -c '
import csv,sys
r=list(csv.reader(sys.stdin))[1]
print("%-10s %-3s %-4s %12s %9s %9s" % (sys.argv[1], "1", "SET", r[1], r[4], r[6]), "(C=1)")' "up$sb"
  kill -INT $pid; wait $pid 2>/dev/null || true
done
for sb in "" "+sb"; do
  s=$(date +%s.%N); "$FT" -q replay "$work/r$sb.ftlog" >/dev/null 2>&1 || echo "replay of record$sb failed"
  printf "replay of record%-3s %6.2f s (%s events)\n" "$sb" "$(echo "$(date +%s.%N) - $s" | bc)" \
    "$("${FT%/*}/ftdbg" stats "$work/r$sb.ftlog" | sed -n 's/^events: //p')"
done
rm -rf "$work"
