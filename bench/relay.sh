#!/usr/bin/env bash
# Relaying end to end: submission into the MTA, out through its queue, into Postfix's
# smtp-sink; turnmail against Postfix relaying the same load to the same sink, in the
# same run, as a ratio.
#
# The load, for both: smtp-source -s 10 -m N -l 4096 -N (10 concurrent sessions, one
# recipient per message, 4 KiB messages, a new connection per message).
# - turnmail: a demo root (`turnmail init`) whose control/tcp.smtp lets 127.0.0.1 relay
#   (`127.0.0.1:allow,RELAYCLIENT=""`, qmail's way, as Postfix's mynetworks), sender
#   checks off and sending limits off (Postfix has neither), control/smtproutes sending
#   sink.example to the sink; the recipients are Nm@sink.example: every accepted message
#   is queued (fsynced) in ROOT/queue and leaves through the outbound queue. DKIM: no key,
#   so no signing (bench/dkim.sh measures its cost per message).
# - Postfix: a private instance relaying for mynetworks (127.0.0.0/8) with relayhost =
#   the sink; the recipients are Nm@sink.example.
# Timing: from the start of smtp-source until it has exited and the MTA's queue is
# empty (turnmail: ROOT/queue/new and cur; Postfix: incoming, active, deferred), i.e.
# every message was accepted by the sink.
#
# Environment: BENCH_WORK (scratch), BENCH_RESULTS (relay.csv), N (2000), RUNS (3),
# TURNMAIL (release binary), SESSIONS (10). Run as root.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
N=${N:-2000}
RUNS=${RUNS:-3}
SESSIONS=${SESSIONS:-10}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
TM_PORT=${TM_PORT:-25261}
PF_PORT=${PF_PORT:-25262}
SINK_PORT=${SINK_PORT:-25263}
SIZE=4096
CSV=$BENCH_RESULTS/relay.csv
LOG=$BENCH_RESULTS/relay.log
mkdir -p "$BENCH_WORK" "$BENCH_RESULTS"
: >"$LOG"
say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "relay: $*"
    exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (Postfix's private instance needs it)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release --bin turnmail)"
command -v smtp-source >/dev/null || die "smtp-source missing (apt-get install postfix)"
command -v smtp-sink >/dev/null || die "smtp-sink missing (apt-get install postfix)"

PF_VERSION=$(postconf -d -h mail_version 2>/dev/null || echo "?")
TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")

TM_PID= SINK_PID= PF_CONF=
cleanup() {
    [ -z "$SINK_PID" ] || { kill -TERM "$SINK_PID" 2>/dev/null || true; wait "$SINK_PID" 2>/dev/null || true; }
    [ -z "$TM_PID" ] || { kill -TERM "$TM_PID" 2>/dev/null || true; wait "$TM_PID" 2>/dev/null || true; }
    [ -z "$PF_CONF" ] || postfix -c "$PF_CONF" stop >>"$LOG" 2>&1 || true
    SINK_PID= TM_PID= PF_CONF=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # PORT SECONDS
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        if ss -Htln "sport = :$1" | grep -q .; then return 0; fi
        sleep 0.05
    done
    return 1
}

start_sink() {
    smtp-sink -u mail "127.0.0.1:$SINK_PORT" 256 >>"$LOG" 2>&1 &
    SINK_PID=$!
    wait_port "$SINK_PORT" 10 || die "smtp-sink did not start"
}

# timed LABEL QUEUE-COUNT-COMMAND TARGET-PORT RCPT-DOMAIN: prints seconds
timed() {
    local count_cmd=$1 port=$2 domain=$3 t0 t1 left
    t0=$(date +%s.%N)
    smtp-source -s "$SESSIONS" -l "$SIZE" -m "$N" -N -t "m@$domain" -f bench@bench.example \
        -M bench.example "127.0.0.1:$port" >>"$LOG" 2>&1 || die "smtp-source failed"
    for ((i = 0; i < 6000; i++)); do
        left=$(eval "$count_cmd")
        [ "$left" = 0 ] && break
        sleep 0.01
    done
    [ "$left" = 0 ] || die "queue not empty after 60 s ($left left)"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

run_turnmail() { # RUN
    local root=$BENCH_WORK/relay-run$1/turnmail
    rm -rf "$root"
    "$TURNMAIL" init "$root" >>"$LOG" 2>&1 || die "turnmail init failed"
    local owner
    owner=$(stat -c %U:%G "$root/control")
    printf 'sink.example:127.0.0.1:%s\n' "$SINK_PORT" >"$root/control/smtproutes"
    printf '127.0.0.1:allow,RELAYCLIENT=""\n:allow\n' >"$root/control/tcp.smtp"
    printf '\n[relay_access]\nsender_check = "off"\n\n[submission_limits]\nmessages_per_hour = 0\nrecipients_per_message = 0\nbytes_per_day = 0\n' \
        >>"$root/turnmail.toml"
    chown "$owner" "$root/control/smtproutes" "$root/control/tcp.smtp"
    "$TURNMAIL" --root "$root" serve --smtp "127.0.0.1:$TM_PORT" >"$root.log" 2>&1 &
    TM_PID=$!
    wait_port "$TM_PORT" 10 || die "turnmail did not start (see $root.log)"
    local secs
    secs=$(timed "find '$root/queue/new' '$root/queue/cur' -type f | wc -l" "$TM_PORT" sink.example)
    kill -TERM "$TM_PID"
    wait "$TM_PID" 2>/dev/null || true
    TM_PID=
    # An empty queue could also mean bounced: every message must have had the sink's 250.
    local sent
    sent=$(grep -c 'said: 250 .*-> Removed' "$root.log" || true)
    [ "$sent" = "$N" ] || die "turnmail: $sent of $N messages accepted by the sink (see $root.log)"
    echo "$secs"
}

run_postfix() { # RUN
    local top=$BENCH_WORK/relay-run$1/postfix
    rm -rf "$top"
    local etc=$top/etc
    mkdir -p "$etc" "$top/queue" "$top/data"
    chown postfix "$top/data"
    cat >"$etc/main.cf" <<EOF
# A private Postfix instance relaying for loopback clients (bench/relay.sh).
compatibility_level = 3.6
queue_directory = $top/queue
data_directory = $top/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydomain = localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
maillog_file = $top/maillog
maillog_file_prefixes = $top
EOF
    cat >"$etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    PF_CONF=$etc
    postfix -c "$etc" check >>"$LOG" 2>&1 || die "postfix check failed"
    postfix -c "$etc" start >>"$LOG" 2>&1 || die "postfix start failed"
    wait_port "$PF_PORT" 20 || die "Postfix did not listen"
    local q=$top/queue secs
    secs=$(timed "find '$q/incoming' '$q/active' '$q/deferred' '$q/maildrop' -type f 2>/dev/null | wc -l" "$PF_PORT" sink.example)
    postfix -c "$etc" stop >>"$LOG" 2>&1 || true
    PF_CONF=
    local sent
    sent=$(grep -c 'status=sent' "$top/maillog" || true)
    [ "$sent" = "$N" ] || die "Postfix: $sent of $N messages accepted by the sink (see $top/maillog)"
    echo "$secs"
}

[ -s "$CSV" ] || echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
if postfix status >/dev/null 2>&1; then postfix stop >>"$LOG" 2>&1 || true; fi
start_sink
tm_sum=0 pf_sum=0
for ((r = 1; r <= RUNS; r++)); do
    s=$(run_turnmail "$r")
    rate=$(awk -v n="$N" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    say "turnmail run $r: $N in $s s = $rate msg/s"
    echo "relay-end-to-end,turnmail,turnmail $TM_VERSION,$r,$N,$rate,msg/s,$s,,,,,,," >>"$CSV"
    tm_sum=$(awk -v a="$tm_sum" -v b="$rate" 'BEGIN { print a + b }')
    s=$(run_postfix "$r")
    rate=$(awk -v n="$N" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    say "postfix run $r: $N in $s s = $rate msg/s"
    echo "relay-end-to-end,peer,Postfix $PF_VERSION,$r,$N,$rate,msg/s,$s,,,,,,," >>"$CSV"
    pf_sum=$(awk -v a="$pf_sum" -v b="$rate" 'BEGIN { print a + b }')
done
ratio=$(awk -v a="$tm_sum" -v b="$pf_sum" 'BEGIN { printf "%.2f", a / b }')
say "relay: turnmail/Postfix end-to-end rate ratio $ratio (target: at least 3)"
