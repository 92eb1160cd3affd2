#!/usr/bin/env bash
# Engine lookups: the login lookup and the address resolution at 1,000, 10,000 and 100,000
# accounts, through the library as the daemon calls them (examples/engine_lookup.rs). No
# peer and no ceiling: turnmail's own times against the targets (under 20 us at 100,000
# accounts, flat from 1,000 to 100,000).
#
# Called by bench/run, which sets (all have defaults for running this file alone):
#   BENCH_WORK      scratch directory (a fresh engine/ under it)
#   BENCH_RESULTS   where engine.csv and engine.log go
#   RUNS            timed runs per size (in one process, after one warm-up pass)
#   ENGINE_NS       account counts (default "1000 10000 100000")
#   ENGINE_LOOKUPS  login lookups per run (default 200000; address resolutions: half)
#   ENGINE_LOOKUP   the program (target/release/examples/engine_lookup)
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
RUNS=${RUNS:-3}
NS=${ENGINE_NS:-"1000 10000 100000"}
LOOKUPS=${ENGINE_LOOKUPS:-200000}
PROG=${ENGINE_LOOKUP:-$REPO/target/release/examples/engine_lookup}

W=$BENCH_WORK/engine
CSV=$BENCH_RESULTS/engine.csv
LOG=$BENCH_RESULTS/engine.log
mkdir -p "$BENCH_RESULTS"
: >"$LOG"
say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "engine: $*"
    exit 1
}
[ -x "$PROG" ] || die "no $PROG (cargo build --release --example engine_lookup)"

TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi
NAME="turnmail $TM_VERSION"

OLD=
if [ -e "$W" ]; then
    OLD=$W.old.$$
    mv "$W" "$OLD"
fi
mkdir -p "$W"

NOT_QUIET=
settle() {
    local q q1 q2
    if q=$(python3 "$BENCH/quiet.py" "$W" --max-wait "${QUIET_STEP:-60}"); then
        NOT_QUIET=
    else
        read -r q1 q2 <<<"$q"
        NOT_QUIET="machine busy before the run (${q1}% CPU and $q2 MB/s written)"
    fi
}

rm -f "$CSV"
echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
say "engine: accounts $NS; $RUNS run(s) of $LOOKUPS login lookups and $((LOOKUPS / 2)) resolutions"
settle
for n in $NS; do
    out=$("$PROG" "$W/n$n" "$n" --lookups "$LOOKUPS" --runs "$RUNS" 2>>"$LOG") ||
        die "engine_lookup $n failed (see $LOG)"
    while read -r line; do
        say "  $line"
        declare -A v=()
        for kv in $line; do v[${kv%%=*}]=${kv#*=}; done
        note="table built and compiled in ${v[build_s]} s; peak RSS is the benchmark process's (tables included)"
        if [ -n "$NOT_QUIET" ]; then note="$note; $NOT_QUIET"; fi
        r=${v[run]}
        {
            echo "engine-login-lookup,turnmail,$NAME,$r,$n,${v[find_p50_us]},us (median),,${v[peak_rss_kb]},,,,,,p99 ${v[find_p99_us]} us; mean ${v[find_mean_us]} us; $note"
            echo "engine-login-lookup,turnmail-p99,$NAME,$r,$n,${v[find_p99_us]},us (p99),,,,,,,,"
            echo "engine-address-resolve,turnmail,$NAME,$r,$n,${v[resolve_p50_us]},us (median),,${v[peak_rss_kb]},,,,,,p99 ${v[resolve_p99_us]} us; mean ${v[resolve_mean_us]} us; $note"
            echo "engine-address-resolve,turnmail-p99,$NAME,$r,$n,${v[resolve_p99_us]},us (p99),,,,,,,,"
        } >>"$CSV"
        unset v
    done <<<"$out"
done
rm -rf ${OLD:+"$OLD"}
