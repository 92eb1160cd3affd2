#!/usr/bin/env bash
# What a change costs, counted rather than timed: the daemon's instructions (callgrind) and
# system calls (strace -c) per operation, this tree against BASE, each binary serving the
# same load twice (M1 and M2 operations): the difference divided by M2 - M1 leaves out
# start-up and shutdown. Counts repeat from run to run whatever else the machine is doing,
# where timings on a shared two-core machine vary by more than the 5% being checked.
#
# Loads: SMTP delivery (smtp-source, 10 sessions, a new connection per message, 4 KiB, one
# Maildir) and POP3 RETR (pop3_load, one session, one RETR at a time, 4 KiB messages).
# Run as root (the daemons run as the mail user `turnmail` or `mail`):
#   BASE=0ee4d5c bench/cost_counts.sh        # after bench/cost.sh has built BASE
# Output: results/cost_counts.csv and a table on stdout.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}/cost-counts
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
BASE=${BASE:-0ee4d5c}
M1=${M1:-100}
M2=${M2:-300}
HEAD_BIN=${TURNMAIL:-$REPO/target/release/turnmail}
BASE_BIN=${COST_CACHE:-$REPO/target/cost-base}/target/release/turnmail
POP3_LOAD=${POP3_LOAD:-$REPO/target/release/examples/pop3_load}
PORT=${PORT:-26140}
CSV=$BENCH_RESULTS/cost_counts.csv
die() {
    echo "cost_counts: $*" >&2
    exit 1
}
[ "$(id -u)" = 0 ] || die "run as root"
for t in valgrind strace smtp-source setpriv; do
    command -v "$t" >/dev/null || die "$t missing (valgrind, strace, postfix, util-linux)"
done
[ -x "$HEAD_BIN" ] || die "no $HEAD_BIN (cargo build --release)"
[ -x "$POP3_LOAD" ] || die "no $POP3_LOAD (cargo build --release --example pop3_load)"
[ -x "$BASE_BIN" ] || die "no $BASE_BIN: bench/cost.sh builds BASE there (run it first)"
MU=$(id -u turnmail >/dev/null 2>&1 && echo turnmail || echo mail)
rm -rf "$BENCH_WORK"
mkdir -p "$BENCH_WORK" "$BENCH_RESULTS"
chown "$MU" "$BENCH_WORK"

# one WHICH BIN LOAD M TOOL: a fresh demo root, the daemon under TOOL as the mail user,
# M operations of LOAD; prints the count (instructions or system calls).
one() {
    local which=$1 bin=$2 load=$3 m=$4 tool=$5
    local r=$BENCH_WORK/$which-$load-$m-$tool
    "$bin" init "$r" >"$r.init" 2>&1 || die "init failed ($r.init)"
    local pw
    pw=$(awk '/password:/ {print $2}' "$r.init")
    mkdir -p "$r.out"
    chown "$MU" "$r.out"
    if [ "$load" = retr ]; then
        local md=$r/domains/example.com/joe/Maildir
        "$POP3_LOAD" fill "$md" --messages "$m" --size 4096 >/dev/null
        chown -R "$(stat -c %U:%G "$r/domains/example.com")" "$md"
        touch -d '-10 seconds' "$md"/new/*
    fi
    local run=(setpriv --reuid "$MU" --regid "$MU" --init-groups)
    if [ "$tool" = callgrind ]; then
        run+=(valgrind --tool=callgrind "--callgrind-out-file=$r.out/cg.%p")
    else
        run+=(strace -f -c -o "$r.out/strace")
    fi
    "${run[@]}" "$bin" --root "$r" serve --smtp "127.0.0.1:$PORT" --pop3 "127.0.0.1:$((PORT + 1))" \
        --odmr "127.0.0.1:$((PORT + 2))" >"$r.log" 2>&1 &
    local pid=$! i
    for ((i = 0; i < 600; i++)); do
        ss -Htln "sport = :$((PORT + 1))" | grep -q . && break
        sleep 0.1
    done
    if [ "$load" = retr ]; then
        "$POP3_LOAD" retr "127.0.0.1:$((PORT + 1))" --user joe@example.com --password "$pw" \
            --sessions 1 >"$r.load" 2>&1 || die "pop3_load failed ($r.load)"
    else
        smtp-source -s 10 -l 4096 -m "$m" -t joe@example.com -f bench@bench.example \
            -M bench.example "127.0.0.1:$PORT" >"$r.load" 2>&1 || die "smtp-source failed"
    fi
    sleep 1
    # strace's child is the daemon; valgrind runs it in its own process.
    if [ "$tool" = strace ]; then kill -TERM "$(pgrep -P "$pid")"; else kill -TERM "$pid"; fi
    wait "$pid" 2>/dev/null || true
    if [ "$load" = smtp ]; then
        local got
        got=$(find "$r/domains/example.com/joe/Maildir/new" -type f | wc -l)
        [ "$got" = "$m" ] || die "$which: $got of $m messages delivered ($r.log)"
    fi
    if [ "$tool" = callgrind ]; then
        awk '/^summary:/ {print $2; exit}' "$r.out"/cg.*
    else
        awk '$NF == "total" {print $4}' "$r.out/strace"
    fi
}

BASE_REV=$(cd "$REPO" && git rev-parse --short "$BASE")
HEAD_REV=$(cd "$REPO" && git rev-parse --short HEAD)
echo "load,count,base,head,base_per_op,head_per_op,ratio" >"$CSV"
printf '%-6s %-13s %12s %12s %7s   (per operation; BASE %s, this tree %s)\n' load count base head head/base "$BASE_REV" "$HEAD_REV"
for load in smtp retr; do
    for tool in callgrind strace; do
        declare -A per=()
        for which in base head; do
            bin=$BASE_BIN
            [ "$which" = head ] && bin=$HEAD_BIN
            a=$(one "$which" "$bin" "$load" "$M1" "$tool")
            b=$(one "$which" "$bin" "$load" "$M2" "$tool")
            per[$which]=$(awk -v a="$a" -v b="$b" -v d=$((M2 - M1)) 'BEGIN { printf "%.1f", (b - a) / d }')
        done
        name=$([ "$tool" = callgrind ] && echo instructions || echo syscalls)
        ratio=$(awk -v a="${per[base]}" -v b="${per[head]}" 'BEGIN { printf "%.3f", b / a }')
        echo "$load,$name,$BASE_REV,$HEAD_REV,${per[base]},${per[head]},$ratio" >>"$CSV"
        printf '%-6s %-13s %12s %12s %7s\n' "$load" "$name" "${per[base]}" "${per[head]}" "$ratio"
        unset per
    done
done
