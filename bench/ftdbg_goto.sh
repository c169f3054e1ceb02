#!/usr/bin/env bash
# ftdbg gdb timing (issue #6): is replaying to event N under the debugger as fast as the original
# run, and how long does `monitor goto` take forwards (to the last events) and backwards (back to
# event 10, which re-executes from the start: ftdbg keeps no checkpoints)?
# Usage: bench/ftdbg_goto.sh. Prints a table (milliseconds, wall clock, one run each).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ftexec -p ftdbg
FT=$PWD/target/release/ftexec
DBG=$PWD/target/release/ftdbg
work=$(mktemp -d)
trap 'pkill -f "ftdbg gdb $work" 2>/dev/null || true' EXIT
cd "$work"
gcc -O1 -g -o gdb_target "$OLDPWD/tools/ftdbg/tests/c/gdb_target.c"
cat > prog.py <<'PY'
import os, random, time, hashlib
h = hashlib.sha256()
for i in range(5000):
    h.update(os.urandom(8) + str(random.random()).encode())
    if i % 100 == 0:
        h.update(str(time.time()).encode())
print(h.hexdigest())
PY
printf 'CREATE TABLE t(x);\nWITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<20000) INSERT INTO t SELECT random() FROM c;\nSELECT count(*) FROM t;\n' > s.sql

now() { date +%s%N; }
printf '%-28s %8s %10s %10s %14s %14s\n' program events record_ms replay_ms goto_end_ms goto_back_ms
row() {
  local name=$1; shift
  local s e rec rep
  s=$(now); "$FT" record -q -o "$name.ftlog" -- "$@" >/dev/null 2>&1 </dev/null; e=$(now); rec=$(( (e - s) / 1000000 ))
  s=$(now); "$FT" replay -q "$name.ftlog" >/dev/null 2>&1; e=$(now); rep=$(( (e - s) / 1000000 ))
  local n; n=$("$DBG" stats --json "$name.ftlog" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
  local last=$(( n - 2 ))
  "$DBG" gdb "$name.ftlog" --port 0 2>"$name.err" >/dev/null &
  local port=""
  for _ in $(seq 100); do port=$(sed -n "s/.*target remote :\([0-9]*\).*/\1/p" "$name.err"); [ -n "$port" ] && break; sleep 0.05; done
  gdb -batch -nx -ex "target remote :$port" \
    -ex 'python import time; t=time.time()' -ex "monitor goto $last" -ex 'python print("FWD", int((time.time()-t)*1000))' \
    -ex 'python t=time.time()' -ex 'monitor goto 10' -ex 'python print("BACK", int((time.time()-t)*1000))' \
    -ex kill "$1" > "$name.gdb" 2>&1 || true
  wait || true
  local fwd back
  fwd=$(sed -n 's/^FWD //p' "$name.gdb"); back=$(sed -n 's/^BACK //p' "$name.gdb")
  printf '%-28s %8s %10s %10s %14s %14s\n' "$name" "$n" "$rec" "$rep" "${fwd:-?}" "${back:-?}"
}
row gdb_target ./gdb_target
row python3_urandom_5000 /usr/bin/python3 prog.py
row sqlite3_20k_rows /usr/bin/sqlite3 -batch ':memory:' -init s.sql .quit
