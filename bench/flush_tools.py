#!/usr/bin/env python3
"""Helpers of bench/flush.sh.

  flush_tools.py spool MAILDIR N [--size 4096] [--owner UID:GID]
      Put N messages into a site spool exactly as qmail-local would for site `acme`
      (Return-Path and Delivered-To lines, then the message with LF line ends), in new/,
      dated a minute ago (a flush skips the current second), owned by UID:GID. Each
      message is SIZE bytes without the two envelope lines.
  flush_tools.py timed [--server-pid PID] [--time-file F] [--out F] [--err F] -- COMMAND...
      Run COMMAND (its stdout and stderr to the files given) and time it from spawn to
      exit; with --time-file, read GNU time -v's output for the peak RSS and CPU time of
      the measured program.
  flush_tools.py plain HOST:PORT MAILDIR [--server-pid PID]
      The plain client: Python's smtplib sending every spool file one transaction at a
      time over one connection (MAIL, RCPT, DATA, body, waiting for each reply), unlinking
      each file on its 250, as serialmail does. Timed from connect to QUIT's reply.
  flush_tools.py rtt HOST:PORT [COUNT]
      The SMTP command round trip: COUNT NOOPs one after the other over one connection;
      prints the median, the fastest and the 90th percentile, in ms.

timed and plain print one line of key=value pairs: seconds, msg_per_s (plain only),
cpu_busy_pct, iowait_pct, nice_pct, machine_cpu_s (whole machine over the interval, from
/proc/stat), client_cpu_s (the measured program's), server_cpu_s (the sink's, with
--server-pid), peak_rss_kb.
"""
import os
import resource
import smtplib
import socket
import statistics
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal; niced work (a background build) apart
    return v[0] + v[2] + v[5] + v[6] + v[7], v[4], sum(v), v[1]


def proc_cpu(pid):
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except OSError:
        return 0.0


class Meter:
    """Machine CPU (from /proc/stat) and the sink's CPU over an interval."""

    def __init__(self, server_pid=None):
        self.server_pid = server_pid

    def start(self):
        self.c0 = cpu_times()
        self.s0 = proc_cpu(self.server_pid)
        self.t0 = time.monotonic()

    def stop(self):
        self.dt = time.monotonic() - self.t0
        c1 = cpu_times()
        out = {"seconds": f"{self.dt:.3f}"}
        total = c1[2] - self.c0[2]
        if total > 0:
            out["cpu_busy_pct"] = f"{100 * (c1[0] - self.c0[0]) / total:.0f}"
            out["iowait_pct"] = f"{100 * (c1[1] - self.c0[1]) / total:.0f}"
            out["nice_pct"] = f"{100 * (c1[3] - self.c0[3]) / total:.0f}"
            out["machine_cpu_s"] = f"{(c1[0] - self.c0[0]) / TICK:.2f}"
        if self.server_pid:
            out["server_cpu_s"] = f"{proc_cpu(self.server_pid) - self.s0:.2f}"
        return out


def message(i, size):
    head = (
        f"From: Bench <bench@example.org>\n"
        f"To: u{i}@acme.example\n"
        f"Subject: flush bench message {i}\n"
        f"Date: Sat, 21 Nov 2026 12:00:00 +0000\n"
        f"Message-ID: <bench.{i}@example.org>\n"
        f"\n"
    ).encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ the quick brown\n"
    body = bytearray(head)
    while len(body) < size:
        body += line[: max(1, min(len(line), size - len(body)))]
    body = body[:size]
    body[-1:] = b"\n"
    return bytes(body)


def cmd_spool(args):
    md, n = args[0], int(args[1])
    size, owner = 4096, None
    it = iter(args[2:])
    for a in it:
        if a == "--size":
            size = int(next(it))
        elif a == "--owner":
            owner = tuple(int(x) for x in next(it).split(":"))
        else:
            sys.exit(f"flush_tools spool: unknown argument {a}")
    new = os.path.join(md, "new")
    t = int(time.time()) - 60
    pid = os.getpid()
    for i in range(1, n + 1):
        env = f"Return-Path: <bench@example.org>\nDelivered-To: site-acme-u{i}@acme.example\n"
        path = os.path.join(new, f"{t}.M{i % 1000000}P{pid}Q{i}.bench")
        with open(path, "wb") as f:
            f.write(env.encode() + message(i, size))
            if owner:
                os.fchown(f.fileno(), *owner)
            os.fchmod(f.fileno(), 0o600)
        # the same second for all: the flush then takes them in name order
        os.utime(path, (t, t))


