"""The soak's independent checker: pure counting over what was read back from the topics.

Kept apart from ``bench/soak.py`` (which runs processes and Kafka clients) so the
logic that decides *lost*, *duplicated*, *refused with the right reason* and
*max stall* is small, has no I/O, and is unit-tested with inputs that must fail
(``tests/unit/test_soak.py``): a checker that cannot report a loss proves nothing.

The inputs are facts gathered independently of the services under test:

* ``accepted``: message id -> the stations it must reach, for every id a
  gateway's API returned (the soak submits with idempotency keys and retries,
  so an id is known for each submission);
* ``delivered``: one ``(station, message id)`` per record read
  ``read_committed`` from ``i24.in.<station>`` from offset 0 to the end;
* ``injected``: the hostile records the soak's own producer wrote, each with
  its class, the reason the router must give, and its unique record key;
* ``dlq``: one ``(record key, i24-reason)`` per record of ``i24.dlq``.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from i24net.errors import Reason

HOSTILE_CLASSES: Mapping[str, Reason] = {
    "null_header": Reason.MALFORMED,  # a hint header whose value is null (Kafka allows it)
    "garbage": Reason.BAD_VERSION,  # random bytes: no envelope prefix
    "truncated": Reason.MALFORMED,  # a valid envelope cut short
    "replay": Reason.REPLAYED,  # the bytes of an already-delivered envelope again
    # No "wrong_sender" class since the shared ingress topic (docs/security.md): a record
    # has no topic owner any more, and a fresh envelope signed with another station's key
    # *is* that station's message; a copy of another station's envelope is a "replay".
    "tampered": Reason.BAD_SIGNATURE,  # one ciphertext byte flipped
    "expired": Reason.EXPIRED,  # validly signed, expired a day ago
    "contradicting_hint": Reason.MALFORMED,  # i24-kind hint differs from the signed kind
}
"""Each hostile class the soak injects and the one reason the router must refuse it with."""

HOSTILE_KEY_PREFIX = "soak-hostile:"
"""Record key of every injected hostile record (``soak-hostile:<class>:<n>``): the router
copies the key of a record it cannot trust into its dead-letter record, so the key links
the two without trusting anything inside the record."""


def hostile_key(cls: str, n: int) -> str:
    return f"{HOSTILE_KEY_PREFIX}{cls}:{n}"


@dataclass(frozen=True)
class Hostile:
    """One injected hostile record."""

    key: str
    cls: str
    station: str  # whose i24.out topic it was written to
    message_id: str | None = None  # the envelope's id when it has one (must never be delivered)

    @property
    def expected(self) -> str:
        return HOSTILE_CLASSES[self.cls].value


@dataclass
class DeliveryReport:
    messages: int
    expected_deliveries: int
    delivered: int
    lost: list[tuple[str, str]] = field(default_factory=list)
    """(message id, station) accepted for that station and never in its inbox topic."""
    duplicated: list[tuple[str, str, int]] = field(default_factory=list)
    """(message id, station, copies) committed more than once to the station's topic."""
    misdelivered: list[tuple[str, str]] = field(default_factory=list)
    """(message id, station) an accepted message reached a station it was not for."""

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.misdelivered)

    def summary(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "expected_deliveries": self.expected_deliveries,
            "delivered": self.delivered,
            "lost": len(self.lost),
            "duplicated": len(self.duplicated),
            "misdelivered": len(self.misdelivered),
            "lost_sample": self.lost[:20],
            "duplicated_sample": self.duplicated[:20],
            "misdelivered_sample": self.misdelivered[:20],
        }


def check_deliveries(
    accepted: Mapping[str, Iterable[str]], delivered: Iterable[tuple[str, str]]
) -> DeliveryReport:
    """Every accepted message exactly once at each of its stations (and nowhere else).

    Records of ids that were never accepted (status notices, receipts) are ignored
    here: :func:`duplicates_among_others` checks those."""
    counts = collections.Counter((station, mid) for station, mid in delivered if mid in accepted)
    want = {mid: frozenset(stations) for mid, stations in accepted.items()}
    report = DeliveryReport(
        messages=len(want),
        expected_deliveries=sum(len(s) for s in want.values()),
        delivered=0,
    )
    for mid, stations in sorted(want.items()):
        for st in sorted(stations):
            n = counts.get((st, mid), 0)
            if n == 0:
                report.lost.append((mid, st))
            else:
                report.delivered += 1
                if n > 1:
                    report.duplicated.append((mid, st, n))
    for st, mid in sorted(counts):
        if st not in want[mid]:
            report.misdelivered.append((mid, st))
    return report


