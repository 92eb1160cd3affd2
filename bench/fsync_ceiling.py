#!/usr/bin/env python3
"""The disk's durable-delivery ceiling: what a Maildir writer can do on this file system.

Each delivery is what a Maildir MTA must do before it may answer 250:
  create tmp/NAME (O_EXCL, 0600) + write SIZE bytes + fsync(file) + close
  + rename tmp/NAME -> new/NAME + fsync(new/)
The messages are spread round-robin over MAILBOXES fresh Maildirs under DIR, and WRITERS
separate processes (not threads: no GIL in the way) each deliver every WRITERS-th message,
all starting at the same instant. Prints one line: writers messages seconds msg_per_s
writers_cpu_seconds.

usage: fsync_ceiling.py DIR COUNT [WRITERS] [--mailboxes 100] [--size 4096] [--link]
"""
import argparse
import os
import resource
import sys
import time


def make_maildirs(base, n):
    dirs = []
    for i in range(n):
        md = os.path.join(base, f"mb{i}", "Maildir")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(md, sub), mode=0o700, exist_ok=False)
        dirs.append(md)
    return dirs


def writer(w, writers, count, dirs, payload, use_link):
    host = os.uname().nodename
    pid = os.getpid()
    dfds = {}
    done = 0
    for i in range(w, count, writers):
        md = dirs[i % len(dirs)]
        name = f"{int(time.time())}.P{pid}Q{i}.{host}"
        tmp = os.path.join(md, "tmp", name)
        new = os.path.join(md, "new", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, payload)
        os.fsync(fd)
        os.close(fd)
        if use_link:
            os.link(tmp, new)
        else:
            os.rename(tmp, new)
        dfd = dfds.get(md)
        if dfd is None:
            dfd = dfds[md] = os.open(os.path.join(md, "new"), os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        if use_link:
            os.unlink(tmp)
        done += 1
    return done


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("count", type=int)
    ap.add_argument("writers", type=int, nargs="?", default=10)
    ap.add_argument("--mailboxes", type=int, default=100)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--link", action="store_true", help="link+unlink instead of rename (qmail's way)")
    a = ap.parse_args()
    dirs = make_maildirs(a.dir, a.mailboxes)
    # Directories must be durable before the clock starts, as for a real mail root.
    os.sync()
    line = (b"x" * 75 + b"\r\n")
    payload = (line * (a.size // len(line) + 1))[: a.size]
    go_r, go_w = os.pipe()
    pids = []
    for w in range(a.writers):
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.read(go_r, 1)
            try:
                writer(w, a.writers, a.count, dirs, payload, a.link)
                os._exit(0)
            except BaseException as e:  # noqa: BLE001
                print(f"writer {w}: {e}", file=sys.stderr)
                os._exit(1)
        pids.append(pid)
    os.close(go_r)
    time.sleep(0.2)  # let every child reach its read()
    t0 = time.monotonic()
    os.close(go_w)  # EOF: all start at once
    ok = True
    for pid in pids:
        _, st = os.waitpid(pid, 0)
        ok = ok and os.waitstatus_to_exitcode(st) == 0
    dt = time.monotonic() - t0
    n = sum(len(os.listdir(os.path.join(d, "new"))) for d in dirs)
    if not ok or n != a.count:
        print(f"fsync_ceiling: failed ({n} of {a.count} delivered)", file=sys.stderr)
        sys.exit(1)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{a.writers} {a.count} {dt:.4f} {a.count / dt:.1f} {ru.ru_utime + ru.ru_stime:.3f}")


if __name__ == "__main__":
    main()
