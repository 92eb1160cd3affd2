#!/usr/bin/env python3
"""Run a load command and time it until COUNT files sit in the new/ of the Maildirs given.

usage: timed_load.py --count N [--maildirs GLOB] [--pid PID] [--timeout S] -- COMMAND...

The clock starts just before COMMAND is spawned and stops when the load command has
exited AND exactly COUNT files are in the Maildirs' new/ (polled every 20 ms once the
command has exited; a queueing MTA like Postfix is still delivering then). Without
--maildirs (a server that stores nothing, such as smtp-sink) the clock stops when the
command exits and COUNT is taken as what it sent. Prints one
line of key=value pairs: seconds, msg_per_s, files, load_seconds (until the command
exited), cpu_busy_pct, iowait_pct and nice_pct (whole machine, from /proc/stat, over the
timed interval; niced work is not counted as busy), the load generator's CPU seconds, and when --pid is given the daemon's peak RSS (VmHWM, kB) and its own CPU
seconds.
"""
import argparse
import glob
import os
import resource
import subprocess
import sys
import time


def cpu_times():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts[:8]]  # user nice system idle iowait irq softirq steal
    # Niced work (a background cargo build, say) is counted apart: it only soaks up idle time.
    busy = v[0] + v[2] + v[5] + v[6] + v[7]
    return busy, v[4], sum(v), v[1]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vmhwm_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def count_new(dirs):
    n = 0
    for d in dirs:
        with os.scandir(d) as it:
            for e in it:
                if not e.name.startswith("."):
                    n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--maildirs", help="glob of Maildir directories (none: nothing is stored)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    dirs = [os.path.join(m, "new") for m in sorted(glob.glob(a.maildirs))] if a.maildirs else []
    if a.maildirs and not dirs:
        sys.exit(f"timed_load: no Maildirs match {a.maildirs}")
    if count_new(dirs) != 0:
        sys.exit("timed_load: the Maildirs are not empty before the run")
    cpu0 = cpu_times()
    pcpu0 = proc_cpu_seconds(a.pid) if a.pid else 0.0
    t0 = time.monotonic()
    rc = subprocess.call(cmd)
    t_load = time.monotonic() - t0
    if rc != 0:
        sys.exit(f"timed_load: {cmd[0]} exited {rc}")
    deadline = t0 + a.timeout
    n = a.count  # what a server that stores nothing has "delivered"
    while dirs:
        n = count_new(dirs)
        if n >= a.count or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    dt = time.monotonic() - t0
    cpu1 = cpu_times()
    out = {
        "seconds": f"{dt:.3f}",
        "msg_per_s": f"{a.count / dt:.1f}",
        "files": str(n) if dirs else "-",
        "load_seconds": f"{t_load:.3f}",
    }
    total = cpu1[2] - cpu0[2]
    if total > 0:
        out["cpu_busy_pct"] = f"{100 * (cpu1[0] - cpu0[0]) / total:.0f}"
        out["iowait_pct"] = f"{100 * (cpu1[1] - cpu0[1]) / total:.0f}"
        out["nice_pct"] = f"{100 * (cpu1[3] - cpu0[3]) / total:.0f}"
        out["machine_cpu_s"] = f"{(cpu1[0] - cpu0[0]) / os.sysconf('SC_CLK_TCK'):.2f}"
    if a.pid:
        out["peak_rss_kb"] = str(vmhwm_kb(a.pid))
        out["daemon_cpu_s"] = f"{proc_cpu_seconds(a.pid) - pcpu0:.2f}"
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["loadgen_cpu_s"] = f"{ru.ru_utime + ru.ru_stime:.2f}"
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    if n != a.count:
        sys.exit(f"timed_load: {n} files in new/, expected {a.count}")


if __name__ == "__main__":
    main()
