#!/bin/sh
# Raft commit latency / throughput: 3 nodes on loopback, fsync always and never, 64 B and
# 4 KiB entries, 1 and 64 proposals in flight. Ends with the line
#   raft: commit_p50_us=N commit_p99_us=N entries_per_s=N   (fsync never, 64 B, 64 in flight)
# Extra arguments go to the bench binary (--seconds S, --dir DIR, --quick).
set -eu
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target-consensus}"
export CARGO_TARGET_DIR
cargo build --release --quiet -p ft-consensus --bin ft-raft-bench
exec "$CARGO_TARGET_DIR/release/ft-raft-bench" "$@"
