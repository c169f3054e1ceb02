#!/usr/bin/env bash
# The interception mechanisms issue 17 weighs, per getppid, on one CPU (as ftexec pins its
# tracees): the syscall, Syscall User Dispatch (a SIGSYS per call, handled in the process),
# seccomp user notification (a supervisor thread answers), and SUD under a minimal ptrace tracer
# (every SIGSYS is a signal-delivery stop). The syscall buffer's rewritten sites are measured by
# bench/record_replay.sh (the sockpair row). Usage: bench/interception.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -pthread -o "$work/intercept" bench/c/intercept.c
printf '%-44s %10s\n' mechanism "ns/call"
printf '%-44s %10s\n' "getppid, native" "$(taskset -c 0 "$work/intercept" native "$N")"
printf '%-44s %10s\n' "Syscall User Dispatch (SIGSYS, no tracer)" "$(taskset -c 0 "$work/intercept" sud "$N")"
printf '%-44s %10s\n' "seccomp user notification (thread answers)" "$(taskset -c 0 "$work/intercept" unotify "$N")"
printf '%-44s %10s\n' "Syscall User Dispatch under ptrace" "$(taskset -c 0 "$work/intercept" ptrace sud $((N / 4)))"
