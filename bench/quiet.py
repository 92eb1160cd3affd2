#!/usr/bin/env python3
"""Wait (a bounded time) until the machine is quiet: other work skews fsync latency and CPU.

usage: quiet.py DIR [--max-wait SECONDS] [--cpu PCT] [--mbs MB_PER_S]

Quiet means: over a 2 s sample, under PCT% CPU busy (niced work included) and under MB_PER_S
written to the disk that holds DIR. Prints the last sample ("busy_pct mb_per_s") and exits 0
when quiet, 1 when it gave up waiting.
"""
import argparse
import os
import sys
import time


def disk_of(path):
    dev = os.stat(path).st_dev
    name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))
    return name


def cpu():
    v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def written(dev):
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if p[2] == dev:
                return int(p[9]) * 512
    return 0


def sample(dev):
    c0, w0 = cpu(), written(dev)
    time.sleep(2)
    c1, w1 = cpu(), written(dev)
    return 100 * (c1[0] - c0[0]) / max(1, c1[1] - c0[1]), (w1 - w0) / 2e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--max-wait", type=float, default=60)
    ap.add_argument("--cpu", type=float, default=15)
    ap.add_argument("--mbs", type=float, default=2)
    a = ap.parse_args()
    dev = disk_of(a.dir)
    deadline = time.monotonic() + a.max_wait
    waited = False
    while True:
        busy, mbs = sample(dev)
        if busy < a.cpu and mbs < a.mbs:
            print(f"{busy:.0f} {mbs:.1f}")
            return 0
        if time.monotonic() >= deadline:
            print(f"{busy:.0f} {mbs:.1f}")
            return 1
        if not waited:
            print(f"bench: waiting for the machine to be quiet ({busy:.0f}% CPU, "
                  f"{mbs:.1f} MB/s written to {dev})", file=sys.stderr)
            waited = True


if __name__ == "__main__":
    sys.exit(main())
