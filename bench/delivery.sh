#!/usr/bin/env bash
# SMTP delivery into Maildirs: turnmail vs Postfix vs the disk's fsync ceiling, side by side.
#
# Called by bench/run, which sets (all have defaults for running this file alone as root):
#   BENCH_WORK     scratch directory on the file system under test (fresh dirs per run)
#   BENCH_RESULTS  where delivery.csv goes
#   N              messages per run            RUNS  runs per system
#   MEM_NS         message counts for the memory-flatness check of turnmail ("500 2000")
#   TURNMAIL       the turnmail binary (release build)
#   CEILING        the fsync-ceiling program (target/release/examples/fsync_ceiling)
#   SESSIONS       concurrent SMTP sessions / ceiling writer threads (10; bench/concurrency.sh varies it)
#   LOADS          which loads to run ("fresh reuse"; see below)
#   SYSTEMS        which systems to run ("ceiling turnmail sink postfix")
#
# The load, for both MTAs: Postfix's own generator,
#   smtp-source -s 10 -m N -l 4096 -N -t m@example.com
# i.e. 10 concurrent sessions, a new connection per message, one recipient per message,
# 4096 bytes of body (load "fresh", workload smtp-delivery, as baselines.md measured
# Postfix); and the same with -d (load "reuse", workload smtp-delivery-reuse): 10
# connections, each kept open for its share of the N messages, as a relay with a
# connection cache sends. -N numbers the recipients 1m@, 2m@, ... Nm@ (never repeating), so
# each MTA gets a table of N addresses mapping recipient i to mailbox mb(i mod 100): 100
# Maildirs in all. turnmail: N files .qmail-<i>m in the domain home, each `./mbK/Maildir/`;
# Postfix: a hash: virtual_mailbox_maps with the same N lines `<i>m@example.com mbK/Maildir/`.
#
# Timing: from the start of smtp-source until it has exited and all N files are in the
# Maildirs' new/ (bench/timed_load.py). turnmail answers 250 only after the fsync of new/,
# so its files are all there when smtp-source exits; Postfix queues first and delivers
# after, so its clock runs on until the last file lands.
#
# Beside them, Postfix's smtp-sink takes the same loads and stores nothing: what the SMTP
# dialogue alone (client, server, loopback TCP) costs this machine per message. With the
# fsync loop's cost per message, it bounds what any server could reach here (report.py).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
N=${N:-2000}
RUNS=${RUNS:-3}
MEM_NS=${MEM_NS-"500 2000"}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
CEILING=${CEILING:-$REPO/target/release/examples/fsync_ceiling}
TM_PORT=${TM_PORT:-25251}
PF_PORT=${PF_PORT:-25252}
SINK_PORT=${SINK_PORT:-25253}
SESSIONS=${SESSIONS:-10}
LOADS=${LOADS:-"fresh reuse"}
MAILBOXES=100
SIZE=4096
DOMAIN=example.com
# Settle time after a run that deleted thousands of files (Postfix removes its queue
# files): on this file system, creating files right after is slow (see baselines.md).
SETTLE=${SETTLE:-5}
# Which systems to run (for debugging this script): any of ceiling turnmail sink postfix.
SYSTEMS=${SYSTEMS:-"ceiling turnmail sink postfix"}
want() { [[ " $SYSTEMS " == *" $1 "* ]]; }

