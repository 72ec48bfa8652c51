"""Figures of a produce stall, from the times a producer's records were acknowledged.

Pure functions over numbers (seconds on one monotonic clock), so they are tested without a
cluster. They only describe a run: the fault tests print them and never assert on them, since
a duration depends on how loaded the machine is.
"""
import math


def longest_gap(ack_times, start, end):
    """The longest time, overlapping [start, end], during which no record was acknowledged.

    A gap that began before `start` (the last ack before a broker was stopped) or ended
    after `end` counts whole: a stall is felt from the last ack to the next one. With no ack
    at all inside or around the window, the whole window is the gap."""
    first, last = longest_gap_span(ack_times, start, end)
    return last - first


def longest_gap_span(ack_times, start, end):
    """Where the longest gap of `longest_gap` lies: (the ack before it, the ack after it)."""
    if end < start:
        raise ValueError(f"the window ends ({end}) before it starts ({start})")
    times = sorted(ack_times)
    before = [t for t in times if t < start]
    inside = [t for t in times if start <= t <= end]
    after = [t for t in times if t > end]
    # The edges of the window stand in for an ack only where the run had none beyond them.
    points = [before[-1] if before else start] + inside + [after[0] if after else end]
    return max(zip(points, points[1:]), key=lambda gap: gap[1] - gap[0])


def percentile(values, fraction):
    """The nearest-rank percentile (`fraction` in (0, 1]) of `values`, or None for none."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(values)
    if not ordered:
        return None
    # Nearest rank: the smallest value with at least `fraction` of the values at or below it.
    # Rounded first, since 0.07 * 100 is 7.000000000000001 in floats and would become rank 8.
    rank = math.ceil(round(len(ordered) * fraction, 9))
    return ordered[max(rank, 1) - 1]


def window_figures(acks, start, end):
    """Stall figures of one window of a run.

    `acks` is a list of (ack time, partition, latency or None). Returns the longest gap
    between any two consecutive acks (and where it began), the longest per partition, and
    the p99 and maximum latency of the records sent inside the window."""
    gap_from, gap_to = longest_gap_span([t for t, _, _ in acks], start, end)
    by_partition = {}
    for t, p, _ in acks:
        by_partition.setdefault(p, []).append(t)
    per_partition = {p: longest_gap(ts, start, end) for p, ts in sorted(by_partition.items())}
    # Latencies are those of the records sent inside the window, wherever their ack fell:
    # the records a stall held up are acknowledged together at its end, maybe past the window.
    latencies = [lat for t, _, lat in acks if lat is not None and start <= t - lat <= end]
    return {
        "acked": sum(1 for t, _, _ in acks if start <= t <= end),
        "sent_with_latency": len(latencies),
        "longest_gap_s": round(gap_to - gap_from, 3),
        # Where it lay, from the window's start: negative if it began before the window.
        "longest_gap_from_s": round(gap_from - start, 3),
        "longest_gap_per_partition_s": {str(p): round(g, 3) for p, g in per_partition.items()},
        "p99_latency_s": _rounded(percentile(latencies, 0.99)),
        "max_latency_s": _rounded(max(latencies) if latencies else None),
    }


def _rounded(x):
    return None if x is None else round(x, 3)
