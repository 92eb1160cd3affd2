"""The site-flush tables of the report (bench/flush.sh → results/flush.csv), used by report.py.

The flush workload has two dimensions, the link (loopback, 50 ms, 300 ms round trip) and what
the sink offers (CHUNKING+PIPELINING, PIPELINING only, neither), plus a plain
one-transaction-at-a-time client per link, so its rows are named
`site-flush:LINK:CASE` (LINK = loopback or <RTT>ms; CASE = chunking, pipelining, neither,
plain, own-pipelining, own-neither, pipelining-cK and neither-cK for the same flushes over K
parallel connections, or link for the link's measured round trip) and get the tables here
instead of report.py's one-row-per-workload ones. Also writes the plot
results/flush-rtt.svg (throughput against round-trip time), in plain SVG.
"""
import os
import re
from report_numbers import median, num

BENCH = os.path.dirname(os.path.abspath(__file__))
PREFIX = "site-flush"

CAPS = [
    ("chunking", "CHUNKING+PIPELINING"),
    ("pipelining", "PIPELINING only"),
    ("neither", "neither"),
]
PLAIN = ("plain", "plain client (smtplib, one transaction at a time)")
COLOURS = {"chunking": "#1f77b4", "pipelining": "#2ca02c", "neither": "#ff7f0e", "plain": "#7f7f7f"}
# Round trips a message needs at least when the sink offers only this (the protocol's ceiling on
# a link: with PIPELINING the body waits for 354; with neither every command waits for its reply).
ROUND_TRIPS = {"pipelining": 1, "neither": 4}
# Targets of the site flush, by link: absolute msg/s where set.
LOOPBACK_MIN = 5000
AT_50MS_MIN = {"chunking": 500, "pipelining": 18}
# Parallel connections against a sink without PIPELINING: at least this many times the
# single connection's rate of the same run, by link (RTT in ms).
PARALLEL_MIN = {0: 1.8, 50: 3.5}
PARALLEL = re.compile(r"^(pipelining|neither)-c(\d+)$")


def fmt(x, digits=0):
    if x is None:
        return "–"
    if digits == 0 and 0 < abs(x) < 100:
        digits = 1
    return f"{x:,.{digits}f}"


def fmt_rss(kb):
    return "–" if kb is None else f"{kb / 1024:.1f} MiB"


def split(w):
    parts = w.split(":")
    return (parts[1], parts[2]) if len(parts) == 3 else (None, None)


def rtt_ms(link):
    return 0 if link == "loopback" else num(link.removesuffix("ms"))


def link_name(link):
    return "loopback" if link == "loopback" else f"{link.removesuffix('ms')} ms RTT"


class Data:
    def __init__(self, rows):
        self.rows = rows
        self.links = sorted({split(r["workload"])[0] for r in rows} - {None}, key=rtt_ms)

    def pick(self, link, case, role=None):
        return [
            r for r in self.rows
            if split(r["workload"]) == (link, case) and (role is None or r["role"] == role)
        ]

    def main_rows(self, link, case):
        role = "peer" if case == "plain" else "turnmail"
        return self.pick(link, case, role)

    def value(self, link, case):
        return median(num(r["value"]) for r in self.main_rows(link, case))

    def measured_rtt(self, link):
        """The link's round trip in seconds as measured (SMTP NOOP), else as configured."""
        v = median(num(r["value"]) for r in self.pick(link, "link"))
        return (v if v else rtt_ms(link)) / 1000

    def paired_ratio(self, link, case, base="plain"):
        tm = {r["run"]: num(r["value"]) for r in self.main_rows(link, case)}
        pl = {r["run"]: num(r["value"]) for r in self.main_rows(link, base)}
        rs = [tm[k] / pl[k] for k in tm if tm.get(k) and pl.get(k)]
        return rs

    def parallel_cases(self):
        """(case, single-connection case, connections) of the parallel flushes measured."""
        cases = {split(r["workload"])[1] for r in self.rows if r["role"] == "turnmail"}
        found = [(c, PARALLEL.match(c)) for c in cases if c and PARALLEL.match(c)]
        return sorted((c, m.group(1), int(m.group(2))) for c, m in found)