def rusage_children():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def gnu_time(path):
    """Peak RSS (kB) and user+system seconds from `/usr/bin/time -v -o PATH`."""
    out = {}
    cpu = 0.0
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().rpartition(": ")
            if k == "Maximum resident set size (kbytes)":
                out["peak_rss_kb"] = v
            elif k in ("User time (seconds)", "System time (seconds)"):
                cpu += float(v)
    out["client_cpu_s"] = f"{cpu:.2f}"
    return out


def cmd_timed(args):
    server_pid, time_file, out_file, err_file = None, None, None, None
    while args and args[0] != "--":
        if args[0] == "--server-pid":
            server_pid = int(args[1])
        elif args[0] == "--time-file":
            time_file = args[1]
        elif args[0] == "--out":
            out_file = args[1]
        elif args[0] == "--err":
            err_file = args[1]
        else:
            sys.exit(f"flush_tools timed: unknown argument {args[0]}")
        args = args[2:]
    cmd = args[1:]
    so = open(out_file, "wb") if out_file else None
    se = open(err_file, "wb") if err_file else None
    m = Meter(server_pid)
    m.start()
    rc = subprocess.call(cmd, stdout=so, stderr=se)
    out = m.stop()
    if time_file:
        out.update(gnu_time(time_file))
    else:
        out["client_cpu_s"] = f"{rusage_children():.2f}"
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    if rc != 0:
        sys.exit(f"flush_tools timed: {cmd[0]} exited {rc}")


def read_spool(path):
    with open(path, "rb") as f:
        data = f.read()
    rp, dt, body = data.split(b"\n", 2)
    assert rp.startswith(b"Return-Path: <") and dt.startswith(b"Delivered-To: site-acme-")
    sender = rp[len(b"Return-Path: <") : -1].decode()
    rcpt = dt[len(b"Delivered-To: site-acme-") :].decode()
    # smtplib sends bytes as given (only str gets CRLF line ends); it does the dot-stuffing.
    return sender, rcpt, body.replace(b"\n", b"\r\n")


def cmd_plain(args):
    target, md = args[0], args[1]
    server_pid = int(args[3]) if len(args) > 3 and args[2] == "--server-pid" else None
    host, port = target.rsplit(":", 1)
    new = os.path.join(md, "new")
    m = Meter(server_pid)
    m.start()
    names = sorted(os.listdir(new))
    s = smtplib.SMTP(host, int(port), local_hostname="bench.example", timeout=120)
    s.ehlo()
    n = 0
    for name in names:
        path = os.path.join(new, name)
        sender, rcpt, body = read_spool(path)
        refused = s.sendmail(sender, [rcpt], body)  # raises unless the message was taken
        if refused:
            sys.exit(f"flush_tools plain: refused {refused}")
        os.unlink(path)
        n += 1
    s.quit()
    out = m.stop()
    out = {"seconds": out.pop("seconds"), "msg_per_s": f"{n / m.dt:.1f}", **out}
    out["client_cpu_s"] = f"{sum(os.times()[:2]):.2f}"
    out["peak_rss_kb"] = str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    out["sent"] = str(n)
    print(" ".join(f"{k}={v}" for k, v in out.items()))


def cmd_rtt(args):
    host, port = args[0].rsplit(":", 1)
    count = int(args[1]) if len(args) > 1 else 20
    s = smtplib.SMTP(host, int(port), local_hostname="bench.example", timeout=30)
    s.ehlo()
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        s.noop()
        times.append((time.perf_counter() - t0) * 1000)
    s.quit()
    times.sort()
    print(f"{statistics.median(times):.2f} {times[0]:.2f} {times[int(0.9 * (count - 1))]:.2f}")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"spool": cmd_spool, "timed": cmd_timed, "plain": cmd_plain, "rtt": cmd_rtt}.get(
        cmd, lambda _: sys.exit(__doc__)
    )(args)


if __name__ == "__main__":
    main()