def duplicates_among_others(
    accepted: Mapping[str, object], delivered: Iterable[tuple[str, str]]
) -> dict[str, int]:
    """Ids that are not accepted messages (notices, receipts) committed more than once to
    one station's topic: the router's transactions must write those exactly once too."""
    counts = collections.Counter((st, mid) for st, mid in delivered if mid not in accepted)
    return {f"{st}/{mid}": n for (st, mid), n in sorted(counts.items()) if n > 1}


@dataclass
class ClassReport:
    injected: int = 0
    refused: int = 0
    """Dead-lettered exactly once with the expected reason."""
    wrong_reason: dict[str, int] = field(default_factory=dict)
    missing: int = 0
    """Never dead-lettered (an unrefused hostile record: the router skipped or lost it)."""
    dead_lettered_twice: int = 0
    delivered: int = 0
    """Its envelope's id reached an inbox topic: a hostile record was accepted."""

    @property
    def ok(self) -> bool:
        return (
            self.refused == self.injected
            and not self.wrong_reason
            and not self.missing
            and not self.dead_lettered_twice
            and not self.delivered
        )


@dataclass
class HostileReport:
    classes: dict[str, ClassReport]
    unknown_dlq_keys: int = 0
    """Dead-letter records keyed as hostile that the soak does not know it injected (a send
    that timed out but was written): reported, not a failure."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.classes.values())

    @property
    def injected(self) -> int:
        return sum(c.injected for c in self.classes.values())

    @property
    def refused(self) -> int:
        return sum(c.refused for c in self.classes.values())

    def summary(self) -> dict[str, Any]:
        return {
            "injected": self.injected,
            "refused_with_expected_reason": self.refused,
            "unknown_dlq_keys": self.unknown_dlq_keys,
            "by_class": {
                name: {
                    "expected_reason": HOSTILE_CLASSES[name].value,
                    "injected": c.injected,
                    "refused": c.refused,
                    "wrong_reason": c.wrong_reason,
                    "missing": c.missing,
                    "dead_lettered_twice": c.dead_lettered_twice,
                    "delivered": c.delivered,
                }
                for name, c in self.classes.items()
            },
        }


def check_hostile(
    injected: Sequence[Hostile],
    dlq: Iterable[tuple[str | None, str | None]],
    delivered_ids: Iterable[str] = (),
) -> HostileReport:
    """Each injected record dead-lettered once with its class's reason, none delivered."""
    reasons: dict[str, list[str]] = collections.defaultdict(list)
    for key, reason in dlq:
        if key is not None and key.startswith(HOSTILE_KEY_PREFIX):
            reasons[key].append(reason or "")
    reached = set(delivered_ids)
    report = HostileReport({name: ClassReport() for name in HOSTILE_CLASSES})
    known = set()
    for h in injected:
        known.add(h.key)
        c = report.classes[h.cls]
        c.injected += 1
        got = reasons.get(h.key, [])
        if h.message_id is not None and h.message_id in reached:
            c.delivered += 1
        if not got:
            c.missing += 1
            continue
        if len(got) > 1:
            c.dead_lettered_twice += 1
        if got[0] == h.expected:
            c.refused += 1
        else:
            c.wrong_reason[got[0]] = c.wrong_reason.get(got[0], 0) + 1
    report.unknown_dlq_keys = len(set(reasons) - known)
    return report


def max_stall(
    accepted_at: Mapping[str, tuple[float, Iterable[str]]],
    delivered_at: Mapping[tuple[str, str], float],
    end: float,
) -> tuple[float, float | None]:
    """The longest interval with no delivery while a delivery was pending, and its start.

    ``accepted_at``: message id -> (when its gateway accepted it, its stations);
    ``delivered_at``: (station, message id) -> when it was first seen at that station
    (``end`` stands for deliveries never seen). A delivery seen before its acceptance
    returned (the API answer can lag the pipeline) counts as accepted at delivery.
    Returns ``(0.0, None)`` when nothing was ever pending.
    """
    events: list[tuple[float, int]] = []  # (time, 0 = accepted / 1 = delivered)
    for mid, (t_acc, stations) in accepted_at.items():
        for st in stations:
            t_del = delivered_at.get((st, mid))
            t_a = t_acc if t_del is None else min(t_acc, t_del)
            events.append((t_a, 0))
            if t_del is not None:
                events.append((t_del, 1))
    events.sort()
    pending = 0
    since = 0.0
    longest, start = 0.0, None
    for t, what in events:
        if what == 0:
            if pending == 0:
                since = t
            pending += 1
            continue
        if t - since > longest:
            longest, start = t - since, since
        pending -= 1
        since = t
    if pending and end - since > longest:
        longest, start = end - since, since
    return longest, start


__all__ = [
    "HOSTILE_CLASSES",
    "HOSTILE_KEY_PREFIX",
    "ClassReport",
    "DeliveryReport",
    "Hostile",
    "HostileReport",
    "check_deliveries",
    "check_hostile",
    "duplicates_among_others",
    "hostile_key",
    "max_stall",
]
