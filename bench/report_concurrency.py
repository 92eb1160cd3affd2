"""The delivery-concurrency tables of the report (bench/concurrency.sh → results/concurrency.csv),
used by report.py.

Rows are named `delivery-concurrency:S` (S = concurrent SMTP sessions, or writer threads for
the fsync ceiling): the same delivery workload as smtp-delivery, measured at several
concurrencies. Also writes the plot results/delivery-concurrency.svg (throughput against
concurrency), in plain SVG.
"""
import os
from report_numbers import median, num

PREFIX = "delivery-concurrency"
ROLES = [("turnmail", "turnmail", "#1f77b4"), ("peer", "Postfix", "#ff7f0e"),
         ("ceiling", "fsync ceiling", "#7f7f7f")]


def fmt(x):
    return "–" if x is None else f"{x:,.0f}"


def sessions(rows):
    return sorted({int(r["workload"].split(":")[1]) for r in rows})


def value(rows, s, role):
    return median(num(r["value"]) for r in rows
                  if r["workload"] == f"{PREFIX}:{s}" and r["role"] == role)


def summary_rows(rows):
    # The summary table keeps one row per workload; the sweep is in its own section.
    return []


def details(rows, results):
    if not rows:
        return []
    out = ["## SMTP delivery against concurrency", ""]
    method = os.path.join(os.path.dirname(os.path.abspath(__file__)), "method", "concurrency.md")
    if os.path.exists(method):
        with open(method) as f:
            out += [f.read().rstrip(), ""]
    out += ["| sessions (threads for the ceiling) | n | turnmail msg/s | Postfix msg/s | turnmail / Postfix "
            "| fsync ceiling msg/s | turnmail % of ceiling | turnmail peak RSS |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in sessions(rows):
        t, p, c = (value(rows, s, r) for r in ("turnmail", "peer", "ceiling"))
        n = next((r["n"] for r in rows if r["workload"] == f"{PREFIX}:{s}"), "–")
        rss = max((num(r["peak_rss_kb"]) or 0 for r in rows
                   if r["workload"] == f"{PREFIX}:{s}" and r["role"] == "turnmail"), default=0)
        ratio = f"{t / p:.2f}x" if t and p else "–"
        pct = f"{100 * t / c:.1f}%" if t and c else "–"
        rss_s = f"{rss / 1024:.1f} MiB" if rss else "–"
        out.append(f"| {s} | {n} | {fmt(t)} | {fmt(p)} | {ratio} | {fmt(c)} | {pct} | {rss_s} |")
    out.append("")
    svg = plot(rows, results)
    if svg:
        out += [f"![SMTP delivery throughput against concurrency]({svg})", ""]
    out += ["Raw runs: `bench/results/concurrency.csv`.", ""]
    return out


def plot(rows, results):
    ss = sessions(rows)
    series = []
    for role, name, colour in ROLES:
        pts = [(s, value(rows, s, role)) for s in ss]
        pts = [(x, y) for x, y in pts if y]
        if pts:
            series.append((name, colour, pts))
    if not series:
        return None
    import math

    W, H, L, R, T, B = 760, 420, 70, 170, 30, 50
    xmin, xmax = math.log2(min(ss)), math.log2(max(ss))
    if xmax == xmin:
        xmax = xmin + 1
    ymax = max(y for _, _, pts in series for _, y in pts)
    step = 10 ** math.floor(math.log10(ymax))
    ytop = math.ceil(ymax / step) * step

    def X(x):
        return L + (W - L - R) * (math.log2(x) - xmin) / (xmax - xmin)

    def Y(y):
        return T + (H - T - B) * (1 - y / ytop)

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">SMTP delivery into Maildirs, 4 KiB messages: '
         f'throughput against concurrency</text>']
    y = 0
    while y <= ytop:
        s.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{W - R}" y2="{Y(y):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:,.0f}</text>')
        y += step
    for x in ss:
        s.append(f'<line x1="{X(x):.1f}" y1="{T}" x2="{X(x):.1f}" y2="{H - B}" stroke="#eee"/>')
        s.append(f'<text x="{X(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x}</text>')
    s.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 10}" text-anchor="middle">'
             f'concurrent SMTP sessions (writer threads for the ceiling), log scale</text>')
    s.append(f'<text x="16" y="{(T + H - B) / 2:.0f}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(T + H - B) / 2:.0f})">messages/s</text>')
    s.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#888"/>')
    for i, (name, colour, pts) in enumerate(series):
        dash = ' stroke-dasharray="6 3"' if name == "fsync ceiling" else ""
        path = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        s.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        for x, y in pts:
            s.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3.5" fill="{colour}">'
                     f'<title>{name}: {y:,.0f} msg/s at {x}</title></circle>')
        ly = T + 14 + 20 * i
        s.append(f'<line x1="{W - R + 12}" y1="{ly}" x2="{W - R + 36}" y2="{ly}" stroke="{colour}" '
                 f'stroke-width="2"{dash}/>')
        s.append(f'<text x="{W - R + 42}" y="{ly + 4}">{name}</text>')
    s.append("</svg>")
    name = "delivery-concurrency.svg"
    with open(os.path.join(results, name), "w") as f:
        f.write("\n".join(s) + "\n")
    return name
