#!/usr/bin/env python3
"""Helpers of bench/scheduler.sh.

  scheduler_tools.py sites ROOT COUNT --relayhost HOST:PORT --mail-every K --owner UID:GID
      Create ROOT/sites/site0 ... site<COUNT-1>, each as `turnmail site add` would leave it
      (RELAYHOST, Maildir/{tmp,new,cur}, .qmail-default, site.toml with
      prefix = "site-siteN-", so that no users/assign line is needed), owned by UID:GID;
      every K-th site (site0, siteK, site2K, ...) gets one spooled message (Return-Path and
      Delivered-To lines as qmail-local writes them, about 1 KB), dated two minutes ago.
  scheduler_tools.py sink HOST:PORT LOG
      A minimal SMTP sink (PIPELINING, no TLS) that appends to LOG one line per event with
      the wall-clock time: `conn T` when a connection is accepted, `rcpt T ADDRESS`, `msg T`
      after each end-of-data dot. Runs until killed.
  scheduler_tools.py boundary --lead S
      Print the next minute boundary (Unix time) that is at least S seconds away; when the
      nearest one is closer than that, sleep past it first (so that no schedule fires
      before the daemon is measured).
  scheduler_tools.py measure --pid PID --boundary B --before S --window W --sink-log LOG
                             --expect N [--burst 15] [--max-wait 60] [--daemon-log F]
      Sleep until B - S, then sample /proc/PID/stat every second for W seconds: prints one
      line of key=value pairs: seconds, cpu_s (utime+stime over the window), cpu_pct (of
      one core), burst_cpu_s (the first --burst seconds of the window, which hold the
      boundary) and rest_cpu_s, for windows of 40 s or more tail_cpu_s (its last 20 s), peak_rss_kb (VmHWM) and rss_kb (VmRSS) at the end,
      machine_cpu_s and cpu_busy_pct / nice_pct (whole machine, niced work apart), and from
      the sink's log (waiting up to --max-wait s more for N messages): connections,
      messages, and the connections' times after the boundary in ms: first_ms, median_ms
      and last_ms over the N sites expected; a site that never connected counts as later
      than all others, and a figure it decides is given as the time waited with
      `_at_least=1` (e.g. last_ms_at_least=1). rss_start_kb is VmRSS when the window
      starts; with --daemon-log, flushes (`flush starting` lines in the minute after the
      boundary) and starts_s (the last of them, in seconds after the boundary).
"""
import argparse
import asyncio
import datetime
import os
import statistics
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def make_sites(a):
    root = a.root
    uid, gid = (int(x) for x in a.owner.split(":"))
    sites = os.path.join(root, "sites")
    os.makedirs(sites, exist_ok=True)
    old = time.time() - 120
    body = "".join(f"line {i:04d} of a small spooled message, as a site's mail would be\n"
                   for i in range(16))

    def own(p):
        os.chown(p, uid, gid)

    for i in range(a.count):
        name = f"site{i}"
        d = os.path.join(sites, name)
        os.mkdir(d, 0o700)
        own(d)
        md = os.path.join(d, "Maildir")
        os.mkdir(md, 0o700)
        own(md)
        for sub in ("tmp", "new", "cur"):
            p = os.path.join(md, sub)
            os.mkdir(p, 0o700)
            own(p)
        for fname, text, mode in (
            ("RELAYHOST", f"{a.relayhost}\n", 0o644),
            (".qmail-default", "./Maildir/\n", 0o600),
            ("site.toml", f'prefix = "site-{name}-"\n', 0o644),
        ):
            p = os.path.join(d, fname)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            os.write(fd, text.encode())
            os.close(fd)
            own(p)
        if i % a.mail_every == 0:
            p = os.path.join(md, "new", f"{int(old)}.M{i}P1.bench")
            msg = (f"Return-Path: <sender@bench.example>\n"
                   f"Delivered-To: site-{name}-user@{name}.example\n"
                   f"From: sender@bench.example\nTo: user@{name}.example\n"
                   f"Subject: waiting for {name}\n\n{body}")
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, msg.encode())
            os.close(fd)
            os.utime(p, (old, old))
            own(p)
    return 0


