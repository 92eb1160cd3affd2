#!/usr/bin/env python3
"""Assemble bench/results/report.md from every bench/results/*.csv and machine.txt.

Every workload script writes one CSV with the columns
  workload,role,system,run,n,value,unit,seconds,peak_rss_kb,cpu_busy_pct,iowait_pct,
  machine_cpu_s,server_cpu_s,client_cpu_s,note
(one row per measured run; empty cells allowed). Roles:
  turnmail  turnmail's runs (medianed into the summary table)
  peer      the peer system's runs (Postfix, Dovecot, ...)
  ceiling   the physical ceiling (fsync loop, link speed, ...)
  sink      a server that stores nothing under the same load (smtp-sink): with the ceiling's
            CPU per message it bounds what any server could reach (cpu_bound)
  anything else (turnmail-mem, ceiling-1w, ...) is shown in the details only.
A method text for a workload, if bench/method/WORKLOAD.md exists, goes under its details.

usage: report.py [RESULTS_DIR] [--mode quick|full]
"""
import csv
import glob
import statistics
import importlib
import os
import sys

from report_numbers import median, num

BENCH = os.path.dirname(os.path.abspath(__file__))

# Known workloads: their label in the table, and their targets.
LABELS = {
    "smtp-delivery": "SMTP delivery into 100 Maildirs: 4 KiB, 10 sessions, new connection per message",
    "smtp-delivery-reuse": "SMTP delivery into 100 Maildirs: 4 KiB, 10 connections kept open (smtp-source -d)",
}
# workload -> (minimum turnmail/peer ratio, minimum % of ceiling); None where not set.
TARGETS = {
    "smtp-delivery": (3.0, 60.0),
    "smtp-delivery-reuse": (3.0, 60.0),
}
# Workloads measured against another workload's ceiling rows (same machine, same run numbers).
CEILING_FROM = {"smtp-delivery-reuse": "smtp-delivery"}
# Workloads where a smaller value is better (ratio is then peer/turnmail).
LOWER_IS_BETTER: set[str] = set()
# Workloads with several conditions each (rows named PREFIX:CONDITION:CASE) whose tables come
# from a module of their own: PREFIX -> module with summary_rows(rows) and details(rows, results).
CUSTOM = {"site-flush": "report_flush", "delivery-concurrency": "report_concurrency"}
# POP3 (bench/pop3.sh), engine lookups (engine.sh), scheduler idle cost (scheduler.sh).
LABELS.update({
    "pop3-logins-1": "POP3 logins/s (connect, USER, PASS, QUIT; sha512-crypt), 1 client",
    "pop3-logins-10": "POP3 logins/s (connect, USER, PASS, QUIT; sha512-crypt), 10 concurrent clients",
    "pop3-retr-lockstep": "POP3 RETR of 1,000 x 4 KiB, one RETR at a time (n = messages over all sessions)",
    "pop3-retr-pipelined": "POP3 RETR of 1,000 x 4 KiB, all RETR written at once (n = messages over all sessions)",
    "engine-login-lookup": "Engine login lookup (accounts.find, no crypt), median (n = accounts)",
    "engine-address-resolve": "Engine address resolution (engine.resolve, RCPT check), median (n = accounts)",
    "scheduler-idle-cpu": "Scheduler: daemon CPU with 10,000 sites on `* * * * *` (n = sites)",
    "scheduler-memory": "Scheduler: daemon peak RSS with 10,000 sites (n = sites)",
    "scheduler-due-to-connect": "Scheduler: due schedule to connection at the sink (n=1: first site with mail; "
                                "n=100: median of the 100 sites with mail)",
})
TARGETS.update({
    "pop3-logins-1": (3.0, None),
    "pop3-logins-10": (3.0, None),
    "pop3-retr-lockstep": (1.0, None),
    "pop3-retr-pipelined": (1.0, None),
})
# Relaying end to end (bench/relay.sh): into the MTA, out through its queue, into a sink.
LABELS["relay-end-to-end"] = ("Relaying 4 KiB messages end to end (10 sessions, one recipient each, "
                              "relay by client address) into the sink, until the queue is empty")
