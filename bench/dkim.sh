#!/usr/bin/env bash
# DKIM signing's cost per message: `Signer::sign` on a 4 KiB message with an Ed25519 and an
# RSA-2048 key, through the library as the submission path calls it
# (examples/dkim_cost.rs). No peer and no ceiling: the microseconds one message costs.
#
# Called by bench/run, which sets (all have defaults for running this file alone):
#   BENCH_WORK      scratch directory (a fresh dkim/ under it)
#   BENCH_RESULTS   where dkim.csv and dkim.log go
#   RUNS            timed runs (in one process, after one warm-up pass)
#   DKIM_SIGNS      signatures per key per run (default 2000)
#   DKIM_COST       the program (target/release/examples/dkim_cost)
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
RUNS=${RUNS:-3}
SIGNS=${DKIM_SIGNS:-2000}
PROG=${DKIM_COST:-$REPO/target/release/examples/dkim_cost}

W=$BENCH_WORK/dkim
CSV=$BENCH_RESULTS/dkim.csv
LOG=$BENCH_RESULTS/dkim.log
mkdir -p "$BENCH_RESULTS" "$BENCH_WORK"
: >"$LOG"
say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "dkim: $*"
    exit 1
}
[ -x "$PROG" ] || die "no $PROG (cargo build --release --example dkim_cost)"

TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi
NAME="turnmail $TM_VERSION"

NOTE=
if ! python3 "$BENCH/quiet.py" "$BENCH_WORK" --max-wait "${QUIET_STEP:-60}" >/dev/null; then
    NOTE="machine busy before the run"
fi

rm -rf "$W"
echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
say "dkim: $RUNS run(s) of $SIGNS signatures per key, 4 KiB messages"
out=$("$PROG" "$W" --signs "$SIGNS" --runs "$RUNS" --size 4096 2>>"$LOG") || die "dkim_cost failed (see $LOG)"
while read -r line; do
    say "  $line"
    declare -A v=()
    for kv in $line; do v[${kv%%=*}]=${kv#*=}; done
    note="p99 ${v[p99_us]} us; mean ${v[mean_us]} us; message ${v[size]} bytes"
    if [ -n "$NOTE" ]; then note="$note; $NOTE"; fi
    echo "dkim-sign-${v[algorithm]},turnmail,$NAME,${v[run]},${v[n]},${v[p50_us]},us (median),,,,,,,,$note" >>"$CSV"
    unset v
done <<<"$out"
rm -rf "$W"