def parallel_verdict(d, link, case, single):
    """The parallel flush against the single connection of the same runs."""
    pr = d.paired_ratio(link, case, single)
    if not pr:
        return None, "–"
    r = median(pr)
    want = PARALLEL_MIN.get(rtt_ms(link)) if single == "neither" else None
    if want is None:
        return r, "–"
    return r, f"≥{want}x one connection: {'met' if r >= want else '**not met**'}"


def verdicts(d, link, case):
    v = d.value(link, case)
    if v is None:
        return "–"
    parts = []
    plain = d.value(link, "plain")
    if plain:
        parts.append(f"≥ plain client: {'met' if v >= plain else '**not met**'}")
    if link == "loopback":
        parts.append(f"≥{LOOPBACK_MIN:,} msg/s: {'met' if v >= LOOPBACK_MIN else '**not met**'}")
    elif rtt_ms(link) == 50 and case in AT_50MS_MIN:
        m = AT_50MS_MIN[case]
        parts.append(f"≥{m} msg/s: {'met' if v >= m else '**not met**'}")
    if case == "pipelining" and link != "loopback":
        per = v * d.measured_rtt(link)
        parts.append(f"≥1 msg per round trip ({per:.2f}): {'met' if per >= 1 else '**not met**'}")
    return "; ".join(parts)


def summary_rows(rows):
    """Rows for report.py's summary table (same 9 columns)."""
    d = Data(rows)
    out = []
    for link in d.links:
        for case, cname in CAPS:
            g = d.main_rows(link, case)
            if not g:
                continue
            v = d.value(link, case)
            plain = d.value(link, "plain")
            pg = d.main_rows(link, "plain")
            ns = sorted({r["n"] for r in g}, key=num)
            n = "/".join(ns)
            if pg and sorted({r["n"] for r in pg}) != ns:
                n += f" (plain: {'/'.join(sorted({r['n'] for r in pg}, key=num))})"
            peer = f"{fmt(plain)} msg/s (Python smtplib, one transaction at a time)" if plain else "–"
            ratio = f"{v / plain:.2f}x" if v and plain else "–"
            pr = d.paired_ratio(link, case)
            if len(pr) > 1:
                ratio += f" (paired by run: {median(pr):.2f}x)"
            rss = max((num(r["peak_rss_kb"]) or 0 for r in g), default=0) or None
            ceil, pct = "–", "–"
            k = ROUND_TRIPS.get(case)
            if link != "loopback" and k:
                c = 1 / (k * d.measured_rtt(link))
                ceil = f"{fmt(c)} msg/s ({k} round trip{'s' if k > 1 else ''} a message)"
                pct = f"{100 * v / c:.0f}%" if v else "–"
            out.append(
                f"| Site flush, {link_name(link)}, sink offering {cname}: 4 KiB, one connection "
                f"| {n} | {fmt(v)} msg/s | {peer} | {ratio} | {ceil} | {pct} | {fmt_rss(rss)} "
                f"| {verdicts(d, link, case)} |"
            )
        for case, single, k in d.parallel_cases():
            g = d.main_rows(link, case)
            if not g:
                continue
            v = d.value(link, case)
            r, verdict = parallel_verdict(d, link, case, single)
            ns = "/".join(sorted({x["n"] for x in g}, key=num))
            rss = max((num(x["peak_rss_kb"]) or 0 for x in g), default=0) or None
            cname = dict(CAPS)[single]
            out.append(
                f"| Site flush, {link_name(link)}, sink offering {cname}: 4 KiB, {k} connections "
                f"| {ns} | {fmt(v)} msg/s | one connection, same runs: {fmt(d.value(link, single))} msg/s "
                f"| {f'{r:.2f}x' if r else '–'} (paired by run) | – | – | {fmt_rss(rss)} | {verdict} |"
            )
    return out


