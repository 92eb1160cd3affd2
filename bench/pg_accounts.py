#!/usr/bin/env python3
"""The data of the accounts-database benchmark: a mail root with N POP accounts, loaded
into PostgreSQL with `turnmail db import`, the same root kept usable with the files
backend (cdbs compiled) so that both backends serve identical accounts.

    bench/pg_accounts.py ROOT N --url "host=/path/to/socket dbname=turnmail user=turnmail"
        [--turnmail target/release/turnmail] [--no-maildirs] [--hash HASH]

ROOT must not exist. It is made by `turnmail init` (the demo domain example.com, joe,
the site acme), then N accounts uI@dK.example (I = 0..N-1) are spread over N/100
domains (at least 10), laid out as `turnmail domain add` and `turnmail user add` lay
them out (a `+dK.example-` assign line, virtualdomains and rcpthosts lines, a domain
home with `.qmail-uI` -> `./uI/Maildir/`, the Maildir, a poppasswd line) but written
directly: a hundred thousand `user add` runs would take hours. Every account has the
password "bench-password" (joe's sha512/yescrypt hash as `turnmail user passwd` made
it, so the crypt cost is the real one; `--hash` gives another crypt(3) hash of it, such
as a cheap `$1$` one when the lookups, not the crypt, are measured). `--no-maildirs` leaves the Maildirs out (RCPT
and login lookups do not need them; POP3 sessions after the login do).

Then `turnmail newu` compiles the cdbs (files backend), `turnmail db init` and
`turnmail db import --replace` load the database, and one line of timings is printed:
  n=N domains=D build_s= newu_s= import_s= db_version=
The database is not switched on in ROOT/turnmail.toml: the benchmark chooses the
backend per run (`[accounts] backend`).
"""

import argparse
import os
import subprocess
import sys
import time


def run(tm, root, *args, stdin=None):
    r = subprocess.run(
        [tm, "--root", root, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TURNMAIL_ROOT"},
    )
    if r.returncode != 0:
        sys.exit(f"turnmail {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root")
    p.add_argument("n", type=int)
    p.add_argument("--url", required=True, help="the database ([postgres] url form)")
    p.add_argument("--turnmail", default="target/release/turnmail")
    p.add_argument("--no-maildirs", action="store_true")
    p.add_argument("--hash", help="crypt(3) hash of bench-password for every account")
    a = p.parse_args()
    root = os.path.abspath(a.root)
    if os.path.exists(root):
        sys.exit(f"{root} exists; give a new directory")
    tm = os.path.abspath(a.turnmail)
    if not os.access(tm, os.X_OK):
        sys.exit(f"no {tm} (cargo build --release)")

    t0 = time.monotonic()
    run(tm, root, "init", root)
    run(tm, root, "user", "passwd", "joe@example.com", "--password-stdin", stdin="bench-password\n")
    joe = [l for l in read_lines(f"{root}/users/poppasswd") if l.startswith("joe@example.com:")][0]
    _, pw_hash, owner, _ = joe.split(":", 3)
    if a.hash:
        if ":" in a.hash or "\n" in a.hash:
            sys.exit("--hash: no ':' or newline in a poppasswd hash")
        pw_hash = a.hash
    template = [l for l in read_lines(f"{root}/users/assign") if l.startswith("+example.com-:")][0]
    # +example.com-:USER:UID:GID:HOME:-::
    fields = template.split(":")
    user, uid, gid = fields[1], int(fields[2]), int(fields[3])
    me = os.geteuid()
    chown = me == 0 and uid != 0

    domains = max(a.n // 100, 10)
    assign_lines = read_lines(f"{root}/users/assign")
    assert assign_lines[-1] == "."
    assign_lines = assign_lines[:-1]
    vds = read_lines(f"{root}/control/virtualdomains")
    rcpt = read_lines(f"{root}/control/rcpthosts")
    homes = []
    for k in range(domains):
        d = f"d{k}.example"
        home = f"{root}/domains/{d}"
        os.mkdir(home, 0o700)
        if chown:
            os.chown(home, uid, gid)
        homes.append(home)
        assign_lines.append(f"+{d}-:{user}:{uid}:{gid}:{home}:-::")
        vds.append(f"{d}:{d}")
        rcpt.append(d)
    pw_lines = read_lines(f"{root}/users/poppasswd")
    for i in range(a.n):
        k = i % domains
        home = homes[k]
        local = f"u{i}"
        mbox = f"{home}/{local}"
        dotq = f"{home}/.qmail-{local}"
        fd = os.open(dotq, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, f"./{local}/Maildir/\n".encode())
        os.close(fd)
        os.mkdir(mbox, 0o700)
        made = [dotq, mbox]
        if not a.no_maildirs:
            os.mkdir(f"{mbox}/Maildir", 0o700)
            made.append(f"{mbox}/Maildir")
            for sub in ("tmp", "new", "cur"):
                os.mkdir(f"{mbox}/Maildir/{sub}", 0o700)
                made.append(f"{mbox}/Maildir/{sub}")
        if chown:
            for path in made:
                os.chown(path, uid, gid)
        pw_lines.append(f"{local}@d{k}.example:{pw_hash}:{owner}:{mbox}")

    def write(rel, lines):
        path = f"{root}/{rel}"
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(l + "\n" for l in lines))
        if chown:
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)

    # Routes before the domains are accepted, as the edits order them.
    write("users/assign", assign_lines + ["."])
    write("control/virtualdomains", vds)
    write("control/rcpthosts", rcpt)
    write("users/poppasswd", pw_lines)
    build_s = time.monotonic() - t0

    t = time.monotonic()
    run(tm, root, "newu")
    newu_s = time.monotonic() - t

    t = time.monotonic()
    run(tm, root, "db", "init", "--url", a.url)
    out = run(tm, root, "db", "import", "--replace", "--url", a.url)
    import_s = time.monotonic() - t
    version = out.rsplit("accounts version ", 1)[-1].strip(" )\n")
    total = a.n + 1  # joe@example.com too
    if f"{total} mailboxes" not in out:
        sys.exit(f"the import did not report {total} mailboxes: {out}")
    print(
        f"n={a.n} domains={domains} build_s={build_s:.1f} newu_s={newu_s:.1f} "
        f"import_s={import_s:.1f} db_version={version}"
    )


if __name__ == "__main__":
    main()
