#!/usr/bin/env bash
# What several nodes on one root cost: SMTP delivery of N messages into one mailbox by
# one `turnmail serve` against three nodes (`--node n1..n3`, own ports, one root), the
# same sessions spread over them round-robin, alternating in one run. Each row: the
# time until every message sits in new/ (bench/timed_load.py).
#
# Environment (defaults for running it alone):
#   TURNMAIL     the binary (target/release/turnmail; `cargo build --release --bin turnmail`)
#   NODES_N      messages per run (1000)
#   NODES_S      SMTP sessions at once (12)
#   NODES_RUNS   runs of each layout (3)
#   BENCH_RESULTS  where nodes.csv goes (bench/results)
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/.." && pwd)
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
N=${NODES_N:-1000}
S=${NODES_S:-12}
RUNS=${NODES_RUNS:-3}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}

[ -x "$TURNMAIL" ] || { echo "nodes.sh: no $TURNMAIL (cargo build --release --bin turnmail)" >&2; exit 2; }
mkdir -p "$BENCH_RESULTS"
CSV=$BENCH_RESULTS/nodes.csv
work=$(mktemp -d "${TMPDIR:-/tmp}/turnmail-nodes.XXXXXX")
chmod 755 "$work"
pids=()
stop() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'stop; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Start `count` nodes on a fresh root; their SMTP addresses in $addrs.
start() {
    local count=$1 root=$2
    addrs=()
    for i in $(seq 1 "$count"); do
        local smtp pop odmr sub
        smtp=$(free_port); pop=$(free_port); odmr=$(free_port); sub=$(free_port)
        local node=()
        if [ "$count" -gt 1 ]; then node=(--node "n$i"); fi
        "$TURNMAIL" --root "$root" serve "${node[@]}" --smtp "127.0.0.1:$smtp" \
            --pop3 "127.0.0.1:$pop" --odmr "127.0.0.1:$odmr" --submission "127.0.0.1:$sub" \
            --submissions "127.0.0.1:$(free_port)" 2>>"$work/serve.log" &
        pids+=($!)
        addrs+=("127.0.0.1:$smtp")
    done
    for a in "${addrs[@]}"; do
        for _ in $(seq 1 500); do
            python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "${a#*:}" 2>/dev/null && break
            sleep 0.02
        done
    done
}

# The load: S sessions, round-robin over the addresses, N messages in all.
cat >"$work/load.py" <<'EOF'
import smtplib, sys, threading
n, s, addrs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
def run(k):
    host, port = addrs[k % len(addrs)].rsplit(":", 1)
    c = smtplib.SMTP(host, int(port), timeout=60)
    c.ehlo("bench.example")
    for i in range(k, n, s):
        c.sendmail("bob@example.org", ["joe@example.com"],
                   f"Message-ID: <{i}@nodes.bench>\r\nSubject: {i}\r\n\r\nbody {i}\r\n")
    c.quit()
ts = [threading.Thread(target=run, args=(k,)) for k in range(s)]
for t in ts: t.start()
for t in ts: t.join()
EOF

echo "layout,run,messages,sessions,seconds,msg_per_s" >"$CSV"
for run in $(seq 1 "$RUNS"); do
    # Alternate which layout goes first, so drift in the machine's load is shared.
    layouts="1 3"; [ $((run % 2)) -eq 0 ] && layouts="3 1"
    for count in $layouts; do
        root=$work/root-$count-$run
        "$TURNMAIL" init "$root" >/dev/null
        start "$count" "$root"
        out=$(python3 "$BENCH/timed_load.py" --count "$N" \
            --maildirs "$root/domains/example.com/joe/Maildir" --timeout 600 \
            -- python3 "$work/load.py" "$N" "$S" "${addrs[@]}")
        stop
        secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out" | head -1)
        rate=$(sed -n 's/.*msg_per_s=\([0-9.]*\).*/\1/p' <<<"$out" | head -1)
        echo "nodes-$count,$run,$N,$S,$secs,$rate" | tee -a "$CSV"
        rm -rf "$root"
    done
done
echo "nodes: wrote $CSV" >&2