CSV=$BENCH_RESULTS/delivery.csv
LOG=$BENCH_RESULTS/delivery.log
mkdir -p "$BENCH_WORK" "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "delivery: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (Postfix's private instance and the mail user need it)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release)"
[ -x "$CEILING" ] || die "no $CEILING (cargo build --release --example fsync_ceiling)"
command -v smtp-source >/dev/null || die "smtp-source missing (apt-get install postfix)"
command -v postfix >/dev/null || die "postfix missing"

PF_VERSION=$(postconf -d -h mail_version 2>/dev/null || echo "?")
TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi

# --- cleanup: whatever we started is stopped, even on failure -------------------------
TM_PID=
PF_CONF=
SINK_PID=
cleanup() {
    if [ -n "$SINK_PID" ]; then
        kill -TERM "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
    fi
    SINK_PID=
    if [ -n "$TM_PID" ] && kill -0 "$TM_PID" 2>/dev/null; then
        kill -TERM "$TM_PID" 2>/dev/null || true
        wait "$TM_PID" 2>/dev/null || true
    fi
    TM_PID=
    if [ -n "$PF_CONF" ]; then
        postfix -c "$PF_CONF" stop >>"$LOG" 2>&1 || true
    fi
    PF_CONF=
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

csv_header() {
    if [ ! -s "$CSV" ]; then
        echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
    fi
}
# csv_row ROLE SYSTEM RUN N "key=value ..." NOTE
csv_row() {
    local role=$1 system=$2 run=$3 n=$4 kv=$5 note=${6:-}
    if [ -n "$NOT_QUIET" ]; then note="${note:+$note; }$NOT_QUIET"; fi
    local seconds="" msg_per_s="" peak_rss_kb="" cpu_busy_pct="" iowait_pct=""
    local machine_cpu_s="" daemon_cpu_s="" loadgen_cpu_s=""
    local k v
    for k in $kv; do
        v=${k#*=}
        case ${k%%=*} in
        seconds) seconds=$v ;;
        msg_per_s) msg_per_s=$v ;;
        peak_rss_kb) peak_rss_kb=$v ;;
        cpu_busy_pct) cpu_busy_pct=$v ;;
        iowait_pct) iowait_pct=$v ;;
        machine_cpu_s) machine_cpu_s=$v ;;
        daemon_cpu_s) daemon_cpu_s=$v ;;
        loadgen_cpu_s) loadgen_cpu_s=$v ;;
        nice_pct) if [ "$v" -ge 5 ]; then note="${note:+$note; }niced background work took $v% of the machine"; fi ;;
        esac
    done
    # No commas inside fields: the CSV is read by splitting on them.
    system=${system//,/;}
    note=${note//,/;}
    echo "$WORKLOAD,$role,$system,$run,$n,$msg_per_s,msg/s,$seconds,$peak_rss_kb,$cpu_busy_pct,$iowait_pct,$machine_cpu_s,$daemon_cpu_s,$loadgen_cpu_s,$note" >>"$CSV"
}

# Before each measurement: flush, pause, and wait (up to QUIET_STEP s) for other work on the
# machine to stop; if it does not, the next CSV row says so.
QUIET_STEP=${QUIET_STEP:-60}
NOT_QUIET=
settle() {
    sync
    sleep "${1:-1}"
    local q
    if q=$(python3 "$BENCH/quiet.py" "$BENCH_WORK" --max-wait "$QUIET_STEP"); then
        NOT_QUIET=
    else
        read -r q1 q2 <<<"$q"
        NOT_QUIET="machine busy before the run (${q1}% CPU; $q2 MB/s written)"
    fi
}

# The current load's workload name and smtp-source options (set_load LOAD).
WORKLOAD=smtp-delivery
LOAD_OPTS=()
set_load() {
    case $1 in
    fresh) WORKLOAD=smtp-delivery LOAD_OPTS=() ;;
    reuse) WORKLOAD=smtp-delivery-reuse LOAD_OPTS=(-d) ;;
    *) die "unknown load $1 (fresh, reuse)" ;;
    esac
}

# The machine's busy and total CPU ticks so far, counted as timed_load.py counts them
# (busy: user, system, irq, softirq, steal; niced work is neither busy nor idle here).
cpu_ticks() {
    local _cpu u n s i w irq sirq st
    read -r _cpu u n s i w irq sirq st _ </proc/stat
    echo "$((u + s + irq + sirq + st)) $((u + n + s + i + w + irq + sirq + st))"
}
CLK_TCK=$(getconf CLK_TCK)

# --- the fsync ceiling ------------------------------------------------------------------
# run_ceiling RUN N WRITERS ROLE [--unnamed]: --unnamed measures turnmail's own file
# protocol (O_TMPFILE + link) instead of the named tmp/ file and rename.
run_ceiling() {
    set_load fresh # the ceiling rows belong to smtp-delivery; report.py lends them to -reuse
    local dir=$BENCH_WORK/run$1/ceiling-$3w${5:-} out t0 t1
    mkdir -p "$BENCH_WORK/run$1"
    t0=$(cpu_ticks)
    out=$("$CEILING" "$dir" "$2" "$3" --mailboxes "$MAILBOXES" --size "$SIZE" ${5:+"$5"}) ||
        die "fsync ceiling failed"
    t1=$(cpu_ticks)
    # out: writers count seconds msg_per_s writers_cpu_s
    local secs rate cpu b0 a0 b1 a1 machine
    read -r _ _ secs rate cpu <<<"$out"
    read -r b0 a0 <<<"$t0"
    read -r b1 a1 <<<"$t1"
    # The whole machine's busy CPU, as for the servers: the writers' own plus the kernel's
    # I/O work done elsewhere (interrupts, flusher threads).
    machine="machine_cpu_s=$(awk -v t=$((b1 - b0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }')"
    if [ $((a1 - a0)) -gt 0 ]; then machine="$machine cpu_busy_pct=$((100 * (b1 - b0) / (a1 - a0)))"; fi
    say "  ceiling ($3 writers${5:+, $5}): $rate msg/s ($secs s, writers' CPU $cpu s, $machine)"
    if [ -n "${5:-}" ]; then
        csv_row "$4" "fsync loop; unnamed files ($3 writers)" "$1" "$2" "seconds=$secs msg_per_s=$rate daemon_cpu_s=$cpu $machine" \
            "open(tmp/; O_TMPFILE)+write ${SIZE}B+fsync+link into new/+fsync new/ (turnmail's protocol); $3 threads"
    else
        csv_row "$4" "fsync loop ($3 writers)" "$1" "$2" "seconds=$secs msg_per_s=$rate daemon_cpu_s=$cpu $machine" \
            "create+write ${SIZE}B+fsync+rename+fsync new/; $3 threads (examples/fsync_ceiling.rs)"
    fi
}

# --- turnmail ---------------------------------------------------------------------------
run_turnmail() { # RUN N ROLE [LOAD]
    local run=$1 n=$2 role=$3 load=${4:-fresh}
    set_load "$load"
    local root=$BENCH_WORK/run$run/turnmail-$load-n$n
    port_free "$TM_PORT" || die "port $TM_PORT is taken"
    "$TURNMAIL" init "$root" >>"$LOG" 2>&1 || die "turnmail init failed"
    local dhome=$root/domains/$DOMAIN owner
    owner=$(stat -c %U:%G "$dhome")
    (
        umask 077
        local i k
        for ((k = 0; k < MAILBOXES; k++)); do
            mkdir -p "$dhome/mb$k/Maildir/tmp" "$dhome/mb$k/Maildir/new" "$dhome/mb$k/Maildir/cur"
        done
        for ((i = 1; i <= n; i++)); do
            printf './mb%d/Maildir/\n' $((i % MAILBOXES)) >"$dhome/.qmail-${i}m"
        done
    )
    chown -R "$owner" "$dhome"
    chmod 700 "$dhome"
    settle 1
    "$TURNMAIL" --root "$root" serve --smtp "127.0.0.1:$TM_PORT" >"$root.log" 2>&1 &
    TM_PID=$!
    wait_port "$TM_PORT" 10 || die "turnmail did not start (see $root.log)"
    local out
    out=$(python3 "$BENCH/timed_load.py" --count "$n" --maildirs "$dhome/mb*/Maildir" \
        --pid "$TM_PID" -- "${SMTP_SOURCE[@]}" "${LOAD_OPTS[@]}" -m "$n" "127.0.0.1:$TM_PORT" 2>>"$LOG") ||
        die "turnmail run failed: $out (see $root.log)"
    kill -TERM "$TM_PID"
    wait "$TM_PID" 2>/dev/null || true
    TM_PID=
    say "  turnmail ($load, n=$n): $out"
    csv_row "$role" "turnmail $TM_VERSION" "$run" "$n" "$out" ""
}

# --- the SMTP dialogue alone ------------------------------------------------------------
run_sink() { # RUN N [LOAD]
    local run=$1 n=$2 load=${3:-fresh}
    set_load "$load"
    port_free "$SINK_PORT" || die "port $SINK_PORT is taken"
    smtp-sink -u mail "127.0.0.1:$SINK_PORT" 256 >>"$LOG" 2>&1 &
    SINK_PID=$!
    wait_port "$SINK_PORT" 10 || die "smtp-sink did not start (see $LOG)"
    settle 1
    local out
    out=$(python3 "$BENCH/timed_load.py" --count "$n" --pid "$SINK_PID" \
        -- "${SMTP_SOURCE[@]}" "${LOAD_OPTS[@]}" -m "$n" "127.0.0.1:$SINK_PORT" 2>>"$LOG") ||
        die "smtp-sink run failed: $out (see $LOG)"
    kill -TERM "$SINK_PID"
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=
    say "  smtp-sink ($load, n=$n): $out"
    csv_row sink "smtp-sink $PF_VERSION (stores nothing)" "$run" "$n" "$out" \
        "the SMTP dialogue alone: same load; no disk"
}

# --- Postfix ----------------------------------------------------------------------------
run_postfix() { # RUN N [LOAD]
    local run=$1 n=$2 load=${3:-fresh}
    set_load "$load"
    local top=$BENCH_WORK/run$run/postfix-$load
    local etc=$top/etc mail=$top/mail
    port_free "$PF_PORT" || die "port $PF_PORT is taken"
    mkdir -p "$etc" "$top/queue" "$top/data" "$mail"
    chown postfix "$top/data"
    local mu mg
    mu=$(id -u mail)
    mg=$(id -g mail)
    cat >"$etc/main.cf" <<EOF
# A private Postfix instance for the benchmark (bench/delivery.sh); loopback only.
compatibility_level = 3.6
queue_directory = $top/queue
data_directory = $top/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydomain = localdomain
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
smtputf8_enable = no
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $mail
virtual_mailbox_maps = hash:$etc/vmailbox
virtual_uid_maps = static:$mu
virtual_gid_maps = static:$mg
virtual_minimum_uid = $mu
maillog_file = $top/maillog
maillog_file_prefixes = $top
EOF
    # Debian's master.cf services, without chroot, and smtpd on the loopback high port.
    cat >"$etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    local i k
    (
        umask 077
        for ((i = 1; i <= n; i++)); do
            printf '%dm@%s mb%d/Maildir/\n' "$i" "$DOMAIN" $((i % MAILBOXES))
        done >"$etc/vmailbox"
        for ((k = 0; k < MAILBOXES; k++)); do
            mkdir -p "$mail/mb$k/Maildir/tmp" "$mail/mb$k/Maildir/new" "$mail/mb$k/Maildir/cur"
        done
    )
    chmod 644 "$etc/vmailbox"
    postmap -c "$etc" "$etc/vmailbox" || die "postmap failed"
    chown -R mail:mail "$mail"
    PF_CONF=$etc
    postfix -c "$etc" check >>"$LOG" 2>&1 || die "postfix check failed (see $LOG)"
    postfix -c "$etc" start >>"$LOG" 2>&1 || die "postfix start failed (see $LOG)"
    wait_port "$PF_PORT" 20 || die "Postfix did not listen on $PF_PORT (see $LOG, $top/maillog)"
    settle 1
    local out
    out=$(python3 "$BENCH/timed_load.py" --count "$n" --maildirs "$mail/mb*/Maildir" \
        -- "${SMTP_SOURCE[@]}" "${LOAD_OPTS[@]}" -m "$n" "127.0.0.1:$PF_PORT" 2>>"$LOG") ||
        die "Postfix run failed: $out (see $top/maillog)"
    postfix -c "$etc" stop >>"$LOG" 2>&1 || true
    PF_CONF=
    say "  postfix ($load, n=$n): $out"
    csv_row peer "Postfix $PF_VERSION" "$run" "$n" "$out" "private instance; virtual(8) Maildir delivery"
}

SMTP_SOURCE=(smtp-source -s "$SESSIONS" -l "$SIZE" -N -t "m@$DOMAIN" -f bench@bench.example -M bench.example)

# The system-wide Postfix (if the package started one) must not share the machine's CPU.
if postfix status >/dev/null 2>&1; then
    say "stopping the system-wide Postfix instance"
    postfix stop >>"$LOG" 2>&1 || true
fi

rm -f "$CSV"
csv_header
say "delivery: N=$N, $RUNS run(s), $SESSIONS sessions, $MAILBOXES Maildirs, work dir $BENCH_WORK"
if want ceiling; then run_ceiling 0 "$N" 1 ceiling-1w; fi
for ((r = 1; r <= RUNS; r++)); do
    say "run $r"
    if want ceiling; then
        settle 1
        run_ceiling "$r" "$N" "$SESSIONS" ceiling
        settle 1
        run_ceiling "$r" "$N" "$SESSIONS" ceiling-unnamed --unnamed
    fi
    if want turnmail; then
        for load in $LOADS; do
            settle 1
            run_turnmail "$r" "$N" turnmail "$load"
        done
    fi
    if want sink; then
        for load in $LOADS; do
            settle 1
            run_sink "$r" "$N" "$load"
        done
    fi
    if want postfix; then
        for load in $LOADS; do
            settle 1
            run_postfix "$r" "$N" "$load"
            # Postfix deleted N queue files: let the file system get over it.
            settle "$SETTLE"
        done
    fi
done
want turnmail || MEM_NS=
if [ -n "$MEM_NS" ]; then say "memory flatness (turnmail, n in $MEM_NS)"; fi
for n in $MEM_NS; do
    if [ "$n" = "$N" ]; then continue; fi # the main runs measured it already
    run_turnmail mem "$n" turnmail-mem
    settle 1
done
