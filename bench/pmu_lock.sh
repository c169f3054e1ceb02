#!/usr/bin/env bash
# Issue #3: is the AMD retired-conditional-branches counter (raw event 0xd1), which PMU-based
# preemption would use, exact around lock-prefixed instructions on this CPU ("SpecLockMap")?
# Prints min/max/spread of 20 runs of 1e6-iteration loops: plain, lock xadd, lock cmpxchg, and
# both with another thread contending. Exits 2 with a message when there is no hardware PMU.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O1 -o "$work/pmu_lock" bench/c/pmu_lock.c -lpthread
"$work/pmu_lock" "${1:-20}"
