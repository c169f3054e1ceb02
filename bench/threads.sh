#!/usr/bin/env bash
# Threads under ftexec (issue #3): native vs `ftexec record` vs `ftexec replay`, wall-clock ms,
# median of $RUNS runs (default 3), for
#   - racy_counter: 4 threads x 1,000,000 unlocked increments of a shared counter
#     (testsuite/c/racy_counter.c; natively the total varies, under ftexec it is exact);
#   - mutex_counter: 4 threads x 200,000 pthread_mutex lock/increment/unlock (bench/c);
#   - spin_wait: 2 threads hand a turn back and forth 100 times, each spinning on an atomic
#     (testsuite/c/spin_wait.c): every handoff is a preemption at a fixpoint of the spin
#     (interposer/src/spin.rs), taken after 10 ms of spin at record, 1 ms at replay;
#   - compute_waited: one thread computes ~1.7 s without a syscall while another wakes every
#     millisecond and waits for the token (bench/c): the probes of a thread that is not at a
#     fixpoint, at doubling gaps and budgets.
# Then the cost of one preemption probe itself (interposer/examples/probe_cost.rs), and whether
# this machine has a hardware PMU (ftexec does not need one for the preemptions above).
# Usage: bench/threads.sh   (FTEXEC=path/to/ftexec to skip the release build). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${FTEXEC:-}" ]; then
  cargo build --release -q -p ftexec -p ftdbg
  FTEXEC="${CARGO_TARGET_DIR:-target}/release/ftexec"
fi
FTDBG="$(dirname "$FTEXEC")/ftdbg"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O1 -o "$work/racy_counter" testsuite/c/racy_counter.c -lpthread
gcc -O2 -o "$work/mutex_counter" bench/c/mutex_counter.c -lpthread
gcc -O2 -o "$work/spin_wait" testsuite/c/spin_wait.c -lpthread
gcc -O2 -o "$work/pmu_probe" bench/c/pmu_probe.c
gcc -O1 -o "$work/compute_waited" bench/c/compute_waited.c -lpthread

# Median wall-clock time in milliseconds over $RUNS runs; the last run's stdout is kept in
# $work/out (the totals are printed below the table).
ms() {
  local t=()
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s%N)
    "$@" >"$work/out" 2>"$work/err" || { echo "bench: failed: $*" >&2; cat "$work/err" >&2; exit 1; }
    e=$(date +%s%N)
    t+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${t[@]}" | sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"
}

printf '%-44s %10s %10s %10s\n' "workload (median of $RUNS, wall ms)" "native" "record" "replay"
totals=""
for prog in racy_counter mutex_counter spin_wait compute_waited; do
  args=()
  [ "$prog" = spin_wait ] && args=(100)
  nat=$(ms "$work/$prog" "${args[@]}")
  native_total=$(cat "$work/out")
  rec=$(ms "$FTEXEC" record -q -o "$work/$prog.ftlog" -- "$work/$prog" "${args[@]}")
  recorded_total=$(cat "$work/out")
  rep=$(ms "$FTEXEC" replay -q "$work/$prog.ftlog")
  replayed_total=$(cat "$work/out")
  [ "$recorded_total" = "$replayed_total" ] || { echo "bench: $prog replayed '$replayed_total', recorded '$recorded_total'" >&2; exit 1; }
  case $prog in
    racy_counter) label="racy_counter: 4 threads x 1e6 unlocked ++" ;;
    mutex_counter) label="mutex_counter: 4 threads x 200k lock/++/unlock" ;;
    spin_wait) label="spin_wait: 100 spin-wait handoffs" ;;
    *) label="compute_waited: 1.5e9-step loop, a waiter" ;;
  esac
  printf '%-44s %10s %10s %10s\n' "$label" "$nat" "$rec" "$rep"
  totals="$totals$prog: native (last run) $native_total, recorded $recorded_total, replayed $replayed_total; "
done
echo "totals: $totals"
echo "log sizes: racy_counter $(( $(stat -c %s "$work/racy_counter.ftlog") / 1024 )) KiB, mutex_counter $(( $(stat -c %s "$work/mutex_counter.ftlog") / 1024 )) KiB, spin_wait $(( $(stat -c %s "$work/spin_wait.ftlog") / 1024 )) KiB"
preempts=$("$FTDBG" stats --json "$work/spin_wait.ftlog" | python3 -c 'import json,sys; print(json.load(sys.stdin)["preemptions"])')
echo "spin_wait: $preempts preemptions in the recording (each waits 10 ms of spin at record, 1 ms at replay, before its probe)"
cargo run --release -q -p ft-interposer --example probe_cost
if pmu=$("$work/pmu_probe"); then
  echo "hardware PMU: $pmu (ftexec does not use it: it preempts only at fixpoints of spin loops)"
else
  echo "hardware PMU: $pmu (not needed by ftexec's preemption at fixpoints)"
fi
