#!/usr/bin/env bash
# What a change costs: this tree's turnmail against the same program built at BASE, on the
# same loads in the same run, alternating (BASE first in odd runs, this tree first in even
# ones) so that drift of the machine falls on both alike. The loads are delivery.sh's two
# SMTP loads and pop3.sh's logins and RETR; their turnmail rows go to results/cost.csv as
# workloads `cost-WORKLOAD`, this tree as role turnmail and BASE as role peer, so the
# report shows "this tree / BASE" with its target (no more than 5% slower: ratio ≥ 0.95).
#
# Called by bench/run (full mode); alone, as root:
#   BASE=0ee4d5c RUNS=3 N=2000 bench/cost.sh
# BASE defaults to the commit before the connection-policy work (the hardening of the
# listeners: login limits, deadlines, strict SMTP framing, safe message opens).
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH")
BENCH_WORK=${BENCH_WORK:-$BENCH/work}
BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results}
BASE=${BASE:-0ee4d5c}
RUNS=${RUNS:-3}
N=${N:-2000}
TURNMAIL=${TURNMAIL:-$REPO/target/release/turnmail}
CSV=$BENCH_RESULTS/cost.csv
LOG=$BENCH_RESULTS/cost.log
mkdir -p "$BENCH_WORK" "$BENCH_RESULTS"
: >"$LOG"

say() { printf '%s\n' "$*" | tee -a "$LOG" >&2; }
die() {
    say "cost: $*"
    exit 1
}
[ "$(id -u)" = 0 ] || die "run as root (delivery.sh and pop3.sh need it)"
[ -x "$TURNMAIL" ] || die "no turnmail binary at $TURNMAIL (cargo build --release)"

# --- BASE, built once in a work tree of its own -----------------------------------------
BASE_REV=$(cd "$REPO" && git rev-parse --short "$BASE") || die "no commit $BASE"
# Kept under target/ (bench/run empties its work directory every time).
CACHE=${COST_CACHE:-$REPO/target/cost-base}
SRC=$CACHE/src
BASE_BIN=$CACHE/target/release/turnmail
mkdir -p "$CACHE"
if [ ! -x "$BASE_BIN" ] || [ "$(cat "$CACHE/rev" 2>/dev/null)" != "$BASE_REV" ]; then
    say "cost: building turnmail at $BASE_REV"
    (cd "$REPO" && git worktree remove --force "$SRC" 2>/dev/null || true)
    rm -rf "$SRC"
    (cd "$REPO" && git worktree add --detach "$SRC" "$BASE_REV") >>"$LOG" 2>&1 ||
        die "git worktree add failed (see $LOG)"
    (cd "$SRC" && CARGO_TARGET_DIR=$CACHE/target nice cargo build --release --locked \
        --bin turnmail) >>"$LOG" 2>&1 || die "building $BASE_REV failed (see $LOG)"
    echo "$BASE_REV" >"$CACHE/rev"
    (cd "$REPO" && git worktree remove --force "$SRC") >>"$LOG" 2>&1 || true
fi
HEAD_REV=$(cd "$REPO" && git rev-parse --short HEAD)
if [ -n "$(cd "$REPO" && git status --porcelain -- src Cargo.toml Cargo.lock)" ]; then
    HEAD_REV="$HEAD_REV+dirty"
fi

# --- the loads, alternating ---------------------------------------------------------------
# one RUN WHICH: delivery (both loads) and POP3 with one binary, into their own results dir.
one() {
    local run=$1 which=$2 bin out
    if [ "$which" = base ]; then bin=$BASE_BIN; else bin=$TURNMAIL; fi
    out=$BENCH_WORK/cost-results/$which-$run
    rm -rf "$out"
    mkdir -p "$out"
    say "cost: run $run, $which"
    # Fresh scratch directories for every invocation: the scripts make their roots anew.
    local work=$BENCH_WORK/cost-$which-$run
    TURNMAIL=$bin BENCH_WORK=$work BENCH_RESULTS=$out RUNS=1 N=$N SYSTEMS=turnmail MEM_NS="" \
        "$BENCH/delivery.sh" >>"$LOG" 2>&1 || die "delivery.sh with $which failed (see $LOG and $out)"
    TURNMAIL=$bin BENCH_WORK=$work BENCH_RESULTS=$out RUNS=1 POP3_SYSTEMS=turnmail \
        "$BENCH/pop3.sh" >>"$LOG" 2>&1 || die "pop3.sh with $which failed (see $LOG and $out)"
}
for ((r = 1; r <= RUNS; r++)); do
    if ((r % 2)); then order="base head"; else order="head base"; fi
    for which in $order; do one "$r" "$which"; done
done

# --- their turnmail rows, relabelled -----------------------------------------------------
python3 - "$BENCH_WORK/cost-results" "$CSV" "$RUNS" "$BASE_REV" "$HEAD_REV" <<'EOF'
import csv, os, sys
src, dst, runs, base_rev, head_rev = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
header = None
out = []
for run in range(1, runs + 1):
    for which in ("base", "head"):
        for name in ("delivery.csv", "pop3.csv"):
            path = os.path.join(src, f"{which}-{run}", name)
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    header = header or list(row.keys())
                    if row["role"] != "turnmail":
                        continue
                    row["workload"] = "cost-" + row["workload"]
                    row["run"] = str(run)
                    if which == "base":
                        row["role"] = "peer"
                        row["system"] = f"turnmail {base_rev} (before)"
                    else:
                        row["system"] = f"turnmail {head_rev}"
                    out.append(row)
with open(dst, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=header)
    w.writeheader()
    w.writerows(out)
print(f"cost: {len(out)} rows in {dst}", file=sys.stderr)
EOF
