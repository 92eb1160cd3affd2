#!/usr/bin/env bash
# POP3: turnmail vs Dovecot 2.3 on the same Maildirs and accounts, side by side in one run:
# logins/s with 1 and 10 concurrent clients (sha512-crypt hashes) and RETR throughput of a
# 1,000 x 4 KiB mailbox, lockstep and pipelined; beside them the ceilings (crypt(3) rate of
# the same hash; the load generator against a trivial in-memory server).
#
# Called by bench/run, which sets (all have defaults for running this file alone as root):
#   BENCH_WORK     scratch directory (a fresh pop3/ under it)
#   BENCH_RESULTS  where pop3.csv and pop3.log go
#   RUNS           runs per system
#   POP3_LOGINS_1  logins per run with 1 client (default 400)
#   POP3_LOGINS_10 logins per run with 10 clients (default 2000)
#   POP3_SESSIONS  RETR sessions per run (1,000 messages each; default 10)
#   POP3_PAUSE     seconds of pause before each measurement (default 0.5)
#   TURNMAIL       the turnmail binary (release build)
#   POP3_LOAD      the load generator (target/release/examples/pop3_load)
#   POP3_SYSTEMS   the servers measured ("turnmail dovecot")
#
# Accounts: u0@example.com ... u9@example.com (empty Maildirs; client i logs in as ui) and
# retr@example.com (1,000 messages of 4096 bytes), one password, one $6$ hash (mkpasswd -m
# sha512crypt, 5000 rounds), homes under the turnmail root's domains/example.com/. turnmail
# reads them from users/poppasswd; Dovecot from a passwd-file with the same hash
# ({SHA512-CRYPT}) and the same homes (userdb uid/gid = the mail user,
# mail_location = maildir:~/Maildir), so both servers serve the very same files.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
RUNS=${RUNS:-3}
LOGINS_1=${POP3_LOGINS_1:-400}
LOGINS_10=${POP3_LOGINS_10:-2000}
SESSIONS=${POP3_SESSIONS:-10}
PAUSE=${POP3_PAUSE:-0.5}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
POP3_LOAD=${POP3_LOAD:-$REPO/target/release/examples/pop3_load}
TM_PORT=${POP3_TM_PORT:-25401}
DC_PORT=${POP3_DC_PORT:-25402}
TM_SMTP=${POP3_TM_SMTP:-25403}
TM_ODMR=${POP3_TM_ODMR:-25404}
MESSAGES=1000
SIZE=4096
PASSWORD=bench-pop3-Secret
DOMAIN=example.com

W=$BENCH_WORK/pop3
CSV=$BENCH_RESULTS/pop3.csv
LOG=$BENCH_RESULTS/pop3.log
mkdir -p "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "pop3: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (Dovecot's master and the mail user need it)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release)"
[ -x "$POP3_LOAD" ] || die "no $POP3_LOAD (cargo build --release --example pop3_load)"
command -v dovecot >/dev/null || die "dovecot missing (apt-get install dovecot-pop3d)"
[ -e /usr/lib/dovecot/pop3 ] || die "Dovecot's pop3 service missing (apt-get install dovecot-pop3d)"

DC_VERSION=$(dovecot --version 2>/dev/null | cut -d' ' -f1 || echo "?")
TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi

# --- cleanup: whatever we started is stopped, even on failure -------------------------
TM_PID=
DC_PID=
cleanup() {
    local p
    for p in $TM_PID $DC_PID; do
        if kill -0 "$p" 2>/dev/null; then
            kill -TERM "$p" 2>/dev/null || true
        fi
    done
    for p in $TM_PID $DC_PID; do
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    TM_PID= DC_PID=
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

QUIET_STEP=${QUIET_STEP:-60}
NOT_QUIET=
settle() {
    sync
    sleep "${1:-1}"
    local q q1 q2
    if q=$(python3 "$BENCH/quiet.py" "$W" --max-wait "$QUIET_STEP"); then
        NOT_QUIET=
    else
        read -r q1 q2 <<<"$q"
        NOT_QUIET="machine busy before the run (${q1}% CPU and $q2 MB/s written)"
    fi
}

# csv_row WORKLOAD ROLE SYSTEM RUN N UNIT "key=value ..." NOTE
csv_row() {
    local workload=$1 role=$2 system=$3 run=$4 n=$5 unit=$6 kv=$7 note=${8:-}
    if [ -n "$NOT_QUIET" ]; then note="${note:+$note; }$NOT_QUIET"; fi
    local seconds="" value="" peak_rss_kb="" cpu_busy_pct="" machine_cpu_s="" server_cpu_s=""
    local client_cpu_s="" k v
    for k in $kv; do
        v=${k#*=}
        case ${k%%=*} in
        seconds) seconds=$v ;;
        value) value=$v ;;
        peak_rss_kb) peak_rss_kb=$v ;;
        cpu_busy_pct) cpu_busy_pct=$v ;;
        machine_cpu_s) machine_cpu_s=$v ;;
        server_cpu_s) server_cpu_s=$v ;;
        client_cpu_s) client_cpu_s=$v ;;
        failures) if [ "$v" != 0 ]; then note="${note:+$note; }$v failed"; fi ;;
        nice_pct) if [ "$v" -ge 5 ]; then note="${note:+$note; }niced background work took $v% of the machine"; fi ;;
        esac
    done
    system=${system//,/;}
    note=${note//,/;}
    echo "$workload,$role,$system,$run,$n,$value,$unit,$seconds,$peak_rss_kb,$cpu_busy_pct,,$machine_cpu_s,$server_cpu_s,$client_cpu_s,$note" >>"$CSV"
}

# --- the accounts and the Maildirs --------------------------------------------------------
OLD=
if [ -e "$W" ]; then
    OLD=$W.old.$$
    mv "$W" "$OLD"
fi
mkdir -p "$W"
chmod 755 "$W"
for p in "$TM_PORT" "$DC_PORT" "$TM_SMTP" "$TM_ODMR"; do
    port_free "$p" || die "port $p is taken"
done

if command -v mkpasswd >/dev/null; then
    HASH=$(mkpasswd -m sha512crypt "$PASSWORD")
else # whois not installed: Python's crypt module (libxcrypt) makes the same format
    HASH=$(python3 -W ignore -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_SHA512)))' "$PASSWORD")