async def sink_main(addr, log_path):
    host, port = addr.rsplit(":", 1)
    log = open(log_path, "a", buffering=1)

    def note(s):
        log.write(f"{s}\n")

    async def handle(reader, writer):
        note(f"conn {time.time():.6f}")
        writer.write(b"220 sink.bench ESMTP\r\n")
        indata = False
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if indata:
                    if line == b".\r\n":
                        indata = False
                        note(f"msg {time.time():.6f}")
                        writer.write(b"250 2.0.0 ok\r\n")
                        await writer.drain()
                    continue
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    writer.write(b"250-sink.bench\r\n250 PIPELINING\r\n")
                elif cmd == b"RCPT":
                    addr = line[8:].strip().decode(errors="replace").strip("<>")
                    note(f"rcpt {time.time():.6f} {addr}")
                    writer.write(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    indata = True
                    writer.write(b"354 go ahead\r\n")
                elif cmd == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    break
                else:  # HELO, MAIL, RSET, NOOP
                    writer.write(b"250 2.0.0 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, int(port), backlog=1024)
    async with server:
        await server.serve_forever()


def boundary(a):
    now = time.time()
    nb = (int(now) // 60 + 1) * 60
    if nb - now < a.lead:
        time.sleep(nb - now + 0.2)
        nb += 60
    print(nb)
    return 0


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid):
    hwm = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return hwm, rss


def machine():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return v[0] + v[2] + v[5] + v[6] + v[7], v[1], sum(v)


def read_sink(path):
    conns, msgs = [], 0
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if p and p[0] == "conn":
                    conns.append(float(p[1]))
                elif p and p[0] == "msg":
                    msgs += 1
    except FileNotFoundError:
        pass
    return conns, msgs


def measure(a):
    start = a.boundary - a.before
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)
    m0 = machine()
    c0 = proc_cpu(a.pid)
    rss0 = proc_mem(a.pid)[1]
    t0 = time.monotonic()
    samples = [(0.0, c0)]
    for k in range(1, int(a.window) + 1):
        time.sleep(max(0.0, t0 + k - time.monotonic()))
        samples.append((time.monotonic() - t0, proc_cpu(a.pid)))
    secs = time.monotonic() - t0
    c1 = samples[-1][1]
    hwm, rss = proc_mem(a.pid)
    m1 = machine()
    burst = next((c for t, c in samples if t >= a.burst - 0.5), c1) - c0
    # The last 20 s of a long window: idle between two boundaries (the sites' stamp check included).
    tail = c1 - next((c for t, c in samples if t >= secs - 20.5), c1) if a.window >= 40 else None
    deadline = time.time() + a.max_wait
    conns, msgs = read_sink(a.sink_log)
    while msgs < a.expect and time.time() < deadline:
        time.sleep(0.5)
        conns, msgs = read_sink(a.sink_log)
    out = {
        "seconds": f"{secs:.1f}",
        "cpu_s": f"{c1 - c0:.2f}",
        "cpu_pct": f"{100 * (c1 - c0) / secs:.2f}",
        "burst_cpu_s": f"{burst:.2f}",
        "rest_cpu_s": f"{c1 - c0 - burst:.2f}",
        **({"tail_cpu_s": f"{tail:.2f}"} if tail is not None else {}),
        "peak_rss_kb": str(hwm),
        "rss_kb": str(rss),
        "rss_start_kb": str(rss0),
    }
    total = max(1, m1[2] - m0[2])
    out["machine_cpu_s"] = f"{(m1[0] - m0[0]) / TICK:.2f}"
    out["cpu_busy_pct"] = f"{100 * (m1[0] - m0[0]) / total:.0f}"
    out["nice_pct"] = f"{100 * (m1[1] - m0[1]) / total:.0f}"
    out["connections"] = str(len(conns))
    out["messages"] = str(msgs)
    if conns:
        waited = 1000 * (time.time() - a.boundary)
        after = sorted(1000 * (c - a.boundary) for c in conns)
        missing = max(0, a.expect - len(after))
        full = after + [float("inf")] * missing
        for key, v in (("first_ms", full[0]), ("median_ms", statistics.median(full)),
                       ("last_ms", full[-1])):
            if v == float("inf"):
                out[key] = f"{waited:.1f}"
                out[f"{key}_at_least"] = "1"
            else:
                out[key] = f"{v:.1f}"
    if a.daemon_log:
        starts = []
        with open(a.daemon_log, errors="replace") as f:
            for line in f:
                if "flush starting" in line:
                    stamp = line.split()[0].rstrip("Z")
                    t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)
                    if a.boundary - 1 <= t.timestamp() < a.boundary + 59:
                        starts.append(t.timestamp())
        out["flushes"] = str(len(starts))
        if starts:
            out["starts_s"] = f"{max(starts) - a.boundary:.1f}"
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sites")
    s.add_argument("root")
    s.add_argument("count", type=int)
    s.add_argument("--relayhost", required=True)
    s.add_argument("--mail-every", type=int, default=100)
    s.add_argument("--owner", required=True)
    k = sub.add_parser("sink")
    k.add_argument("addr")
    k.add_argument("log")
    b = sub.add_parser("boundary")
    b.add_argument("--lead", type=float, default=8)
    m = sub.add_parser("measure")
    m.add_argument("--pid", type=int, required=True)
    m.add_argument("--boundary", type=float, required=True)
    m.add_argument("--before", type=float, default=3)
    m.add_argument("--window", type=float, default=60)
    m.add_argument("--burst", type=float, default=15)
    m.add_argument("--sink-log", required=True)
    m.add_argument("--expect", type=int, default=0)
    m.add_argument("--max-wait", type=float, default=60)
    m.add_argument("--daemon-log")
    a = ap.parse_args()
    if a.cmd == "sites":
        return make_sites(a)
    if a.cmd == "sink":
        asyncio.run(sink_main(a.addr, a.log))
        return 0
    if a.cmd == "boundary":
        return boundary(a)
    return measure(a)


if __name__ == "__main__":
    sys.exit(main())
