"""Pure helpers for ``make bench``: percentiles and the open-loop schedule (no broker)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in 0..100; NaN for no values.

    The smallest value with at least ``q`` percent of the values at or below it
    (so p99.9 of 1,000 values is the largest but one, never an interpolation).
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    rank = max(1, math.ceil(q / 100 * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max (milliseconds) of a list of latencies."""
    return {
        "p50_ms": percentile(latencies_ms, 50),
        "p99_ms": percentile(latencies_ms, 99),
        "p999_ms": percentile(latencies_ms, 99.9),
        "max_ms": max(latencies_ms) if latencies_ms else float("nan"),
    }


def open_loop_schedule(rate_per_s: float, duration_s: float) -> list[float]:
    """Send offsets (seconds from the start) for a constant-rate open-loop load.

    Message ``i`` is due at ``i / rate`` whatever happened to the earlier ones: the
    generator never waits for a reply before the next send, and latency is taken
    from this scheduled time, so a stalled system shows its queueing in the
    figures instead of silently slowing the load (coordinated omission).
    """
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    count = max(1, math.floor(rate_per_s * duration_s + 1e-9))
    return [i / rate_per_s for i in range(count)]
