#!/usr/bin/env bash
# Scheduler idle cost: the daemon with 10,000 sites (100 of them with one spooled message)
# on a `* * * * *` schedule; its CPU time and peak memory over a window that holds one minute
# boundary, and the time from that boundary (when every site is due) to the sink's accept of
# each connection for a site with mail. No peer: turnmail's own figures against the targets.
#
# Called by bench/run, which sets (all have defaults for running this file alone as root):
#   BENCH_WORK      scratch directory (a fresh scheduler/ under it)
#   BENCH_RESULTS   where scheduler.csv and scheduler.log go
#   SCHED_WINDOW    seconds of the measured window (60 full, 20 quick)
#   SCHED_MAX_WAIT  seconds to wait after the window for every site with mail (60; 10 quick)
#   SCHED_SITES     sites (default 10000); SCHED_MAIL_EVERY: every K-th site has mail (100)
#   TURNMAIL        the turnmail binary (release build)
#
# Settings (turnmail.toml): [flush] schedule = "* * * * *", jitter_secs = 0 (every site due
# at second 0, so the sink's clock measures due-to-connect), grace_ms = 0 (the scheduler's
# own delay; with the default 1 s the k-th site with mail starts k s late, by design),
# max_parallel = 10 (the default; SCHED_PARALLEL changes it). The window starts 3 s before the boundary, so it holds the
# boundary (10,000 due sites: their spools looked into, the 100 with mail flushed) and the
# idle rest, including the check of every site's stamps every 30 s.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
WINDOW=${SCHED_WINDOW:-60}
MAX_WAIT=${SCHED_MAX_WAIT:-60}
SITES=${SCHED_SITES:-10000}
MAIL_EVERY=${SCHED_MAIL_EVERY:-100}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
SMTP_PORT=${SCHED_SMTP_PORT:-25411}
POP3_PORT=${SCHED_POP3_PORT:-25412}
ODMR_PORT=${SCHED_ODMR_PORT:-25413}
SINK_PORT=${SCHED_SINK_PORT:-25414}
TOOLS=$BENCH/scheduler_tools.py

W=$BENCH_WORK/scheduler
CSV=$BENCH_RESULTS/scheduler.csv
LOG=$BENCH_RESULTS/scheduler.log
mkdir -p "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "scheduler: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (the daemon drops to the mail user)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release)"

TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi

TM_PID=
SINK_PID=
cleanup() {
    local p i
    for p in $TM_PID $SINK_PID; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in $TM_PID $SINK_PID; do
        for ((i = 0; i < 100; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    TM_PID= SINK_PID=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! ss -Htln "sport = :$1" | grep -q .; }
wait_port() { # PORT SECONDS
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        if ss -Htln "sport = :$1" | grep -q .; then return 0; fi
        sleep 0.05
    done
    return 1
}

OLD=
if [ -e "$W" ]; then
    OLD=$W.old.$$
    mv "$W" "$OLD"
fi
mkdir -p "$W"
for p in "$SMTP_PORT" "$POP3_PORT" "$ODMR_PORT" "$SINK_PORT"; do
    port_free "$p" || die "port $p is taken"
done

# The minute boundary to measure: at least 12 s away, so that the root is made and the daemon
# started before it (making the sites takes a few seconds: done while waiting for it).
BOUNDARY=$(python3 "$TOOLS" boundary --lead 12)

# --- the root: a demo root, its one site replaced by SITES generated ones -----------------
ROOT=$W/root
"$TURNMAIL" init "$ROOT" >>"$LOG" 2>&1 || die "turnmail init failed"
OWNER=$(cut -d: -f3 "$ROOT/users/poppasswd" | head -1)
rm -rf "$ROOT/sites/acme"
sed -i '/^+site-acme-/d' "$ROOT/users/assign" # (recompiled by the daemon at start)
cat >>"$ROOT/turnmail.toml" <<EOF

# bench/scheduler.sh: every site due at second 0 of every minute.
[flush]
schedule = "* * * * *"
jitter_secs = 0
grace_ms = 0
max_parallel = ${SCHED_PARALLEL:-10}
EOF
t0=$(date +%s.%N)
python3 "$TOOLS" sites "$ROOT" "$SITES" --relayhost "127.0.0.1:$SINK_PORT" \
    --mail-every "$MAIL_EVERY" --owner "$(id -u "$OWNER"):$(id -g "$OWNER")" ||
    die "creating the sites failed"
WITH_MAIL=$(((SITES + MAIL_EVERY - 1) / MAIL_EVERY))
say "scheduler: $SITES sites ($WITH_MAIL with mail) made in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; window ${WINDOW} s"

# --- the sink, then the daemon, started before the boundary measured -------------------------
python3 "$TOOLS" sink "127.0.0.1:$SINK_PORT" "$W/sink.log" 2>>"$LOG" &
SINK_PID=$!
wait_port "$SINK_PORT" 10 || die "the sink did not listen"
sync
TURNMAIL_LOG=info "$TURNMAIL" --root "$ROOT" serve --smtp "127.0.0.1:$SMTP_PORT" \
    --pop3 "127.0.0.1:$POP3_PORT" --odmr "127.0.0.1:$ODMR_PORT" >"$W/turnmail.log" 2>&1 &
TM_PID=$!
wait_port "$SMTP_PORT" 10 || die "turnmail did not start (see $W/turnmail.log)"
# Too close to it (a slow machine): the daemon might not have planned it; take the next one.
if awk -v b="$BOUNDARY" -v now="$(date +%s.%N)" 'BEGIN {exit !(b - now < 4)}'; then
    BOUNDARY=$((BOUNDARY + 60))
fi
say "  daemon started $(awk -v a="$(date +%s.%N)" -v b="$BOUNDARY" 'BEGIN {printf "%.1f", b - a}') s before the boundary at $(date -u -d "@$BOUNDARY" +%H:%M:%S)"

out=$(python3 "$TOOLS" measure --pid "$TM_PID" --boundary "$BOUNDARY" --before 3 \
    --window "$WINDOW" --sink-log "$W/sink.log" --expect "$WITH_MAIL" --max-wait "$MAX_WAIT" \
    --daemon-log "$W/turnmail.log") || die "measuring failed"
say "  $out"
kill -0 "$TM_PID" 2>/dev/null || die "the daemon died (see $W/turnmail.log)"
cleanup

get() { # KEY
    local k
    for k in $out; do
        if [ "${k%%=*}" = "$1" ]; then
            echo "${k#*=}"
            return
        fi
    done
}
cpu_pct=$(get cpu_pct)
peak=$(get peak_rss_kb)
conns=$(get connections)
msgs=$(get messages)
first=$(get first_ms)
note="window ${WINDOW} s from 3 s before a minute boundary; $(get burst_cpu_s) s CPU in its first 15 s and $(get rest_cpu_s) s after"
if [ -n "$(get tail_cpu_s)" ]; then
    note="$note; $(get tail_cpu_s) s in its last 20 s ($(awk -v c="$(get tail_cpu_s)" 'BEGIN {printf "%.2f", c / 20 * 100}')% of a core with no boundary in them)"
fi
note="$note; $(get flushes) scheduled flushes started in the minute after the boundary (the last $(get starts_s) s after it)"
note="$note; sink: $conns connections and $msgs of $WITH_MAIL messages"
nice_pct=$(get nice_pct)
if [ "${nice_pct:-0}" -ge 5 ]; then note="$note; niced background work took $nice_pct% of the machine"; fi

name="turnmail $TM_VERSION"
rm -f "$CSV"
{
    echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note"
    echo "scheduler-idle-cpu,turnmail,$name,1,$SITES,$cpu_pct,% of a core,$(get seconds),$peak,$(get cpu_busy_pct),,$(get machine_cpu_s),$(get cpu_s),,$note"
    echo "scheduler-memory,turnmail,$name,1,$SITES,$(awk -v k="$peak" 'BEGIN {printf "%.1f", k / 1024}'),MiB,$(get seconds),$peak,,,,,,VmHWM at the end of the window; VmRSS $(get rss_start_kb) kB when it started (3 s before the boundary) and $(get rss_kb) kB at its end"
    # n=1: the first site with mail to connect (the figure the target names); n=WITH_MAIL: the
    # median over all sites with mail (each is due at the boundary), and the last of them.
    least() { if [ "$(get "$1_at_least")" = 1 ]; then echo "at least (not every site with mail had connected when measuring stopped)"; fi; }
    if [ -n "$first" ]; then
        echo "scheduler-due-to-connect,turnmail,$name,1,1,$first,ms,,$peak,,,,,,first connection to the sink after the boundary; $(least first_ms)"
        echo "scheduler-due-to-connect,turnmail,$name,1,$WITH_MAIL,$(get median_ms),ms,,$peak,,,,,,median over the $WITH_MAIL sites with mail ($conns connected); $(least median_ms)"
        echo "scheduler-due-to-connect,turnmail-last,$name,1,$WITH_MAIL,$(get last_ms),ms,,,,,,,,last of the $WITH_MAIL sites with mail; $(least last_ms)"
    else
        echo "scheduler-due-to-connect,turnmail,$name,1,1,,ms,,$peak,,,,,,no connection reached the sink"
    fi
} >"$CSV"
[ "$msgs" = "$WITH_MAIL" ] || say "scheduler: only $msgs of $WITH_MAIL messages reached the sink (see $W/turnmail.log)"
rm -rf ${OLD:+"$OLD"}
