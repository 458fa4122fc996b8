"""Time as an injected dependency: a clock is a callable returning ms since the epoch (UTC).

Library code never calls ``time.time()`` itself; entry points pass
:func:`system_clock`, tests pass a :class:`FixedClock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], int]


def system_clock() -> int:
    """Wall-clock time in milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class FixedClock:
    """A settable clock for tests and vectors."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms
