#!/usr/bin/env bash
# Site flush: `turnmail flush` of a site spool against sinks offering CHUNKING+PIPELINING,
# PIPELINING only, or neither, and a plain one-transaction-at-a-time client (Python's
# smtplib), on loopback and across emulated links of 50 ms and 300 ms round-trip time.
# Against the PIPELINING-only and the neither sink the same spool size is also flushed
# over FLUSH_CONNS parallel connections (site.toml `connections`), right after the
# single-connection flush of the same run (cases pipelining-cN, neither-cN).
#
# Called by bench/run, which sets (all have defaults for running this file alone as root):
#   BENCH_WORK     scratch directory (fresh dirs per run; nothing deleted until the end)
#   BENCH_RESULTS  where flush.csv and flush.log go
#   N              messages per flush (2000)      RUNS  runs per case (3)
#   TURNMAIL       the turnmail binary (release build)
#   FLUSH_SINK     the CHUNKING-capable sink (target/release/examples/flush_sink)
#   FLUSH_RTTS     round-trip times in ms, 0 = loopback ("0 50 300")
#   FLUSH_BUDGET   seconds a link-bound case may take (30): on a link, cases that need
#                  round trips per message flush fewer messages (see n_for below)
#   FLUSH_NMIN     the fewest messages a case flushes (30)
#   FLUSH_MEM_NS   spool sizes for the memory-flatness check ("500 2000 10000"), flushed
#                  with CHUNKING over one connection and without PIPELINING over FLUSH_CONNS
#   FLUSH_CONNS    connections of the parallel cases (4; 1 leaves them out)
#   FLUSH_SINK_CHECK=1  also flush to our own sink with PIPELINING only and with neither on
#                  loopback, to show that the sink (smtp-sink or ours) does not set the pace
#   FLUSH_QUIET_EACH=1  wait for a quiet machine before every measurement (else once per link)
#
# The link (this kernel has no netem): two network namespaces of our own, joined by a pair
# of TUN devices whose packets bench/netlink.py forwards after RTT/2 ms each way; addresses
# 169.254.77.1 (client side) and 169.254.77.2 (sink side), link-local, inside those
# namespaces only. Loopback (RTT 0) runs in the host's namespace on 127.0.0.1.
# Namespaces, forwarder and sinks are removed on exit, also on failure.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
N=${N:-2000}
RUNS=${RUNS:-3}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
FLUSH_SINK=${FLUSH_SINK:-$REPO/target/release/examples/flush_sink}
FLUSH_RTTS=${FLUSH_RTTS:-"0 50 300"}
FLUSH_BUDGET=${FLUSH_BUDGET:-30}
FLUSH_NMIN=${FLUSH_NMIN:-30}
FLUSH_MEM_NS=${FLUSH_MEM_NS-"500 2000 10000"}
FLUSH_CONNS=${FLUSH_CONNS:-4}
FLUSH_SINK_CHECK=${FLUSH_SINK_CHECK:-1}
FLUSH_QUIET_EACH=${FLUSH_QUIET_EACH:-1}
QUIET_STEP=${QUIET_STEP:-60}
SIZE=4096
TOOLS=$BENCH/flush_tools.py

CSV=$BENCH_RESULTS/flush.csv
LOG=$BENCH_RESULTS/flush.log
WORK=$BENCH_WORK/flush
mkdir -p "$WORK" "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "flush: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (network namespaces, TUN devices, the mail user)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release)"
[ -x "$FLUSH_SINK" ] || die "no $FLUSH_SINK (cargo build --release --example flush_sink)"
command -v smtp-sink >/dev/null || die "smtp-sink missing (apt-get install postfix)"
[ -x /usr/bin/time ] || die "GNU time missing (apt-get install time)"
[ -c /dev/net/tun ] || die "no /dev/net/tun"

PF_VERSION=$(postconf -d -h mail_version 2>/dev/null || echo "?")
TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi

# --- cleanup: sinks, the forwarder and our namespaces go, even on failure -----------------
NSA=tmflush$$a
NSB=tmflush$$b
ADDR_A=169.254.77.1
ADDR_B=169.254.77.2
SINK_PID=
FWD_PID=
stop_pid() { # PID
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill -TERM "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
link_down() {
    stop_pid "$FWD_PID" # it logs its counters (packets, late ones) to flush.log
    FWD_PID=
    ip netns del "$NSA" 2>/dev/null || true
    ip netns del "$NSB" 2>/dev/null || true
}
cleanup() {
    stop_pid "$SINK_PID"
    SINK_PID=
    link_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the emulated link --------------------------------------------------------------------
LINK_RTT_MS=
link_up() { # RTT_MS
    local rtt=$1 ready=$WORK/link$1.ready
    ip netns add "$NSA"
    ip netns add "$NSB"
    ip -n "$NSA" link set lo up
    ip -n "$NSB" link set lo up
    rm -f "$ready"
    # Real-time priority (SCHED_FIFO; it sleeps in select between packets) keeps the delay
    # exact when other work shares the CPUs.
    local rt=()
    if command -v chrt >/dev/null && chrt -f 10 true 2>/dev/null; then rt=(chrt -f 10); fi
    say "link: $rtt ms (${rt[*]:-normal priority})"
    "${rt[@]}" python3 "$BENCH/netlink.py" "$NSA" tmfa "$NSB" tmfb "$(awk "BEGIN {print $rtt / 2}")" \
        "$ready" 2>>"$LOG" &
    FWD_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$ready" ] && break
        sleep 0.05
    done
    [ -s "$ready" ] || die "the link forwarder did not start"
    ip -n "$NSA" addr add "$ADDR_A" peer "$ADDR_B" dev tmfa
    ip -n "$NSB" addr add "$ADDR_B" peer "$ADDR_A" dev tmfb
    ip -n "$NSA" link set tmfa mtu 1500 up
    ip -n "$NSB" link set tmfb mtu 1500 up
    # Measure it: 20 NOOPs, one after the other, to a sink on the far side.
    start_sink remote 2599 own --pipelining
    local m fastest p90
    m=$(ip netns exec "$NSA" python3 "$TOOLS" rtt "$ADDR_B:2599" 20) ||
        die "no SMTP across the link"
    read -r LINK_RTT_MS fastest p90 <<<"$m"
    stop_pid "$SINK_PID"
    SINK_PID=
    # The namespaces use the host's default congestion control (bbr paces each burst).
    local cc
    cc=$(ip netns exec "$NSA" sysctl -n net.ipv4.tcp_congestion_control 2>/dev/null || echo "?")
    say "link up: $rtt ms configured; an SMTP command round trip (NOOP) takes $LINK_RTT_MS ms (median of 20; fastest $fastest; 90th percentile $p90); TCP congestion control $cc"
    csv_row link "TUN pair + bench/netlink.py" "-" 20 "site-flush:${rtt}ms:link" \
        "msg_per_s=$LINK_RTT_MS" "SMTP NOOP round trip: median of 20 (fastest $fastest ms; 90th percentile $p90 ms); TCP congestion control $cc" ms
}

# --- sinks ----------------------------------------------------------------------------------
wait_port() { # WHERE PORT
    local i ns=()
    [ "$1" = remote ] && ns=(ip netns exec "$NSB")
    for ((i = 0; i < 200; i++)); do
        if "${ns[@]}" ss -Htln "sport = :$2" | grep -q .; then return 0; fi
        sleep 0.025
    done
    return 1
}
# start_sink WHERE PORT KIND [ARGS...]: KIND is own (flush_sink) or postfix (smtp-sink)
start_sink() {
    local where=$1 port=$2 kind=$3
    shift 3
    local ns=() addr=127.0.0.1
    if [ "$where" = remote ]; then
        ns=(ip netns exec "$NSB")
        addr=$ADDR_B
    fi
    if [ "$kind" = own ]; then
        "${ns[@]}" "$FLUSH_SINK" "$addr:$port" "$@" 2>>"$LOG" &
    else
        "${ns[@]}" smtp-sink -u mail "$@" "$addr:$port" 1024 >>"$LOG" 2>&1 &
    fi
    SINK_PID=$!
    wait_port "$where" "$port" || die "the sink ($kind $*) did not listen on $addr:$port"
    sleep 0.1
    kill -0 "$SINK_PID" 2>/dev/null || die "the sink ($kind $*) exited (is $addr:$port taken?)"
}

# --- quiet machine ------------------------------------------------------------------------
NOT_QUIET=
settle() { # SECONDS [quiet]
    sync
    sleep "${1:-0.3}"
    [ "${2:-}" = quiet ] || return 0
    local q q1 q2
    if q=$(python3 "$BENCH/quiet.py" "$BENCH_WORK" --max-wait "$QUIET_STEP"); then
        NOT_QUIET=
    else
        read -r q1 q2 <<<"$q"
        NOT_QUIET="machine busy before the run (${q1}% CPU; $q2 MB/s written)"
    fi
}

# --- CSV ----------------------------------------------------------------------------------
csv_header() {
    if [ ! -s "$CSV" ]; then
        echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
    fi
}
# csv_row ROLE SYSTEM RUN N WORKLOAD "key=value ..." NOTE [UNIT]
csv_row() {
    local role=$1 system=$2 run=$3 n=$4 workload=$5 kv=$6 note=${7:-} unit=${8:-msg/s}
    if [ -n "$NOT_QUIET" ]; then note="${note:+$note; }$NOT_QUIET"; fi
    local seconds="" msg_per_s="" peak_rss_kb="" cpu_busy_pct="" iowait_pct=""
    local machine_cpu_s="" server_cpu_s="" client_cpu_s="" k v
    for k in $kv; do
        v=${k#*=}
        case ${k%%=*} in
        seconds) seconds=$v ;;
        msg_per_s) msg_per_s=$v ;;
        peak_rss_kb) peak_rss_kb=$v ;;
        cpu_busy_pct) cpu_busy_pct=$v ;;
        iowait_pct) iowait_pct=$v ;;
        machine_cpu_s) machine_cpu_s=$v ;;
        server_cpu_s) server_cpu_s=$v ;;
        client_cpu_s) client_cpu_s=$v ;;
        nice_pct) if [ "$v" -ge 5 ]; then note="${note:+$note; }niced background work took $v% of the machine"; fi ;;
        esac
    done
    system=${system//,/;}
    note=${note//,/;}
    echo "$workload,$role,$system,$run,$n,$msg_per_s,$unit,$seconds,$peak_rss_kb,$cpu_busy_pct,$iowait_pct,$machine_cpu_s,$server_cpu_s,$client_cpu_s,$note" >>"$CSV"
}

# --- how many messages a case flushes -------------------------------------------------------
# With CHUNKING a flush needs no round trip per message: all N. With PIPELINING only, one
# round trip per message; with neither (and the plain client), four. On a link such a case
# flushes FLUSH_BUDGET seconds' worth of round trips (at least FLUSH_NMIN, at most N).
n_for() { # RTT_MS ROUND_TRIPS_PER_MESSAGE
    local rtt=$1 k=$2
    if [ "$rtt" = 0 ] || [ "$k" = 0 ]; then
        echo "$N"
        return
    fi
    awk -v b="$FLUSH_BUDGET" -v r="$rtt" -v k="$k" -v lo="$FLUSH_NMIN" -v hi="$N" \
        'BEGIN { n = int(b * 1000 / (r * k)); if (n < lo) n = lo; if (n > hi) n = hi; print n }'
}

# --- one measurement ----------------------------------------------------------------------
PORT=25300
# measure RTT RUN CASE N ROLE: CASE is chunking, pipelining, neither, plain,
# own-pipelining or own-neither; pipelining-cK and neither-cK flush over K connections
measure() {
    local rtt=$1 run=$2 case=$3 n=$4 role=$5
    local where=local host=127.0.0.1 ns=()
    if [ "$rtt" != 0 ]; then
        where=remote
        host=$ADDR_B
        ns=(ip netns exec "$NSA")
    fi
    local dir=$WORK/rtt$rtt/run$run-$case-n$n
    mkdir -p "$(dirname "$dir")"
    "$TURNMAIL" init "$dir" >>"$LOG" 2>&1 || die "turnmail init failed"
    local md=$dir/sites/acme/Maildir
    # The spool belongs to the mail user init chose (turnmail, else mail).
    python3 "$TOOLS" spool "$md" "$n" --size "$SIZE" --owner "$(stat -c %u:%g "$md")" ||
        die "filling the spool failed"
    local conns=1 sinkcase=$case
    if [[ "$case" =~ ^(pipelining|neither)-c([0-9]+)$ ]]; then
        sinkcase=${BASH_REMATCH[1]}
        conns=${BASH_REMATCH[2]}
        echo "connections = $conns" >>"$dir/sites/acme/site.toml"
    fi
    PORT=$((PORT + 1))
    while ss -Htln "sport = :$PORT" | grep -q .; do PORT=$((PORT + 1)); done # taken by others
    local sink
    case $sinkcase in
    chunking)
        start_sink "$where" "$PORT" own --pipelining --chunking
        sink="own sink (CHUNKING+PIPELINING)"
        ;;
    pipelining | plain)
        start_sink "$where" "$PORT" postfix
        sink="smtp-sink $PF_VERSION (PIPELINING)"
        ;;
    neither)
        start_sink "$where" "$PORT" postfix -p
        sink="smtp-sink $PF_VERSION -p (neither)"
        ;;
    own-pipelining)
        start_sink "$where" "$PORT" own --pipelining
        sink="own sink (PIPELINING)"
        ;;
    own-neither)
        start_sink "$where" "$PORT" own
        sink="own sink (neither)"
        ;;
    *) die "unknown case $case" ;;
    esac
    local link=loopback
    [ "$rtt" = 0 ] || link="${rtt} ms link (NOOP round trip $LINK_RTT_MS ms)"
    if [ "$FLUSH_QUIET_EACH" = 1 ]; then settle 0.3 quiet; else settle 0.3; fi
    local out system
    if [ "$case" = plain ]; then
        out=$("${ns[@]}" python3 "$TOOLS" plain "$host:$PORT" "$md" --server-pid "$SINK_PID" 2>>"$LOG") ||
            die "plain client failed at $rtt ms: $out"
        system="Python $(python3 -c 'import platform; print(platform.python_version())') smtplib; one transaction at a time"
        [[ " $out " == *" sent=$n "* ]] || die "plain client sent the wrong number: $out"
    else
        local tf=$dir.time
        out=$(python3 "$TOOLS" timed --server-pid "$SINK_PID" --time-file "$tf" \
            --out "$dir.flush.out" --err "$dir.flush.log" -- \
            "${ns[@]}" /usr/bin/time -v -o "$tf" \
            "$TURNMAIL" --root "$dir" flush acme --to "$host:$PORT") ||
            die "turnmail flush failed at $rtt ms against $sink: $out (see $dir.flush.out, $dir.flush.log)"
        grep -q "^acme: $n delivered, 0 bounced, 0 kept" "$dir.flush.out" ||
            die "turnmail flush did not deliver all $n messages: $(tail -1 "$dir.flush.out")"
        local secs
        secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
        out="$out msg_per_s=$(awk -v n="$n" -v s="$secs" 'BEGIN {printf "%.1f", n / s}')"
        system="turnmail $TM_VERSION"
        [ "$conns" = 1 ] || system="$system; $conns connections"
    fi
    local left
    left=$(find "$md/new" "$md/cur" -type f | wc -l)
    [ "$left" = 0 ] || die "$left messages left in the spool after $case at $rtt ms"
    stop_pid "$SINK_PID"
    SINK_PID=
    say "  ${rtt} ms, $case (n=$n): $out"
    local label=${rtt}ms
    [ "$rtt" = 0 ] && label=loopback
    csv_row "$role" "$system" "$run" "$n" "site-flush:$label:$case" "$out" "sink: $sink; $link"
}