fi
case $HASH in \$6\$*) ;; *) die "could not make a sha512-crypt hash (got $HASH)" ;; esac

ROOT=$W/turnmail
"$TURNMAIL" init "$ROOT" >>"$LOG" 2>&1 || die "turnmail init failed"
OWNER=$(cut -d: -f3 "$ROOT/users/poppasswd" | head -1) # the mail user init chose
MUID=$(id -u "$OWNER")
MGID=$(id -g "$OWNER")
DHOME=$ROOT/domains/$DOMAIN
USERS=()
: >"$W/poppasswd"
: >"$W/dovecot-users"
for a in u0 u1 u2 u3 u4 u5 u6 u7 u8 u9 retr; do
    mkdir -p "$DHOME/$a/Maildir/tmp" "$DHOME/$a/Maildir/new" "$DHOME/$a/Maildir/cur"
    echo "$a@$DOMAIN:$HASH:$OWNER:$DHOME/$a" >>"$W/poppasswd"
    echo "$a@$DOMAIN:{SHA512-CRYPT}$HASH:$MUID:$MGID::$DHOME/$a::" >>"$W/dovecot-users"
    [ "$a" = retr ] || USERS+=("$a@$DOMAIN")
done
"$POP3_LOAD" fill "$DHOME/retr/Maildir" --messages "$MESSAGES" --size "$SIZE" >>"$LOG" ||
    die "filling the RETR mailbox failed"
