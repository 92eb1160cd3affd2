"""Reading numbers from the results CSVs, shared by report.py and its per-workload modules."""
import statistics


def num(s):
    """A CSV field as a float; None where it is empty or not a number."""
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def median(xs):
    """The median of the numbers among xs; None if there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