TARGETS["relay-end-to-end"] = (3.0, None)
# Accounts in PostgreSQL (bench/pg_lookup.sh): the postgres backend as "turnmail", the files
# backend of the same root as "peer", so the ratio is postgres / files; within 10%.
LABELS.update({
    "pg-lookup-rcpt": "Accounts in PostgreSQL: RCPT lookups/s (8 sessions, 50 pipelined, 10% unknown; "
                      "n = RCPTs; turnmail = postgres backend, peer = files backend, same root, "
                      "warm)",
    "pg-lookup-logins": "Accounts in PostgreSQL: POP3 logins/s (8 clients, MD5-crypt; n = logins; "
                        "turnmail = postgres backend, peer = files backend, same root, warm)",
})
TARGETS.update({"pg-lookup-rcpt": (0.9, None), "pg-lookup-logins": (0.9, None)})
# DKIM signing (bench/dkim.sh): microseconds per message, no target set.
LABELS.update({
    "dkim-sign-ed25519": "DKIM signing of a 4 KiB message, Ed25519 (Signer::sign), median",
    "dkim-sign-rsa-2048": "DKIM signing of a 4 KiB message, RSA-2048 (Signer::sign), median",
})
LOWER_IS_BETTER |= {"dkim-sign-ed25519", "dkim-sign-rsa-2048"}
LOWER_IS_BETTER |= {"engine-login-lookup", "engine-address-resolve", "scheduler-idle-cpu",
                    "scheduler-memory", "scheduler-due-to-connect"}
# The cost of a change (bench/cost.sh): this tree against the same program built at an
# earlier commit, as its "peer"; at most 5% slower.
for _w in ("smtp-delivery", "smtp-delivery-reuse", "pop3-logins-1", "pop3-logins-10",
           "pop3-retr-lockstep", "pop3-retr-pipelined"):
    LABELS["cost-" + _w] = "Cost of the hardening, this tree / before: " + LABELS[_w]
    TARGETS["cost-" + _w] = (0.95, None)
# Absolute targets (no peer): workload -> the value turnmail's median must stay under.
LIMITS = {
    "engine-login-lookup": 20.0,
    "engine-address-resolve": 20.0,
    "scheduler-idle-cpu": 1.0,
    "scheduler-memory": 100.0,
    "scheduler-due-to-connect": 50.0,
}
# "Flat": workload -> the most its median at the largest n may be of its median at the smallest.
FLAT = {"engine-login-lookup": 2.0, "engine-address-resolve": 2.0}


def fmt(x, digits=0):
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def fmtv(x):
    """A measured value: whole numbers, but small ones keep the digits that tell them apart."""
    if x is None:
        return "–"
    return fmt(x, 2 if abs(x) < 10 else 1 if abs(x) < 100 else 0)


def fmt_rss(kb):
    return "–" if kb is None else f"{kb / 1024:.1f} MiB"


def summarise_notes(group):
    """The distinct notes of a group of runs; per-run conditions counted, not repeated."""
    fixed, per_run = [], {}
    for r in group:
        for part in (r.get("note") or "").split("; "):
            part = part.strip()
            if not part:
                continue
            if part.startswith(("niced background work", "machine busy before")):
                key = part.split(" (")[0].split(" took ")[0]
                per_run.setdefault(key, []).append(part)
            elif part not in fixed:
                fixed.append(part)
    for key, parts in per_run.items():
        detail = ", ".join(p[len(key):].strip(" ()").removeprefix("took ") for p in parts)
        fixed.append(f"{key} in {len(parts)} of {len(group)} runs ({detail})")
    return "; ".join(fixed)