def cell(d, link, case, role=None):
    g = d.main_rows(link, case) if role is None else d.pick(link, case, role)
    vals = [num(r["value"]) for r in g if num(r["value"]) is not None]
    if not vals:
        return "–"
    ns = "/".join(sorted({r["n"] for r in g}, key=num))
    s = f"**{fmt(median(vals))}**"
    if len(vals) > 1:
        s += f" ({fmt(min(vals))}–{fmt(max(vals))})"
    return s + f" n={ns}"


def details(rows, results):
    d = Data(rows)
    out = ["## Site flush: 4 KiB messages from a site spool, by link and sink capability", ""]
    method = os.path.join(BENCH, "method", f"{PREFIX}.md")
    if os.path.exists(method):
        with open(method) as f:
            out += [f.read().rstrip(), ""]

    # The links as measured.
    links = [l for l in d.links if l != "loopback"]
    if links:
        out += ["Links as measured (an SMTP command round trip across the link: NOOP to our sink):", ""]
        for l in links:
            notes = "; ".join(sorted({r["note"] for r in d.pick(l, "link")}))
            out.append(f"- {link_name(l)}: {fmt(d.measured_rtt(l) * 1000, 2)} ms ({notes})")
        log = os.path.join(results, "flush.log")
        if os.path.exists(log):
            with open(log) as f:
                fw = [line.strip() for line in f if line.startswith("netlink:")]
            for l, line in zip(links, fw):
                out.append(f"- forwarder at {link_name(l)}: {line.removeprefix('netlink: ')}")
        out.append("")

    # The matrix.
    head = "| sink offers | " + " | ".join(link_name(l) for l in d.links) + " |"
    out += [
        "Messages per second (median of the runs, range in brackets, n = messages flushed per run):",
        "",
        head,
        "|" + " --- |" * (len(d.links) + 1),
    ]
    for case, cname in CAPS:
        out.append(f"| turnmail, {cname} | " + " | ".join(cell(d, l, case) for l in d.links) + " |")
    out.append(f"| {PLAIN[1]} | " + " | ".join(cell(d, l, "plain") for l in d.links) + " |")
    out.append("")
    if links:
        out += ["Messages per round trip (median msg/s × measured RTT):", "", head,
                "|" + " --- |" * (len(d.links) + 1)]
        for case, cname in CAPS + [PLAIN]:
            cells = []
            for l in d.links:
                v = d.value(l, case)
                cells.append("–" if l == "loopback" or v is None else f"{v * d.measured_rtt(l):.2f}")
            label = f"turnmail, {cname}" if case != "plain" else cname
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    out += ["turnmail / plain client (ratio of medians; paired by run in brackets):", "", head,
            "|" + " --- |" * (len(d.links) + 1)]
    for case, cname in CAPS:
        cells = []
        for l in d.links:
            v, p = d.value(l, case), d.value(l, "plain")
            c = f"{v / p:.2f}x" if v and p else "–"
            pr = d.paired_ratio(l, case)
            if len(pr) > 1:
                c += f" ({median(pr):.2f}x)"
            cells.append(c)
        out.append(f"| {cname} | " + " | ".join(cells) + " |")
    out.append("")
    par = d.parallel_cases()
    if par:
        out += ["Parallel connections (site.toml `connections`): the same spool size flushed over "
                "one connection and over K, in the same run, one after the other (msg/s, medians; "
                "ratio paired by run):", "", head, "|" + " --- |" * (len(d.links) + 1)]
        for case, single, k in par:
            cname = dict(CAPS)[single]
            out.append(f"| {cname}, 1 connection | " + " | ".join(cell(d, l, single) for l in d.links) + " |")
            out.append(f"| {cname}, {k} connections | " + " | ".join(cell(d, l, case) for l in d.links) + " |")
            cells = []
            for l in d.links:
                r, _ = parallel_verdict(d, l, case, single)
                cells.append(f"{r:.2f}x" if r else "–")
            out.append(f"| {cname}, {k} / 1 | " + " | ".join(cells) + " |")
        out.append("")
    out += ["Targets:", ""]
    for l in d.links:
        for case, cname in CAPS:
            if d.main_rows(l, case):
                out.append(f"- {link_name(l)}, {cname}: {verdicts(d, l, case)}")
        for case, single, k in par:
            if d.main_rows(l, case):
                r, verdict = parallel_verdict(d, l, case, single)
                if verdict != "–":
                    out.append(f"- {link_name(l)}, {dict(CAPS)[single]}, {k} connections: {verdict} ({r:.2f}x)")
    out.append("")

    svg = plot(d, results)
    if svg:
        out += [f"![Site flush throughput against round-trip time]({svg})", ""]

    # Sink check.
    sc = [r for r in rows if r["role"] == "sink-check"]
    if sc:
        out += [
            "Does the sink set the pace? turnmail on loopback against Postfix's smtp-sink and "
            "against our own sink offering the same extensions (medians):",
            "",
            "| sink offers | smtp-sink | own sink (examples/flush_sink.rs) |",
            "| --- | --- | --- |",
        ]
        for case, cname in CAPS[1:]:
            out.append(f"| {cname} | {cell(d, 'loopback', case)} "
                       f"| {cell(d, 'loopback', 'own-' + case, 'sink-check')} |")
        out.append("")

    # CPU and memory per case.
    out += [
        "CPU and memory (medians; client = the turnmail flush process or the Python client, "
        "from GNU time / getrusage; sink = the sink process; machine = all CPUs, /proc/stat):",
        "",
        "| link | client | runs | seconds | client CPU ms/msg | sink CPU ms/msg | machine busy "
        "| peak RSS of the client | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for l in d.links:
        for case, cname in CAPS + [PLAIN]:
            g = d.main_rows(l, case)
            if not g:
                continue
            per = lambda col: median(  # noqa: E731
                (num(r[col]) * 1000 / num(r["n"])) if num(r[col]) is not None else None for r in g
            )
            busy = median(num(r["cpu_busy_pct"]) for r in g)
            rss = max((num(r["peak_rss_kb"]) or 0 for r in g), default=0) or None
            busy_runs = sum("machine busy before the run" in r["note"] for r in g)
            niced_runs = sum("niced background work" in r["note"] for r in g)
            notes = [f"{what} in {k} of {len(g)} runs" for what, k in
                     (("machine busy before the run", busy_runs), ("niced work alongside", niced_runs)) if k]
            who = f"turnmail, {cname}" if case != "plain" else "plain client"
            out.append(
                f"| {link_name(l)} | {who} | {len(g)} | {fmt(median(num(r['seconds']) for r in g), 3)} "
                f"| {fmt(per('client_cpu_s'), 3)} | {fmt(per('server_cpu_s'), 3)} "
                f"| {f'{busy:.0f}%' if busy is not None else '–'} | {fmt_rss(rss)} "
                f"| {'; '.join(notes)} |"
            )
    out.append("")

    mem_cases = [("chunking", "CHUNKING sink, one connection")] + [
        (c, f"sink without PIPELINING, {k} connections") for c, single, k in par if single == "neither"]
    for case, what in mem_cases:
        mem = [r for r in rows if r["role"] in ("turnmail", "turnmail-mem")
               and split(r["workload"]) == ("loopback", case) and num(r["peak_rss_kb"])]
        if not mem:
            continue
        out += [f"Peak RSS of the turnmail flush process by spool size (loopback, {what}; "
                "GNU time's maximum resident set size):", "",
                "| messages in the spool | runs | peak RSS (max over runs) | min over runs |",
                "| --- | --- | --- | --- |"]
        for n in sorted({r["n"] for r in mem}, key=num):
            g = [num(r["peak_rss_kb"]) for r in mem if r["n"] == n]
            out.append(f"| {n} | {len(g)} | {fmt_rss(max(g))} | {fmt_rss(min(g))} |")
        out.append("")
    out += ["Raw runs: `bench/results/flush.csv`; log: `bench/results/flush.log`.", ""]
    return out


def plot(d, results):
    """Throughput against RTT, log y, one line per capability mix and the plain client."""
    series = []
    for case, cname in CAPS + [PLAIN]:
        pts = [(rtt_ms(l), d.value(l, case)) for l in d.links]
        pts = [(x, y) for x, y in pts if y]
        if pts:
            series.append((case, cname if case != "plain" else "plain client (smtplib)", pts))
    if not series:
        return None
    import math

    W, H, L, R, T, B = 760, 440, 70, 230, 30, 50
    xmax = max(300, max(rtt_ms(l) for l in d.links))
    ys = [y for _, _, pts in series for _, y in pts]
    ylo = 10 ** math.floor(math.log10(min(ys + [1])))
    yhi = 10 ** math.ceil(math.log10(max(ys + [LOOPBACK_MIN])))

    def X(x):
        return L + (W - L - R) * x / xmax

    def Y(y):
        return T + (H - T - B) * (1 - (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)))

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">turnmail site flush, 4 KiB messages: '
         f'throughput against link round-trip time</text>']
    # grid
    e = int(math.log10(ylo))
    while 10 ** e <= yhi:
        y = Y(10 ** e)
        s.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** e:,}</text>')
        e += 1
    for x in range(0, int(xmax) + 1, 50):
        s.append(f'<line x1="{X(x):.1f}" y1="{T}" x2="{X(x):.1f}" y2="{H - B}" stroke="#eee"/>')
        s.append(f'<text x="{X(x):.1f}" y="{H - B + 16}" text-anchor="middle">'
                 f'{"loopback" if x == 0 else x}</text>')
    s.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 10}" text-anchor="middle">round-trip time (ms)</text>')
    s.append(f'<text x="16" y="{(T + H - B) / 2:.0f}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(T + H - B) / 2:.0f})">messages/s (log scale)</text>')
    s.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#888"/>')
    # one message per round trip (and four: lock-step), for reference
    for k, label in ((1, "1 msg / round trip"), (0.25, "1 msg / 4 round trips")):
        pts = [(x, 1000 * k / x) for x in range(25, int(xmax) + 1, 5) if ylo <= 1000 * k / x <= yhi]
        if pts:
            path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
            s.append(f'<polyline points="{path}" fill="none" stroke="#aaa" stroke-dasharray="4 3"/>')
            x, y = pts[-1]
            s.append(f'<text x="{X(x) - 4:.1f}" y="{Y(y) - 6:.1f}" text-anchor="end" fill="#888">{label}</text>')
    # targets
    for x, y, label in ((0, LOOPBACK_MIN, "target 5,000"), (50, 500, "target 500"), (50, 18, "target 18")):
        if ylo <= y <= yhi and x <= xmax:
            s.append(f'<path d="M{X(x) - 7:.1f},{Y(y):.1f} h14" stroke="#d62728" stroke-width="2"/>')
            s.append(f'<text x="{X(x) + 10:.1f}" y="{Y(y) + 4:.1f}" fill="#d62728" font-size="10">{label}</text>')
    for i, (case, name, pts) in enumerate(series):
        c = COLOURS[case]
        path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="6 3"' if case == "plain" else ""
        s.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for x, y in pts:
            s.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3.5" fill="{c}">'
                     f'<title>{name}: {y:,.1f} msg/s at {x:g} ms</title></circle>')
        ly = T + 14 + 20 * i
        s.append(f'<line x1="{W - R + 12}" y1="{ly}" x2="{W - R + 36}" y2="{ly}" stroke="{c}" '
                 f'stroke-width="2"{dash}/>')
        s.append(f'<text x="{W - R + 42}" y="{ly + 4}">{name}</text>')
    s.append("</svg>")
    name = "flush-rtt.svg"
    with open(os.path.join(results, name), "w") as f:
        f.write("\n".join(s) + "\n")
    return name
