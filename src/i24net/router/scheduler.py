"""Fair scheduling of fetched records: precedence first, senders served in turn.

Records wait in one queue per partition (Kafka offsets must be committed in
order, so a partition's records are taken in offset order). A batch (one
transaction) is filled turn by turn: at each turn the sender whose next
record has the highest precedence goes first (FLASH before IMMEDIATE ...
before DEFERRED), ties go to the sender served least recently; while other
senders wait, no sender takes more than its fair share of the batch
(``batch // senders waiting``). So a FLASH message is never behind a ROUTINE
backlog of other stations, and one station's flood, whatever precedence it
claims, cannot starve the others.

The precedence used here is the ``i24-precedence`` record header: an
unauthenticated hint (the router checks it against the signed header
afterwards and refuses a mismatch), which can only reorder the claimant's
own share.

**Waking lanes.** A lane whose queue this batch drains, while another lane
keeps a backlog, and which sends fewer than ``waking_rate`` records/s (over
about the last second), is *waking*: a quiet station's message arriving
during another station's flood. The app commits such a batch early
(``waking_end`` says after which record), and looks for waking lanes while it
decides a batch (``next_batch(exclude=...)`` adds them to the batch in
progress), so a quiet station's message waits for a few milliseconds of the
flood and one commit, not for a whole batch's budget. A busier lane
(receipts flowing back during a burst) is steady: its batches keep their full
budget, so a backlog is still committed many records per transaction, and
the early commits are bounded by the waking lanes' rates. With no backlog
left behind nothing is cut: the batch already holds every queued record.

A "sender" here is a **lane**: the station of a per-station ``i24.out.<station>``
topic (old layout), or one partition of the shared ingress topic, which gateways
write partitioned by sender (docs/topics.md). A partition's records must be taken
in offset order, so fairness cannot be finer than a partition: stations whose
codes hash to the same ingress partition share one lane (see docs/topics.md,
"hash collisions", for what that costs a quiet station and how quotas bound it).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from typing import Any, Generic, Protocol, TypeVar

DEFAULT_WAKING_RATE = 50.0
"""Records/s below which a lane counts as quiet (see "Waking lanes")."""
RANK = {"FLASH": 0, "IMMEDIATE": 1, "PRIORITY": 2, "ROUTINE": 3, "DEFERRED": 4}
DEFAULT_RANK = RANK["ROUTINE"]


class _Record(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def headers(self) -> Any: ...


R = TypeVar("R", bound=_Record)


def rank(record: _Record) -> int:
    for k, v in record.headers or ():
        if k == "i24-precedence":
            return RANK.get(bytes(v).decode("ascii", "replace"), DEFAULT_RANK)
    return DEFAULT_RANK


class FairScheduler(Generic[R]):
    """Per-partition queues grouped by sender (the station of the ``i24.out.*`` topic).

    Only non-empty queues are kept, and the record count is kept up to date, so the
    cost of every call is in the partitions *with* queued records, not in the
    hundreds of assigned ones.
    """

    def __init__(
        self,
        out_prefix: str,
        ingress: str | None = None,
        *,
        waking_rate: float = DEFAULT_WAKING_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: monotonic seconds, for the lanes' rates (tests drive it)."""
        self.out_prefix = out_prefix
        self.waking_rate = waking_rate
        self._clock = clock
        self._rates: dict[str, tuple[int, int, int]] = {}  # lane -> (second, n then, n before)
        self.ingress = ingress
        self._queues: dict[tuple[str, int], deque[tuple[int, R]]] = {}
        self._count = 0
        self._turn = 0  # increases at each take; last-served turn per sender
        self._served: dict[str, int] = {}
        self.waking_end = 0
        """After :meth:`next_batch`: 1 + the index of the last record of a waking lane in
        the batch (see the module docstring), 0 when the batch has none."""

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def sender(self, topic: str, partition: int = 0) -> str:
        """The lane of a partition: ``#<partition>`` on the ingress topic, else the station
        of its ``i24.out.<station>`` topic."""
        if topic == self.ingress:
            return f"#{partition}"
        return topic.removeprefix(self.out_prefix)

    def add(self, records: Iterable[R]) -> None:
        queues = self._queues
        n = 0
        for r in records:
            key = (r.topic, r.partition)
            q = queues.get(key)
            if q is None:
                q = queues[key] = deque()
            q.append((rank(r), r))
            n += 1
        self._count += n

    def queued(self, topic: str, partition: int) -> int:
        q = self._queues.get((topic, partition))
        return len(q) if q else 0

    def backlog(self, at_least: int) -> list[tuple[str, int]]:
        """The partitions with at least ``at_least`` queued records."""
        return [tp for tp, q in self._queues.items() if len(q) >= at_least]

    def drop(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Forget the queued records of revoked (or rewound) partitions."""
        for tp in partitions:
            q = self._queues.pop(tp, None)
            if q:
                self._count -= len(q)

    def put_back(self, records: Iterable[R]) -> None:
        """Return records taken by :meth:`next_batch` but not processed (a batch cut short
        by its time budget): each goes back to the front of its partition's queue, in order."""
        by_tp: dict[tuple[str, int], list[R]] = {}
        for r in records:
            by_tp.setdefault((r.topic, r.partition), []).append(r)
        for tp, rs in by_tp.items():
            q = self._queues.setdefault(tp, deque())
            q.extendleft((rank(r), r) for r in reversed(rs))
            self._count += len(rs)

    def best_rank(self) -> int:
        """The highest precedence (lowest rank) at the head of a queue; ``len(RANK)`` when
        nothing is queued. Only heads count: a partition is taken in offset order."""
        return min((q[0][0] for q in self._queues.values()), default=len(RANK))

    def senders(self) -> set[str]:
        """The senders with queued records."""
        return {self.sender(*tp) for tp in self._queues}

    def clear(self) -> None:
        self._queues.clear()
        self._count = 0

    def next_batch(self, max_records: int, *, exclude: Collection[str] = ()) -> list[R]:
        """Up to ``max_records`` records, in the order they should be processed.

        Without ``exclude`` this starts a new batch. With ``exclude`` (the lanes of the
        batch in progress) it returns more records for that batch from the other lanes
        only: records that arrived while it was being decided. Either way
        ``waking_end`` is set for the records returned.
        """
        out: list[R] = []
        taken: dict[str, int] = {}
        queues = self._queues
        if exclude:
            queues = {tp: q for tp, q in queues.items() if self.sender(*tp) not in exclude}
        while len(out) < max_records and queues:
            heads: dict[str, tuple[int, tuple[str, int]]] = {}
            for tp, q in queues.items():
                s = self.sender(*tp)
                cand = (q[0][0], tp)
                if s not in heads or cand[0] < heads[s][0]:
                    heads[s] = cand
            if len(heads) == 1:
                # One sender: its partitions by precedence, no fair share to keep.
                ((s, (_, tp)),) = heads.items()
            else:
                share = max(1, max_records // len(heads))
                eligible = {s: h for s, h in heads.items() if taken.get(s, 0) < share}
                pool = eligible or heads
                s = min(pool, key=lambda s: (pool[s][0], self._served.get(s, -1)))
                _, tp = pool[s]
            q = queues[tp]
            out.append(q.popleft()[1])
            if not q:
                del queues[tp]
                if exclude:
                    del self._queues[tp]
            self._count -= 1
            taken[s] = taken.get(s, 0) + 1
            self._turn += 1
            self._served[s] = self._turn
        self._count_taken(taken)
        self.waking_end = self._waking_end(out, taken)
        return out

    def _count_taken(self, taken: dict[str, int]) -> None:
        now = self._clock()
        second = int(now)
        rates = self._rates
        for lane, n in taken.items():
            at, this, before = rates.get(lane, (second, 0, 0))
            if at != second:
                this, before = 0, (this if at == second - 1 else 0)
            rates[lane] = (second, this + n, before)
        if len(rates) > 4 * len(self._queues) + 64:  # forget lanes idle for two seconds
            for lane in [k for k, v in rates.items() if v[0] < second - 1]:
                del rates[lane]

    def rate(self, lane: str) -> float:
        """Records/s taken from ``lane`` over about the last second: this second's count
        plus the previous second's, weighted by the part of it still in the window."""
        now = self._clock()
        second = int(now)
        at, this, before = self._rates.get(lane, (second, 0, 0))
        if at == second - 1:
            this, before = 0, this
        elif at != second:
            return 0.0
        return this + before * (1 - (now - second))

    def _waking_end(self, out: list[R], taken: dict[str, int]) -> int:
        left = {self.sender(*tp) for tp in self._queues}
        waking = {s for s in taken if s not in left and self.rate(s) < self.waking_rate}
        if not waking or not left:  # nobody waking, or no backlog left behind
            return 0
        for i in range(len(out) - 1, -1, -1):
            if self.sender(out[i].topic, out[i].partition) in waking:
                return i + 1
        return 0
