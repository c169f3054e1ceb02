#!/usr/bin/env bash
# Record/replay cost: native vs `ftexec record` vs `ftexec replay` (issue #2), and the floor:
# a bare ptrace seccomp stop (ft-bare-tracer resumes every stop untouched). `sockpair` is glibc's
# write and read on a socketpair, which the syscall buffer records without a stop (issue 17).
# Usage: bench/record_replay.sh [N]   (default N=200000 syscalls per loop). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
RUNS=${RUNS:-3}
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ftexec -p ft-interposer --bins
FT=${FTEXEC:-target/release/ftexec}   # FTEXEC=another build to compare (before/after)
BARE=target/release/ft-bare-tracer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/loop" bench/c/loop.c

# Median wall-clock time in microseconds over $RUNS runs. (ftexec pins tracer and tracees to one
# CPU, so a ptrace stop does not pay a cross-CPU wake-up; the bare tracer launches the same way.)
ms() {
  local t=()
  for _ in $(seq "$RUNS"); do
    if [ -n "${PREP:-}" ]; then $PREP; fi
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }
    e=$(date +%s%N)
    t+=($(( (e - s) / 1000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}

sqlite_script() {
  cat <<SQL
CREATE TABLE t(id INTEGER PRIMARY KEY, r INTEGER, at TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<20000)
INSERT INTO t(r, at) SELECT random(), datetime('now') FROM c;
SELECT count(*), sum(r % 7) FROM t;
SQL
}
sqlite_script > "$work/script.sql"
mkdir -p "$work/db0"
fresh() { rm -rf "$work/db"; cp -a "$work/db0" "$work/db"; }

printf '%-34s %12s %12s %12s %12s\n' "workload" "native" "bare stop" "record" "replay"
# Per-syscall cost = (time for 2N calls - time for N calls) / N: start-up costs cancel out.
for kind in clock allowed sockpair; do
  # An allowed syscall costs ~0.15 us: use 10x more of them so start-up noise cancels.
  if [ "$kind" = allowed ]; then N=$((N * 10)); fi
  N2=$((2 * N))
  nat=$(( $(ms "$work/loop" "$kind" "$N2") - $(ms "$work/loop" "$kind" "$N") ))
  bare=$(( $(ms "$BARE" "$work/loop" "$kind" "$N2") - $(ms "$BARE" "$work/loop" "$kind" "$N") ))
  rec2=$(ms "$FT" record -q -o "$work/$kind.2.ftlog" -- "$work/loop" "$kind" "$N2")
  rec1=$(ms "$FT" record -q -o "$work/$kind.ftlog" -- "$work/loop" "$kind" "$N")
  rep=$(( $(ms "$FT" replay -q "$work/$kind.2.ftlog") - $(ms "$FT" replay -q "$work/$kind.ftlog") ))
  rec=$((rec2 - rec1))
  per() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.3f us", t / n }'; }
  printf '%-34s %12s %12s %12s %12s\n' "$kind syscall (per call)" "$(per "$nat")" "$(per "$bare")" "$(per "$rec")" "$(per "$rep")"
  ratios="${ratios:-}$kind: record/bare $(awk -v a="$rec" -v b="$bare" 'BEGIN { printf "%.2f", a / b }'), record/native $(awk -v a="$rec" -v b="$nat" 'BEGIN { printf "%.2f", a / b }'), replay/record $(awk -v a="$rep" -v b="$rec" 'BEGIN { printf "%.2f", a / b }'); "
done
nat=$(PREP=fresh ms sqlite3 "$work/db/x.db" ".read $work/script.sql")
rec=$(PREP=fresh ms "$FT" record -q --data-dir "$work/db" -o "$work/sql.ftlog" -- sqlite3 "$work/db/x.db" ".read $work/script.sql")
rep=$(PREP=fresh ms "$FT" replay -q --data-dir "$work/db" "$work/sql.ftlog")
printf '%-34s %12s %12s %12s %12s\n' "sqlite3 20k-row script (total)" "$((nat / 1000)) ms" "-" "$((rec / 1000)) ms" "$((rep / 1000)) ms"
echo "ratios: $ratios"
echo "sockpair: record and replay here use the syscall buffer (on by default); a traced one costs what the clock row costs"
echo "log sizes: clock $(( $(stat -c %s "$work/clock.ftlog") / 1024 )) KiB, allowed $(( $(stat -c %s "$work/allowed.ftlog") / 1024 )) KiB, sqlite $(( $(stat -c %s "$work/sql.ftlog") / 1024 )) KiB"
