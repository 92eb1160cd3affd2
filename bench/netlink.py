#!/usr/bin/env python3
"""A point-to-point link with a fixed delay between two network namespaces, for bench/flush.sh.

This kernel has no netem, so the delay is made in user space: this program creates one TUN
device in each namespace (IFF_TUN | IFF_NO_PI: the file descriptor carries bare IP packets),
and forwards every packet read from one device to the other after DELAY milliseconds, in
order (a FIFO per direction). The round trip is then 2 x DELAY plus the forwarding time
(bench/flush.sh measures it with SMTP NOOPs across the link). There is no
bandwidth limit and no loss: the link is pure latency.

usage: netlink.py NS_A DEV_A NS_B DEV_B DELAY_MS READY_FILE

NS_A and NS_B are named namespaces (ip netns add); the devices are created down and without
addresses (the caller configures them with `ip -n NS ...`), and vanish when this program
exits (SIGTERM or SIGINT). READY_FILE is written once both devices exist. On exit, a line of
counters goes to stderr.
"""
import collections
import ctypes
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
CLONE_NEWNET = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def tun_in(ns, name):
    """Open a new TUN device called NAME inside the named namespace NS."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        setns(target)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    finally:
        setns(own)
        os.close(own)
        os.close(target)
    return fd


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    ns_a, dev_a, ns_b, dev_b, delay_ms, ready = sys.argv[1:]
    delay = float(delay_ms) / 1000
    fa = tun_in(ns_a, dev_a)
    fb = tun_in(ns_b, dev_b)
    # packets waiting to be written to the fd: (due time, packet)
    queues = {fa: collections.deque(), fb: collections.deque()}
    other = {fa: fb, fb: fa}
    stats = {"a_to_b": 0, "b_to_a": 0, "late_1ms": 0, "late_ms_max": 0.0, "write_errors": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    with open(ready, "w") as f:
        f.write(f"{os.getpid()}\n")
    now = time.monotonic
    while not stop:
        due = min((q[0][0] for q in queues.values() if q), default=None)
        timeout = None if due is None else max(0.0, due - now())
        try:
            readable, _, _ = select.select([fa, fb], [], [], timeout)
        except InterruptedError:
            continue
        t = now()
        for fd in readable:
            q = queues[other[fd]]
            while True:
                try:
                    pkt = os.read(fd, 65536)
                except BlockingIOError:
                    break
                q.append((t + delay, pkt))
                stats["a_to_b" if fd == fa else "b_to_a"] += 1
        t = now()
        for fd, q in queues.items():
            while q and q[0][0] <= t:
                d, pkt = q.popleft()
                late = (t - d) * 1000
                stats["late_ms_max"] = max(stats["late_ms_max"], late)
                stats["late_1ms"] += late > 1
                try:
                    os.write(fd, pkt)
                except OSError:
                    stats["write_errors"] += 1
    print(
        "netlink: packets a->b {a_to_b}, b->a {b_to_a}; {late_1ms} sent more than 1 ms late, "
        "the latest by {late_ms_max:.2f} ms; write errors {write_errors}".format(**stats),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
