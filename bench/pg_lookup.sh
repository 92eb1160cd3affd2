#!/usr/bin/env bash
# Accounts in PostgreSQL against accounts in files: RCPT lookups/s and POP3 logins/s of
# one root of PG_N accounts (bench/pg_accounts.py), served by the release binary once with
# `[accounts] backend = "files"` (the cdbs) and once with `backend = "postgres"` (a private
# PostgreSQL: initdb in a temporary directory, Unix socket only, run as the mail user),
# alternating RUNS times, each daemon warmed first (accounts loaded, every account looked
# up once). Rows: role turnmail = the postgres backend, role peer = the files backend, so
# the report's ratio is postgres / files (target: at least 0.90). Method:
# bench/method/pg_lookup.md.
#
# Environment (defaults for running it alone, as root):
#   BENCH_WORK     scratch directory (a fresh pg_lookup/ under it; default bench/work)
#   BENCH_RESULTS  where pg_lookup.csv and pg_lookup.log go (bench/results)
#   RUNS           runs of each backend (3)
#   PG_N           accounts (100000)
#   PG_RCPTS       RCPT commands per run (200000), over PG_SESSIONS SMTP sessions (8),
#                  PG_BATCH pipelined at a time (50), PG_UNKNOWN_PCT % unknown (10),
#                  a new connection after PG_PER_SESSION RCPTs (1000)
#   PG_LOGINS      POP3 logins per run (4000), over PG_CLIENTS clients (8)
#   QUIET_STEP     seconds each measurement may wait for a quiet machine (60)
#   TURNMAIL       target/release/turnmail
#   PG_LOAD        the load generator (target/release/examples/pg_lookup_load)
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
RUNS=${RUNS:-3}
N=${PG_N:-100000}
RCPTS=${PG_RCPTS:-200000}
SESSIONS=${PG_SESSIONS:-8}
BATCH=${PG_BATCH:-50}
UNKNOWN_PCT=${PG_UNKNOWN_PCT:-10}
PER_SESSION=${PG_PER_SESSION:-1000}
LOGINS=${PG_LOGINS:-4000}
CLIENTS=${PG_CLIENTS:-8}
QUIET_STEP=${QUIET_STEP:-60}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
PG_LOAD=${PG_LOAD:-$REPO/target/release/examples/pg_lookup_load}
PASSWORD=bench-password # pg_accounts.py's password for every account
PG_USER=turnmail        # the mail user `turnmail init` names; PostgreSQL refuses root

W=$BENCH_WORK/pg_lookup
CSV=$BENCH_RESULTS/pg_lookup.csv
LOG=$BENCH_RESULTS/pg_lookup.log
mkdir -p "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "pg_lookup: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (the daemon's mail user, PostgreSQL as $PG_USER)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release --bin turnmail)"
[ -x "$PG_LOAD" ] || die "no $PG_LOAD (cargo build --release --example pg_lookup_load)"
id "$PG_USER" >/dev/null 2>&1 || die "no system user $PG_USER (the package's mail user)"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] ||
    die "no PostgreSQL server (apt-get install postgresql)"
PG_VERSION=$("$PG_BIN/postgres" --version | awk '{print $3}')
TM_VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    TM_VERSION="$TM_VERSION+dirty"
fi