chown -R "$MUID:$MGID" "$DHOME"
chmod 700 "$DHOME"/*
install -m 640 -o "$MUID" -g "$MGID" "$W/poppasswd" "$ROOT/users/poppasswd"
"$TURNMAIL" --root "$ROOT" newu >>"$LOG" 2>&1 || die "turnmail newu failed"
chmod 644 "$W/dovecot-users"
USER_LIST=$(
    IFS=,
    echo "${USERS[*]}"
)

# --- Dovecot: a private instance with its own configuration ---------------------------------
mkdir -p "$W/dovecot"
cat >"$W/dovecot/dovecot.conf" <<EOF
# A private Dovecot for the benchmark (bench/pop3.sh); loopback only; default services.
base_dir = $W/dovecot/run
state_dir = $W/dovecot/state
instance_name = turnmail-bench-$DC_PORT
log_path = $W/dovecot/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = $MUID
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = scheme=SHA512-CRYPT $W/dovecot-users
}
userdb {
  driver = passwd-file
  args = $W/dovecot-users
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DC_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF

# --- start both servers ---------------------------------------------------------------------
"$TURNMAIL" --root "$ROOT" serve --pop3 "127.0.0.1:$TM_PORT" --smtp "127.0.0.1:$TM_SMTP" \
    --odmr "127.0.0.1:$TM_ODMR" >"$W/turnmail.log" 2>&1 &
TM_PID=$!
dovecot -F -c "$W/dovecot/dovecot.conf" >"$W/dovecot/stderr" 2>&1 &
DC_PID=$!
wait_port "$TM_PORT" 10 || die "turnmail did not listen (see $W/turnmail.log)"
wait_port "$DC_PORT" 20 || die "Dovecot did not listen (see $W/dovecot/dovecot.log, $W/dovecot/stderr)"

TM_ADDR=127.0.0.1:$TM_PORT
DC_ADDR=127.0.0.1:$DC_PORT
TM_NAME="turnmail $TM_VERSION"
DC_NAME="Dovecot $DC_VERSION (default services)"

# One login each (any failure stops here, with its reason), then one untimed pipelined pass
# of the RETR mailbox each: both read it from a warm cache, and Dovecot has its index.
for addr in "$TM_ADDR" "$DC_ADDR"; do
    "$POP3_LOAD" logins "$addr" --clients 1 --count 1 --users "${USERS[0]}" \
        --password "$PASSWORD" >>"$LOG" 2>&1 || die "a test login on $addr failed (see $LOG)"
    "$POP3_LOAD" retr "$addr" --user "retr@$DOMAIN" --password "$PASSWORD" --sessions 1 \
        --pipelined >>"$LOG" 2>&1 || die "a test RETR session on $addr failed (see $LOG)"
done

rm -f "$CSV"
echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
NPROC=$(nproc)
say "pop3: $RUNS run(s); logins $LOGINS_1 (1 client) and $LOGINS_10 (10 clients); RETR $SESSIONS sessions of $MESSAGES x $SIZE B"

# measure WORKLOAD ROLE SYSTEM RUN N UNIT NOTE -- pop3_load ARGS...
measure() {
    local workload=$1 role=$2 system=$3 run=$4 n=$5 unit=$6 note=$7
    shift 8
    local out
    out=$("$POP3_LOAD" "$@" 2>>"$LOG") || die "$workload ($system) failed: $out (see $LOG)"
    say "  $workload $system: $out"
    csv_row "$workload" "$role" "$system" "$run" "$n" "$unit" "$out" "$note"
}

# The ceilings: once per run, beside the servers.
ceilings() { # RUN
    measure pop3-logins-1 ceiling "sha512-crypt verify (1 thread)" "$1" "$LOGINS_1" logins/s \
        "crypt(3) of the same hash through turnmail's library; no network" -- \
        crypt-ceiling --threads 1 --count "$LOGINS_1" --hash "$HASH" --password "$PASSWORD"
    measure pop3-logins-10 ceiling "sha512-crypt verify ($NPROC threads)" "$1" "$LOGINS_10" logins/s \
        "crypt(3) of the same hash on every core; no network" -- \
        crypt-ceiling --threads "$NPROC" --count "$LOGINS_10" --hash "$HASH" --password "$PASSWORD"
    # Lockstep, the trivial server is bound by the same round trip (two wake-ups a message) as
    # the real ones, so it is no ceiling: shown in the details only, as a reference.
    measure pop3-retr-lockstep reference "load generator vs in-memory server" "$1" $((MESSAGES * SESSIONS)) MB/s \
        "canned RETR reply from memory (examples/pop3_load.rs retr-ceiling); round-trip bound like the servers: not a ceiling" -- \
        retr-ceiling --messages "$MESSAGES" --size "$SIZE" --sessions "$SESSIONS"
    measure pop3-retr-pipelined ceiling "load generator vs in-memory server" "$1" $((MESSAGES * SESSIONS)) MB/s \
        "canned RETR reply from memory (examples/pop3_load.rs retr-ceiling)" -- \
        retr-ceiling --messages "$MESSAGES" --size "$SIZE" --sessions "$SESSIONS" --pipelined
}

for ((r = 1; r <= RUNS; r++)); do
    say "run $r"
    settle 1
    ceilings "$r"
    for sys in ${POP3_SYSTEMS:-turnmail dovecot}; do
        if [ $sys = turnmail ]; then
            addr=$TM_ADDR name=$TM_NAME role=turnmail pid=(--pid "$TM_PID")
        else
            addr=$DC_ADDR name=$DC_NAME role=peer pid=()
        fi
        sleep "$PAUSE"
        measure pop3-logins-1 "$role" "$name" "$r" "$LOGINS_1" logins/s "" -- \
            logins "$addr" --clients 1 --count "$LOGINS_1" --users "$USER_LIST" \
            --password "$PASSWORD" "${pid[@]}"
        sleep "$PAUSE"
        measure pop3-logins-10 "$role" "$name" "$r" "$LOGINS_10" logins/s "" -- \
            logins "$addr" --clients 10 --count "$LOGINS_10" --users "$USER_LIST" \
            --password "$PASSWORD" "${pid[@]}"
        sleep "$PAUSE"
        measure pop3-retr-lockstep "$role" "$name" "$r" $((MESSAGES * SESSIONS)) MB/s "" -- \
            retr "$addr" --user "retr@$DOMAIN" --password "$PASSWORD" --sessions "$SESSIONS" "${pid[@]}"
        sleep "$PAUSE"
        measure pop3-retr-pipelined "$role" "$name" "$r" $((MESSAGES * SESSIONS)) MB/s "" -- \
            retr "$addr" --user "retr@$DOMAIN" --password "$PASSWORD" --sessions "$SESSIONS" \
            --pipelined "${pid[@]}"
    done
done

cleanup
say "pop3: turnmail peak RSS $(awk -F, '$2=="turnmail" && $9>m {m=$9} END {print m+0}' "$CSV") kB"
rm -rf ${OLD:+"$OLD"}