def paired(wr, n):
    """Per-run ratios turnmail/peer and turnmail/ceiling, pairing rows by run number."""
    by = {}
    for r in wr:
        if r["n"] == n and r["role"] in ("turnmail", "peer", "ceiling"):
            by.setdefault(r["run"], {})[r["role"]] = num(r["value"])
    ratios, pcts = [], []
    for run in sorted(by, key=lambda x: num(x) or 0):
        d = by[run]
        if d.get("turnmail") and d.get("peer"):
            ratios.append(d["turnmail"] / d["peer"])
        if d.get("turnmail") and d.get("ceiling"):
            pcts.append(100 * d["turnmail"] / d["ceiling"])
    return ratios, pcts


def workload_rows(rows, w):
    """A workload's rows, with the ceiling rows it borrows (CEILING_FROM) added."""
    wr = [r for r in rows if r["workload"] == w]
    src = CEILING_FROM.get(w)
    if src:
        wr += [r for r in rows if r["workload"] == src and r["role"] == "ceiling"]
    return wr


def cpu_bound(wr, n, cpus):
    """What no server could beat on this machine, from the machine's busy CPU per message.

    The sink rows cost the SMTP dialogue alone (client, server, loopback TCP; nothing
    stored), the ceiling rows the file work alone (the fsync loop and the kernel's I/O
    work). A server doing both, at no cost of its own beyond them and with every CPU busy
    all the time, delivers cpus / (sink + ceiling) messages per second. Returns
    (sink ms/msg, ceiling ms/msg, bound msg/s), or None without both kinds of rows.
    """
    def ms_per_msg(role):
        g = [r for r in wr if r["role"] == role and r["n"] == n]
        return median(1000 * num(r["machine_cpu_s"]) / num(r["n"])
                      for r in g if num(r["machine_cpu_s"]) and num(r["n"]))

    sink, ceiling = ms_per_msg("sink"), ms_per_msg("ceiling")
    if not sink or not ceiling or not cpus:
        return None
    return sink, ceiling, 1000 * cpus / (sink + ceiling)


def cpus_of(facts):
    """The machine's CPU count from machine.txt ("2 (model)"), else this machine's."""
    for k, v in facts:
        if k.startswith("cpus") and v.split()[:1] and v.split()[0].isdigit():
            return int(v.split()[0])
    return os.cpu_count()


def load(results):
    rows = []
    for path in sorted(glob.glob(os.path.join(results, "*.csv"))):
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            # Tables of another shape (cost_counts.csv, quota.csv) are not in the tables.
            if not {"workload", "role"} <= set(reader.fieldnames or []):
                continue
            for r in reader:
                r["_file"] = os.path.basename(path)
                rows.append(r)
    return rows


def machine_facts(results):
    facts = []
    path = os.path.join(results, "machine.txt")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if ":" in line:
                    k, v = line.rstrip("\n").split(":", 1)
                    facts.append((k.strip(), v.strip()))
    return facts


