#!/usr/bin/env bash
# The cost of quotas: SMTP delivery into 100 Maildirs without quotas and with a
# maildirsize in each (a limit never reached, so every delivery reads the file at
# RCPT, reads it again before writing, and appends its line), alternating in the same
# run so that both meet the same machine. The load is delivery.sh's "fresh" one:
#   smtp-source -s 10 -m N -l 4096 -N -t m@example.com
# Timing by bench/timed_load.py (until all N files are in new/).
#
#   BENCH_WORK  scratch directory (fresh dirs per run)   BENCH_RESULTS  where quota.csv goes
#   N           messages per run (2000)                  RUNS           pairs of runs (3)
#   TURNMAIL    the release binary
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
N=${N:-2000}
RUNS=${RUNS:-3}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
TM_PORT=${TM_PORT:-25261}
SESSIONS=${SESSIONS:-10}
MAILBOXES=100
SIZE=4096
DOMAIN=example.com
CSV=$BENCH_RESULTS/quota.csv
LOG=$BENCH_RESULTS/quota.log
mkdir -p "$BENCH_WORK" "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "quota: $*"
    exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (the mail user owns the Maildirs)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release --bin turnmail)"
command -v smtp-source >/dev/null || die "smtp-source missing (apt-get install postfix)"

TM_PID=
cleanup() {
    if [ -n "$TM_PID" ] && kill -0 "$TM_PID" 2>/dev/null; then
        kill -TERM "$TM_PID" 2>/dev/null || true
        wait "$TM_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        if ss -Htln "sport = :$1" | grep -q .; then return 0; fi
        sleep 0.05
    done
    return 1
}

SMTP_SOURCE=(smtp-source -s "$SESSIONS" -l "$SIZE" -N -t "m@$DOMAIN" -f bench@bench.example -M bench.example)

run_one() { # RUN quota|plain
    local run=$1 kind=$2
    local root=$BENCH_WORK/quota-run$run-$kind
    rm -rf "$root"
    "$TURNMAIL" init "$root" >>"$LOG" 2>&1 || die "turnmail init failed"
    local dhome=$root/domains/$DOMAIN owner
    owner=$(stat -c %U:%G "$dhome")
    (
        umask 077
        local i k
        for ((k = 0; k < MAILBOXES; k++)); do
            mkdir -p "$dhome/mb$k/Maildir/tmp" "$dhome/mb$k/Maildir/new" "$dhome/mb$k/Maildir/cur"
            if [ "$kind" = quota ]; then
                printf '1073741824S,100000C\n0 0\n' >"$dhome/mb$k/Maildir/maildirsize"
            fi
        done
        for ((i = 1; i <= N; i++)); do
            printf './mb%d/Maildir/\n' $((i % MAILBOXES)) >"$dhome/.qmail-${i}m"
        done
    )
    chown -R "$owner" "$dhome"
    chmod 700 "$dhome"
    sync
    sleep 2
    "$TURNMAIL" --root "$root" serve --smtp "127.0.0.1:$TM_PORT" >"$root.log" 2>&1 &
    TM_PID=$!
    wait_port "$TM_PORT" || die "turnmail did not start (see $root.log)"
    local out
    out=$(python3 "$BENCH/timed_load.py" --count "$N" --maildirs "$dhome/mb*/Maildir" \
        --pid "$TM_PID" -- "${SMTP_SOURCE[@]}" -m "$N" "127.0.0.1:$TM_PORT" 2>>"$LOG") ||
        die "run failed: $out (see $root.log)"
    kill -TERM "$TM_PID"
    wait "$TM_PID" 2>/dev/null || true
    TM_PID=
    if [ "$kind" = quota ]; then
        # Every delivery was counted: the sums in the maildirsize files are N messages.
        local counted
        counted=$(cat "$dhome"/mb*/Maildir/maildirsize | awk 'NR > 0 && $0 !~ /S/ { c += $2 } END { print c }')
        [ "$counted" = "$N" ] || die "maildirsize counted $counted of $N messages"
    fi
    local rate
    rate=$(sed -n 's/.*msg_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
    say "  run $run $kind: $rate msg/s ($out)"
    echo "smtp-delivery-quota,$kind,$run,$N,$rate" >>"$CSV"
    rm -rf "$root"
    eval "RATE_${kind}_$run=$rate"
}

[ -s "$CSV" ] || echo "workload,kind,run,n,msg_per_s" >"$CSV"
say "quota: N=$N, $RUNS pair(s) of runs, $SESSIONS sessions, $MAILBOXES Maildirs"
for ((r = 1; r <= RUNS; r++)); do
    # Alternate which goes first, so neither always meets a warmer or cooler machine.
    if ((r % 2)); then
        run_one "$r" plain
        run_one "$r" quota
    else
        run_one "$r" quota
        run_one "$r" plain
    fi
done
plain=$(for ((r = 1; r <= RUNS; r++)); do v=RATE_plain_$r; echo "${!v}"; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
quota=$(for ((r = 1; r <= RUNS; r++)); do v=RATE_quota_$r; echo "${!v}"; done | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
ratio=$(awk -v q="$quota" -v p="$plain" 'BEGIN { printf "%.3f", q / p }')
say "quota: median $quota msg/s with quotas, $plain msg/s without: ratio $ratio (target >= 0.90)"