rm -f "$CSV"
csv_header
say "flush: N=$N, $RUNS run(s), RTTs ${FLUSH_RTTS// /, } ms, budget ${FLUSH_BUDGET}s per link-bound case, work dir $WORK"
for rtt in $FLUSH_RTTS; do
    LINK_RTT_MS=
    if [ "$rtt" != 0 ]; then link_up "$rtt"; fi
    [ "$FLUSH_QUIET_EACH" = 1 ] || settle 0.3 quiet
    for ((r = 1; r <= RUNS; r++)); do
        say "${rtt} ms, run $r"
        measure "$rtt" "$r" chunking "$(n_for "$rtt" 0)" turnmail
        measure "$rtt" "$r" pipelining "$(n_for "$rtt" 1)" turnmail
        if [ "$FLUSH_CONNS" -gt 1 ]; then
            measure "$rtt" "$r" "pipelining-c$FLUSH_CONNS" "$(n_for "$rtt" 1)" turnmail
        fi
        measure "$rtt" "$r" neither "$(n_for "$rtt" 4)" turnmail
        if [ "$FLUSH_CONNS" -gt 1 ]; then
            measure "$rtt" "$r" "neither-c$FLUSH_CONNS" "$(n_for "$rtt" 4)" turnmail
        fi
        measure "$rtt" "$r" plain "$(n_for "$rtt" 4)" peer
        if [ "$rtt" = 0 ] && [ "$FLUSH_SINK_CHECK" = 1 ]; then
            measure 0 "$r" own-pipelining "$N" sink-check
            measure 0 "$r" own-neither "$N" sink-check
        fi
    done
    if [ "$rtt" != 0 ]; then link_down; fi
done
# Memory: the same flush (loopback, CHUNKING) over spools of different sizes.
if [ -n "$FLUSH_MEM_NS" ]; then say "memory flatness (turnmail flush, n in $FLUSH_MEM_NS)"; fi
for n in $FLUSH_MEM_NS; do
    if [ "$n" = "$N" ] && [[ " $FLUSH_RTTS " == *" 0 "* ]]; then continue; fi # measured already
    measure 0 mem chunking "$n" turnmail-mem
    if [ "$FLUSH_CONNS" -gt 1 ]; then measure 0 mem "neither-c$FLUSH_CONNS" "$n" turnmail-mem; fi
done