def main():
    args = sys.argv[1:]
    mode = None
    if "--mode" in args:
        i = args.index("--mode")
        mode = args[i + 1]
        del args[i : i + 2]
    results = args[0] if args else os.path.join(BENCH, "results")
    rows = load(results)
    workloads = []
    for r in rows:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    # One entry per custom prefix (in place of its many PREFIX:... workloads).
    custom = {w: [r for r in rows if r["workload"].startswith(w + ":")] for w in CUSTOM}
    workloads = list(dict.fromkeys(w.split(":")[0] if w.split(":")[0] in CUSTOM else w for w in workloads))

    out = ["# turnmail benchmark report", ""]
    if mode:
        out.append(f"Mode: **{mode}** (`bench/run{' --quick' if mode == 'quick' else ''}`). "
                   "Medians of the runs of each system, all measured in the same run of the script.")
        out.append("")
    facts = machine_facts(results)
    if facts:
        out += ["| machine | |", "| --- | --- |"]
        out += [f"| {k} | {v} |" for k, v in facts]
        out.append("")

    out += [
        "## Summary",
        "",
        "Ratios are of the medians; \"paired by run\" is the median of the per-run ratios "
        "(the systems of one run are measured seconds apart, so drift of the machine cancels).",
        "",
        "| workload | n | turnmail | peer | turnmail / peer | ceiling | turnmail % of ceiling "
        "| turnmail peak RSS | targets |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for w in workloads:
        if w in CUSTOM:
            out += importlib.import_module(CUSTOM[w]).summary_rows(custom[w])
            continue
        wr = workload_rows(rows, w)
        tm = [r for r in wr if r["role"] == "turnmail"]
        ns = sorted({r["n"] for r in tm}) or sorted({r["n"] for r in wr})
        for n in ns:
            def pick(role, n=n):
                return [r for r in wr if r["role"] == role and r["n"] == n]

            t, p, c = pick("turnmail"), pick("peer"), pick("ceiling")
            unit = (t or p or c)[0]["unit"] if (t or p or c) else ""
            tv = median(num(r["value"]) for r in t)
            pv = median(num(r["value"]) for r in p)
            cv = median(num(r["value"]) for r in c)
            rss = max((num(r["peak_rss_kb"]) or 0 for r in t), default=None) or None
            ratio = None
            if tv and pv:
                ratio = pv / tv if w in LOWER_IS_BETTER else tv / pv
            pct = 100 * tv / cv if tv and cv else None
            peer = f"{fmtv(pv)} {unit} ({p[0]['system']})" if p else "–"
            ceil = f"{fmtv(cv)} {unit} ({c[0]['system']})" if c else "–"
            tgt = TARGETS.get(w)
            verdict = "–"
            if tgt:
                parts = []
                if tgt[0] is not None and ratio is not None:
                    parts.append(f"≥{tgt[0]:g}x peer: {'met' if ratio >= tgt[0] else '**not met**'}")
                if tgt[1] is not None and pct is not None:
                    parts.append(f"≥{tgt[1]:g}% of ceiling: {'met' if pct >= tgt[1] else '**not met**'}")
                verdict = "; ".join(parts) or "–"
            extra = []
            if w in LIMITS and tv is not None:
                extra.append(f"under {LIMITS[w]:g} {unit}: {'met' if tv < LIMITS[w] else '**not met**'}")
            by_n = sorted(ns, key=lambda x: num(x) or 0)
            if w in FLAT and tv is not None and n == by_n[-1] and len(ns) > 1:
                base = median(num(r["value"]) for r in wr if r["role"] == "turnmail" and r["n"] == by_n[0])
                if base:
                    growth = tv / base
                    extra.append(f"flat (≤{FLAT[w]:g}x from n={by_n[0]}): "
                                 f"{'met' if growth <= FLAT[w] else '**not met**'} ({growth:.1f}x)")
            if extra:
                verdict = "; ".join(([] if verdict == "–" else [verdict]) + extra)
            pr, pp = paired(wr, n)
            if w in LOWER_IS_BETTER:
                pr = [1 / x for x in pr]
            ratio_s = fmt(ratio, 2) + "x" if ratio else "–"
            if ratio and len(pr) > 1:
                ratio_s += f" (paired by run: {median(pr):.2f}x)"
            pct_s = fmt(pct, 1) + "%" if pct else "–"
            if pct and len(pp) > 1:
                pct_s += f" (paired by run: {median(pp):.1f}%)"
            out.append(
                f"| {LABELS.get(w, w)} | {n} | {fmtv(tv)} {unit} | {peer} | "
                f"{ratio_s} | {ceil} | {pct_s} | {fmt_rss(rss)} | {verdict} |"
            )
    out.append("")

    cpus = cpus_of(facts)
    bounds = []
    for w in workloads:
        if w in CUSTOM:
            continue
        wr = workload_rows(rows, w)
        for n in sorted({r["n"] for r in wr if r["role"] == "sink"}, key=lambda x: num(x) or 0):
            b = cpu_bound(wr, n, cpus)
            if not b:
                continue
            cv = median(num(r["value"]) for r in wr if r["role"] == "ceiling" and r["n"] == n)
            tv = median(num(r["value"]) for r in wr if r["role"] == "turnmail" and r["n"] == n)
            line = f"- {LABELS.get(w, w)}, n={n}: at most {fmtv(b[2])} msg/s"
            if cv:
                line += f" ({100 * b[2] / cv:.0f}% of the ceiling)"
            if tv:
                line += f"; turnmail reached {100 * tv / b[2]:.0f}% of that"
            bounds.append(line + ".")
    if bounds:
        out += [
            "What no server could beat on this machine (machine CPU per message of the SMTP dialogue "
            "alone, from smtp-sink under the same load, plus that of the fsync loop; all "
            f"{cpus} CPUs busy all the time; see cpu_bound in bench/report.py):",
            "",
        ] + bounds + [""]

    methods_shown: set[str] = set()
    for w in workloads:
        if w in CUSTOM:
            out += importlib.import_module(CUSTOM[w]).details(custom[w], results)
            continue
        wr = workload_rows(rows, w)
        out += [f"## {LABELS.get(w, w)}", ""]
        method = os.path.join(BENCH, "method", f"{w}.md")
        if not os.path.exists(method):  # one method text for all workloads of a CSV file
            method = os.path.join(BENCH, "method", wr[0]["_file"].removesuffix(".csv") + ".md")
            if wr[0]["_file"] in methods_shown:
                method = ""
                out += [f"Method: as for `{wr[0]['_file']}` above.", ""]
            methods_shown.add(wr[0]["_file"])
        if method and os.path.exists(method):
            with open(method) as f:
                out += [f.read().rstrip(), ""]
        # Per system: medians of value, CPU and memory.
        out += [
            "Medians per system (CPU: whole machine over the timed interval, from /proc/stat; "
            "ms per message = machine busy CPU time / n; server CPU = the turnmail daemon's own, "
            "or the fsync writers'):",
            "",
            "| role | system | n | runs | median | range | seconds | machine busy (not niced) | iowait "
            "| CPU ms/msg (machine) | server CPU ms/msg | load generator CPU ms/msg | peak RSS | notes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        groups = []
        for r in wr:
            k = (r["role"], r["system"], r["n"])
            if k not in groups:
                groups.append(k)
        for role, system, n in groups:
            g = [r for r in wr if (r["role"], r["system"], r["n"]) == (role, system, n)]
            vals = [num(r["value"]) for r in g]
            vals = [v for v in vals if v is not None]
            nn = num(n) or 1

            def med(col, scale=1.0, g=g):
                m = median(num(r[col]) for r in g)
                return None if m is None else m * scale

            per = 1000 / nn
            notes = summarise_notes(g)
            rss = max((num(r["peak_rss_kb"]) or 0 for r in g), default=0) or None
            out.append(
                f"| {role} | {system} | {n} | {len(g)} | {fmtv(median(vals))} {g[0]['unit']} | "
                f"{fmtv(min(vals)) if vals else '–'} – {fmtv(max(vals)) if vals else '–'} | "
                f"{fmt(med('seconds'), 3)} | "
                f"{fmt(med('cpu_busy_pct')) + '%' if med('cpu_busy_pct') is not None else '–'} | "
                f"{fmt(med('iowait_pct')) + '%' if med('iowait_pct') is not None else '–'} | "
                f"{fmt(med('machine_cpu_s', per), 3)} | {fmt(med('server_cpu_s', per), 3)} | "
                f"{fmt(med('client_cpu_s', per), 3)} | {fmt_rss(rss)} | {notes} |"
            )
        out.append("")
        for n in sorted({r["n"] for r in wr if r["role"] == "turnmail"}, key=lambda x: num(x) or 0):
            ratios, pcts = paired(wr, n)
            if w in LOWER_IS_BETTER:
                ratios = [1 / x for x in ratios]
            if ratios or pcts:
                out.append(f"Paired by run (the systems of one run are measured seconds apart), n={n}:")
                out.append("")
                if ratios:
                    out.append(f"- turnmail / peer per run: {', '.join(f'{x:.2f}x' for x in ratios)} "
                               f"(median {median(ratios):.2f}x)")
                if pcts:
                    out.append(f"- turnmail % of ceiling per run: {', '.join(f'{x:.0f}%' for x in pcts)} "
                               f"(median {median(pcts):.1f}%)")
                out.append("")
        for n in sorted({r["n"] for r in wr if r["role"] == "sink"}, key=lambda x: num(x) or 0):
            b = cpu_bound(wr, n, cpus)
            if b:
                out += [f"CPU bound, n={n}: the SMTP dialogue alone (smtp-sink) costs the machine "
                        f"{b[0]:.3f} ms per message and the fsync loop {b[1]:.3f} ms; with {cpus} CPUs "
                        f"always busy and nothing else spent, no server could deliver more than "
                        f"{cpus} / ({b[0]:.3f} + {b[1]:.3f}) ms = {fmtv(b[2])} msg/s here.", ""]
        mem = [r for r in wr if r["role"].startswith("turnmail") and num(r["peak_rss_kb"])]
        if mem:
            out += ["turnmail peak RSS (VmHWM of the daemon) by number of messages:", ""]
            out += ["| n | runs | peak RSS (max over runs) |", "| --- | --- | --- |"]
            for n in sorted({r["n"] for r in mem}, key=lambda x: num(x) or 0):
                g = [r for r in mem if r["n"] == n]
                out.append(f"| {n} | {len(g)} | {fmt_rss(max(num(r['peak_rss_kb']) for r in g))} |")
            out.append("")
        out += [f"Raw runs: `bench/results/{wr[0]['_file']}`.", ""]

    out += quota_section(results) + counts_section(results)
    path = os.path.join(results, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {path}")


def read_csv(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def quota_section(results):
    """bench/quota.sh: delivery with and without quotas, alternating (target >= 0.90)."""
    rows = read_csv(results, "quota.csv")
    if not rows:
        return []
    med = {k: statistics.median([float(r["msg_per_s"]) for r in rows if r["kind"] == k])
           for k in ("plain", "quota") if any(r["kind"] == k for r in rows)}
    if len(med) < 2:
        return []
    ratio = med["quota"] / med["plain"]
    verdict = "met" if ratio >= 0.90 else "**not met**"
    return ["## SMTP delivery with Maildir++ quotas (bench/quota.sh)", "",
            "delivery.sh's load (10 sessions, a new connection per message, 4 KiB) into 100 "
            "Maildirs without quotas and with a `maildirsize` in each (limits never reached), "
            "alternating in one run.", "",
            "| | runs | median msg/s |", "| --- | --- | --- |",
            f"| without quotas | {sum(r['kind'] == 'plain' for r in rows)} | {med['plain']:.1f} |",
            f"| with quotas | {sum(r['kind'] == 'quota' for r in rows)} | {med['quota']:.1f} |", "",
            f"Ratio of medians {ratio:.3f} (target ≥ 0.90: {verdict}). "
            "Raw runs: `bench/results/quota.csv`.", ""]


def counts_section(results):
    """bench/cost_counts.sh: instructions and system calls per operation, BASE vs this tree."""
    rows = read_csv(results, "cost_counts.csv")
    if not rows:
        return []
    out = ["## What a change costs, counted (bench/cost_counts.sh)", "",
           "The daemon's instructions (callgrind) and system calls (strace -c) per operation, "
           "from two load sizes (start-up left out): counts repeat whatever else the machine "
           "does, where single timed runs here vary by more than 5%.", "",
           "| load | count | BASE | this tree | per op, BASE | per op, this tree | ratio |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['load']} | {r['count']} | {r['base']} | {r['head']} | "
                   f"{r['base_per_op']} | {r['head_per_op']} | {r['ratio']} |")
    return out + ["", "Raw: `bench/results/cost_counts.csv`.", ""]


if __name__ == "__main__":
    main()
