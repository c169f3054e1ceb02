#!/usr/bin/env bash
# Record/replay cost: native vs `ftexec record` vs `ftexec replay` (issue #2), and the floor:
# a bare ptrace seccomp stop (ft-bare-tracer resumes every stop untouched).
# Usage: bench/record_replay.sh [N]   (default N=200000 syscalls per loop). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
RUNS=${RUNS:-3}
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ftexec -p ft-interposer --bins
FT=target/release/ftexec
BARE=target/release/ft-bare-tracer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/loop" bench/c/loop.c

# median wall time in ms of a command, over $RUNS runs
ms() {
  local t=()
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }; e=$(date +%s%N)
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
run_sqlite_native() { rm -rf "$work/dbn"; cp -a "$work/db0" "$work/dbn"; sqlite3 "$work/dbn/x.db" < "$work/script.sql"; }
run_sqlite_record() { rm -rf "$work/dbr"; cp -a "$work/db0" "$work/dbr"; "$FT" record -q --data-dir "$work/dbr" -o "$work/sql.ftlog" -- sqlite3 "$work/dbr/x.db" ".read $work/script.sql"; }
run_sqlite_replay() { rm -rf "$work/dbp"; cp -a "$work/db0" "$work/dbp"; "$FT" replay -q --data-dir "$work/dbp" "$work/sql.ftlog"; }

printf '%-34s %12s %12s %12s %12s\n' "workload" "native" "bare stop" "record" "replay"
for kind in clock allowed; do
  nat=$(ms "$work/loop" "$kind" "$N")
  bare=$(ms "$BARE" "$work/loop" "$kind" "$N")
  rec=$(ms "$FT" record -q -o "$work/$kind.ftlog" -- "$work/loop" "$kind" "$N")
  rep=$(ms "$FT" replay -q "$work/$kind.ftlog")
  per() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%.2f us", t / n }'; }
  printf '%-34s %12s %12s %12s %12s\n' "$N x $kind (per syscall)" "$(per "$nat")" "$(per "$bare")" "$(per "$rec")" "$(per "$rep")"
done
nat=$(ms run_sqlite_native)
rec=$(ms run_sqlite_record)
rep=$(ms run_sqlite_replay)
printf '%-34s %12s %12s %12s %12s\n' "sqlite3 20k-row script (total)" "$((nat / 1000)) ms" "-" "$((rec / 1000)) ms" "$((rep / 1000)) ms"
echo "log sizes: clock $(( $(stat -c %s "$work/clock.ftlog") / 1024 )) KiB, allowed $(( $(stat -c %s "$work/allowed.ftlog") / 1024 )) KiB, sqlite $(( $(stat -c %s "$work/sql.ftlog") / 1024 )) KiB"
