#!/usr/bin/env bash
# The main job as far as it is built: record/replay of sqlite3 with a data directory, then a
# local 3-node Raft cluster and its status. (The 3-replica service, `ftexec up`, is issue #5.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -q -p ftexec
FT=$PWD/target/release/ftexec
work=$(mktemp -d /tmp/ftexec-demo.XXXXXX)
mkdir -p "$work/db"
cp -a "$work/db" "$work/db.start"
sql="create table kv(k, v, at); insert into kv values ('a', random(), datetime('now')); select * from kv;"
echo "== record: sqlite3 writes $work/db/x.db"
"$FT" record --data-dir "$work/db" -o "$work/sqlite.ftlog" -- sqlite3 "$work/db/x.db" "$sql"
echo "== replay into a copy of the starting directory"
"$FT" replay --data-dir "$work/db.start" "$work/sqlite.ftlog"
if cmp -s "$work/db/x.db" "$work/db.start/x.db"; then
  echo "== replayed database is byte-identical to the recorded one"
else
  echo "== MISMATCH: replayed database differs" >&2
  exit 1
fi
if [ -x scripts/raft-demo.sh ]; then
  bash scripts/raft-demo.sh
fi
