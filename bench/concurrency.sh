#!/usr/bin/env bash
# SMTP delivery at several concurrencies: turnmail vs Postfix vs the fsync ceiling, each
# run by bench/delivery.sh with SESSIONS set, into results/concurrency.csv (rows named
# delivery-concurrency:S) for the report's throughput-against-concurrency plot.
#
# Environment (defaults for running it alone, as root):
#   CONC_SESSIONS  the concurrencies ("1 2 5 10 20 40"; turnmail allows 50 sessions per client address)
#   CONC_N         messages per run (1000)
#   CONC_SYSTEMS   systems ("ceiling turnmail postfix")
# and BENCH_WORK, BENCH_RESULTS, TURNMAIL, CEILING as for delivery.sh.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
CONC_SESSIONS=${CONC_SESSIONS:-"1 2 5 10 20 40"}
CONC_N=${CONC_N:-1000}
CONC_SYSTEMS=${CONC_SYSTEMS:-"ceiling turnmail postfix"}

CSV=$BENCH_RESULTS/concurrency.csv
LOG=$BENCH_RESULTS/concurrency.log
mkdir -p "$BENCH_RESULTS"
rm -f "$CSV"
: >"$LOG"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/turnmail-conc.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

for s in $CONC_SESSIONS; do
    echo "concurrency: $s session(s), N=$CONC_N" | tee -a "$LOG" >&2
    # delivery.sh writes its own CSV; its rows are renamed into this workload.
    BENCH_RESULTS=$scratch/$s BENCH_WORK=$BENCH_WORK/conc-$s SESSIONS=$s N=$CONC_N RUNS=1 \
        LOADS=fresh MEM_NS="" SETTLE=${SETTLE:-2} SYSTEMS="$CONC_SYSTEMS" "$BENCH/delivery.sh" 2>>"$LOG" >/dev/null
    cat "$scratch/$s/delivery.log" >>"$LOG"
    if [ ! -s "$CSV" ]; then head -1 "$scratch/$s/delivery.csv" >"$CSV"; fi
    tail -n +2 "$scratch/$s/delivery.csv" | sed "s/^smtp-delivery,/delivery-concurrency:$s,/" >>"$CSV"
done
echo "concurrency: wrote $CSV" >&2