# --- cleanup: the daemon and the database server we started, even on failure -------------
TM_PID=
PG_STARTED=
stop_daemon() {
    [ -n "$TM_PID" ] || return 0
    kill -TERM "$TM_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$TM_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$TM_PID" 2>/dev/null || true
    wait "$TM_PID" 2>/dev/null || true
    TM_PID=
}
pg() { runuser -u "$PG_USER" -- "$PG_BIN/$1" "${@:2}"; }
cleanup() {
    stop_daemon
    if [ -n "$PG_STARTED" ]; then
        pg pg_ctl -D "$W/pg/data" -m fast -w stop >>"$LOG" 2>&1 || true
        PG_STARTED=
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NOT_QUIET=
settle() {
    sync
    sleep 1
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

kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT SECONDS
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        if ss -Htln "sport = :$1" | grep -q .; then return 0; fi
        sleep 0.05
    done
    return 1
}

# --- the database server: private, Unix socket in $W/pg only, as the mail user -------------
OLD=
if [ -e "$W" ]; then
    OLD=$W.old.$$
    mv "$W" "$OLD"
fi
mkdir -p "$W/pg"
chmod 755 "$W"
chown "$PG_USER:" "$W/pg"
chmod 755 "$W/pg"
pg initdb -D "$W/pg/data" -A trust -U "$PG_USER" -E UTF8 --no-sync >>"$LOG" 2>&1 ||
    die "initdb failed (see $LOG)"
# fsync off: only the import writes; the daemons read the accounts into memory.
pg pg_ctl -D "$W/pg/data" -l "$W/pg/server.log" -w -t 60 \
    -o "-k $W/pg -c listen_addresses='' -c fsync=off" start >>"$LOG" 2>&1 ||
    die "pg_ctl start failed (see $W/pg/server.log)"
PG_STARTED=1
pg createdb -h "$W/pg" -U "$PG_USER" turnmail >>"$LOG" 2>&1 || die "createdb failed (see $LOG)"
URL="host=$W/pg dbname=turnmail user=$PG_USER"

# --- the accounts: one root, cheap but real hashes ($1$, MD5-crypt) -------------------------
HASH=$(python3 -W ignore -c 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_MD5)))' "$PASSWORD")
case $HASH in \$1\$*) ;; *) die "could not make an MD5-crypt hash (got $HASH)" ;; esac
CRYPT_US=$(python3 -W ignore -c '
import crypt, sys, time
h, pw = sys.argv[1], sys.argv[2]
n = 500
t = time.perf_counter()
for _ in range(n):
    assert crypt.crypt(pw, h) == h
print(f"{(time.perf_counter() - t) / n * 1e6:.0f}")' "$HASH" "$PASSWORD")
ROOT=$W/root
say "pg_lookup: building $N accounts (pg_accounts.py) and importing them into PostgreSQL $PG_VERSION"
BUILT=$(python3 "$BENCH/pg_accounts.py" "$ROOT" "$N" --url "$URL" --turnmail "$TURNMAIL" \
    --hash "$HASH" 2>>"$LOG") || die "pg_accounts.py failed (see $LOG)"
say "  $BUILT"
# Every mailbox but the demo's joe, in poppasswd order.
grep -v '^joe@example.com:' "$ROOT/users/poppasswd" | cut -d: -f1 >"$W/accounts"
[ "$(wc -l <"$W/accounts")" = "$N" ] || die "expected $N accounts in $ROOT/users/poppasswd"

# Two configurations of the same root: refused recipients neither delayed nor counted
# towards a disconnect (the unknown recipients are part of the load), and the backend.
cp "$ROOT/turnmail.toml" "$W/toml.base"
python3 - "$W/toml.base" <<'EOF'
import sys
p = sys.argv[1]
lines = open(p).read().splitlines()
i = lines.index("[smtp]")
lines[i + 1:i + 1] = ["rcpt_hard_error_limit = 0", "rcpt_error_delay_ms = 0"]
open(p, "w").write("\n".join(lines) + "\n")
EOF
cp "$W/toml.base" "$W/toml.files"
cp "$W/toml.base" "$W/toml.postgres"
printf '\n[accounts]\nbackend = "postgres"\n\n[postgres]\nurl = "%s"\n' "$URL" >>"$W/toml.postgres"

# start BACKEND: the daemon on fresh ports, ready (the last account accepted), warmed.
start() {
    cp "$W/toml.$1" "$ROOT/turnmail.toml"
    SMTP=$(free_port) POP=$(free_port)
    local t0
    t0=$(date +%s.%N)
    "$TURNMAIL" --root "$ROOT" serve --smtp "127.0.0.1:$SMTP" --pop3 "127.0.0.1:$POP" \
        --odmr "127.0.0.1:$(free_port)" --submission "127.0.0.1:$(free_port)" \
        --submissions "127.0.0.1:$(free_port)" >>"$W/serve-$1.log" 2>&1 &
    TM_PID=$!
    wait_port "$SMTP" 60 || die "turnmail ($1) did not listen (see $W/serve-$1.log)"
    "$PG_LOAD" ready "127.0.0.1:$SMTP" --accounts "$W/accounts" --timeout 300 >>"$LOG" ||
        die "turnmail ($1) did not accept the last account (see $W/serve-$1.log)"
    READY_S=$(python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$t0")
    local out
    out=$("$PG_LOAD" rcpt-all "127.0.0.1:$SMTP" --accounts "$W/accounts" --sessions "$SESSIONS" \
        --batch "$BATCH" --per-session "$PER_SESSION") || die "the warm-up pass ($1) failed"
    [ "$(kv failures "$out")" = 0 ] && [ "$(kv accepted "$out")" = "$N" ] ||
        die "the warm-up pass ($1) did not accept every account: $out"
    WARM_S=$(kv seconds "$out")
    out=$("$PG_LOAD" logins "127.0.0.1:$POP" --accounts "$W/accounts" --clients "$CLIENTS" \
        --count $((LOGINS / 10 + 1)) --password "$PASSWORD") || die "the login warm-up ($1) failed"
    [ "$(kv failures "$out")" = 0 ] || die "logins failed in the warm-up ($1): $out"
    say "  $1: ready ${READY_S}s after start; every account looked up in ${WARM_S}s"
}

rm -f "$CSV"
echo "workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,machine_cpu_s,server_cpu_s,client_cpu_s,note" >"$CSV"
say "pg_lookup: $RUNS run(s) of each backend; $N accounts; $RCPTS RCPTs ($SESSIONS sessions of $PER_SESSION, $BATCH pipelined, $UNKNOWN_PCT% unknown); $LOGINS logins ($CLIENTS clients; MD5-crypt, ${CRYPT_US} µs a verification here)"

for ((r = 1; r <= RUNS; r++)); do
    order="files postgres"
    [ $((r % 2)) -eq 0 ] && order="postgres files"
    say "run $r ($order)"
    for b in $order; do
        if [ "$b" = postgres ]; then
            role=turnmail name="postgres backend (PostgreSQL $PG_VERSION; turnmail $TM_VERSION)"
        else
            role=peer name="files backend (cdb; turnmail $TM_VERSION)"
        fi
        start "$b"
        note="$N accounts"
        settle
        out=$("$PG_LOAD" rcpt "127.0.0.1:$SMTP" --accounts "$W/accounts" --sessions "$SESSIONS" \
            --count "$RCPTS" --unknown-pct "$UNKNOWN_PCT" --batch "$BATCH" \
            --per-session "$PER_SESSION" --pid "$TM_PID" 2>>"$LOG") ||
            die "the RCPT load ($b) failed (see $LOG)"
        say "  pg-lookup-rcpt $b: $out"
        csv_row pg-lookup-rcpt "$role" "$name" "$r" "$RCPTS" lookups/s "$out" \
            "$note; $UNKNOWN_PCT% unknown (550); a new connection every $PER_SESSION RCPTs"
        sleep 0.5
        out=$("$PG_LOAD" logins "127.0.0.1:$POP" --accounts "$W/accounts" --clients "$CLIENTS" \
            --count "$LOGINS" --password "$PASSWORD" --pid "$TM_PID" 2>>"$LOG") ||
            die "the login load ($b) failed (see $LOG)"
        say "  pg-lookup-logins $b: $out"
        csv_row pg-lookup-logins "$role" "$name" "$r" "$LOGINS" logins/s "$out" \
            "$note; MD5-crypt (${CRYPT_US} µs a verification)"
        stop_daemon
    done
done

cleanup
python3 - "$CSV" <<'EOF' | tee -a "$LOG" >&2
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for w in ("pg-lookup-rcpt", "pg-lookup-logins"):
    med = {role: statistics.median(float(r["value"]) for r in rows
                                   if r["workload"] == w and r["role"] == role)
           for role in ("turnmail", "peer")}
    print(f"pg_lookup: {w}: postgres {med['turnmail']:.0f}/s, files {med['peer']:.0f}/s, "
          f"postgres/files {med['turnmail'] / med['peer']:.3f}")
EOF
rm -rf ${OLD:+"$OLD"}
