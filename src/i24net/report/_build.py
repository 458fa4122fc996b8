"""From verified audit records to exact aggregates (nothing here is public yet).

Only enumerated fields of ``net.i24.AuditRecord`` are read: ``action``,
``at_ms``, ``kind`` (a ``MessageKind`` symbol), the sender's *region* (never
its code), the rule id and the machine reason codes inside ``reason``, and a
review's ``grounds:`` symbol. ``message_id`` is used only to join a hold to
its decision (turnaround, the screen rule of a refusal) and is dropped
there; ``actor``, ``recipients``, ``envelope_digest`` and every free-text
reason (``note:``, ``reviewer:``, ``proposed:``, ``review:``...) are never
read at all. A value that should be an identifier but does not look like
one (or equals a message id, actor or sender seen in the chain) is counted
as ``(unrecognised)`` rather than printed.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from i24net.audit import SCHEMA, RawRecord, verify_chain
from i24net.errors import CodecError, UnknownStationError, UnverifiedAuditError
from i24net.grounds import GROUNDS
from i24net.schemas import KIND_SCHEMAS, SchemaStore
from i24net.stations import GS, REGIONAL_BUREAUS, REPRESENTATIVE_OFFICES, region_of

DAY_MS = 86_400_000

OUTCOMES: tuple[str, ...] = (
    "delivered",
    "held",
    "approved",
    "rejected",
    "refused_by_screen",
    "refused_unverified",
    "expired",
)
"""Decision outcomes, in the order every table shows them."""

OUTCOME_TITLES: dict[str, str] = {
    "delivered": "delivered (screen passed)",
    "held": "held for review",
    "approved": "approved by reviewers",
    "rejected": "refused by reviewers",
    "refused_by_screen": "refused by the screen",
    "refused_unverified": "refused: not verifiable or undeliverable",
    "expired": "expired",
}


ARTICLE_OF_GROUNDS: dict[str, str] = {
    "POLITICAL": "Article 3",
    "MILITARY": "Article 3",
    "RELIGIOUS": "Article 3",
    "RACIAL": "Article 3",
    "HUMAN_RIGHTS": "Article 2",
    "REFUGEE_PROTECTION": "Refugee policy (Articles 2 and 3)",
    "INSUFFICIENT_DATA": "Rules on the Processing of Data",
    "OTHER": "Other",
}
ARTICLES: tuple[str, ...] = tuple(dict.fromkeys(ARTICLE_OF_GROUNDS.values()))

UNRECOGNISED = "(unrecognised)"
NONE = "(none)"
NO_KIND = "(not known)"
"""The kind of a record refused before its envelope could be read."""
UNKNOWN_REGION = "UNKNOWN"
SKIPPED_KINDS = frozenset({"DELIVERY_RECEIPT"})
"""Receipts are acknowledgements routed for the stations, not requests anyone decides."""

_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A policy rule id (policy/_model.py ``_ID``) or the REVIEW marker."""
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
"""A policy reason code or indicator category (policy/_model.py ``_REASON``)."""
_DIGEST = re.compile(r"[0-9a-f]{8,64}")
"""A screening policy's digest (``i24net_router_policy_info``)."""


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days, both ends included."""

    first: dt.date
    last: dt.date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"the period ends ({self.last}) before it starts ({self.first})")

    @property
    def start_ms(self) -> int:
        return _day_ms(self.first)

    @property
    def end_ms(self) -> int:
        """Exclusive: midnight after the last day."""
        return _day_ms(self.last) + DAY_MS

    def __contains__(self, at_ms: int) -> bool:
        return self.start_ms <= at_ms < self.end_ms


def _day_ms(d: dt.date) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class Table:
    """Exact counts: one row per category, one column per outcome (or grounds)."""

    name: str
    title: str
    row_label: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True, slots=True)
class Turnaround:
    """Held -> decided, in milliseconds, for decisions made in the period."""

    label: str
    durations_ms: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.durations_ms)

    def percentile(self, p: float) -> int | None:
        """Nearest-rank percentile (an observed value, never interpolated)."""
        if not self.durations_ms:
            return None
        xs = sorted(self.durations_ms)
        return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


@dataclass(frozen=True, slots=True)
class OtherGrounds:
    """Why refusals filed under OTHER were held, in enumerated terms only."""

    refusals: int
    largest: bool
    """OTHER is the largest (or tied largest) grounds bucket."""
    by_hold_rule: Table
    """The screen rule that held each of them."""
    by_hold_reason: Table
    """The screen's first reason code for each hold."""


@dataclass(frozen=True, slots=True)
class AuditSummary:
    records: int
    chains: tuple[tuple[str, int, str], ...]
    """(chain id, length, head hash hex): readers can compare with published heads."""


@dataclass(frozen=True, slots=True)
class TransparencyReport:
    """Exact figures. Publish only through the renderers, which suppress small cells."""

    period: Period
    generated_at_ms: int
    audit: AuditSummary
    totals: dict[str, int]
    tables: tuple[Table, ...]
    turnaround: tuple[Turnaround, ...]
    """``all`` first, then one per kind with decisions."""
    other: OtherGrounds
    four_eyes_decisions: int
    policies: tuple[tuple[str, int], ...]
    """Screening policy digests in force (from screened decisions) and their decision counts."""

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


@dataclass(slots=True)
class _Decision:
    at_ms: int
    outcome: str
    kind: str
    region: str
    rule: str
    reasons: tuple[str, ...]
    grounds: str | None
    message_id: str | None
    policy: str | None
    four_eyes: bool


@dataclass(slots=True)
class _Reader:
    """Turns decoded records into :class:`_Decision` s, remembering identifying values."""

    forbidden: set[str] = field(default_factory=set)

    def decision(self, rec: dict[str, Any]) -> _Decision | None:
        action = str(rec["action"])
        for v in (rec.get("message_id"), rec.get("actor"), rec.get("sender")):
            if v:
                self.forbidden.add(str(v))
        kind = str(rec.get("kind") or "")
        if kind in SKIPPED_KINDS:
            return None
        reason = _reason(rec.get("reason"))
        rule = reason.get("rule")
        raw_reasons = reason.get("reasons")
        reasons = tuple(str(r) for r in raw_reasons) if isinstance(raw_reasons, list) else ()
        policy = reason.get("policy")
        outcome = {
            "DELIVERED": "delivered",
            "HELD": "held",
            "APPROVED": "approved",
            "REJECTED": "rejected",
            "EXPIRED": "expired",
        }.get(action)
        if action == "REFUSED":
            screened = policy is not None or (rule is not None and rule != "REVIEW")
            outcome = "refused_by_screen" if screened else "refused_unverified"
        if outcome is None:
            return None
        grounds = next(
            (r.removeprefix("grounds:") for r in reasons if r.startswith("grounds:")), None
        )
        return _Decision(
            at_ms=int(rec["at_ms"]),
            outcome=outcome,
            kind=kind if kind in KIND_SCHEMAS else (UNRECOGNISED if kind else NO_KIND),
            region=_region(rec.get("sender")),
            rule=str(rule) if rule is not None else NONE,
            reasons=reasons,
            grounds=(grounds if grounds in GROUNDS else "OTHER") if grounds is not None else None,
            message_id=str(rec["message_id"]) if rec.get("message_id") else None,
            policy=str(policy) if isinstance(policy, str) else None,
            four_eyes=any(r.startswith("proposed:") for r in reasons),
        )

    def rule(self, value: str) -> str:
        if value == NONE:
            return value
        return value if _RULE.match(value) and value not in self.forbidden else UNRECOGNISED

    def code(self, value: str) -> str:
        return value if _CODE.match(value) and value not in self.forbidden else UNRECOGNISED


def _reason(value: Any) -> dict[str, Any]:
    if not isinstance(value, str):
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _region(sender: Any) -> str:
    """The sender's regional group; non-NCB stations by their kind; never the code."""
    code = str(sender or "")
    if code == GS:
        return "GENERAL-SECRETARIAT"
    if code in REGIONAL_BUREAUS:
        return "REGIONAL-BUREAUS"
    if code in REPRESENTATIVE_OFFICES:
        return "REPRESENTATIVE-OFFICES"
    try:
        return region_of(code).value
    except UnknownStationError:
        return UNKNOWN_REGION


def verified_records(
    records: Iterable[RawRecord],
    store: SchemaStore,
    *,
    expect: dict[str, tuple[int, bytes]] | None = None,
) -> tuple[list[dict[str, Any]], AuditSummary]:
    """Verify the whole chain, then decode it; raise if verification found anything.

    A report built on a chain with an edit or a gap would publish figures nobody can
    stand behind, so there is no partial mode."""
    raws = list(records)
    report = verify_chain(raws, store, expect=expect)
    if not report.ok:
        shown = "; ".join(str(p) for p in report.problems[:5])
        more = len(report.problems) - 5
        raise UnverifiedAuditError(
            f"the audit chain failed verification ({len(report.problems)} problem(s): {shown}"
            + (f"; and {more} more" if more > 0 else "")
            + "): no report is made from it; run `i24net audit verify` and investigate"
        )
    decoded: list[dict[str, Any]] = []
    for raw in raws:
        assert raw.value is not None  # verification reports tombstones
        try:
            decoded.append(store.decode_single(raw.value, expected=SCHEMA)[1])
        except CodecError as exc:  # pragma: no cover - verification decodes the same bytes
            raise UnverifiedAuditError(f"audit record at offset {raw.offset}: {exc}") from exc
    summary = AuditSummary(
        report.records,
        tuple(
            (c, s.head.next_sequence, s.head.last_hash.hex())
            for c, s in sorted(report.chains.items())
        ),
    )
    return decoded, summary


def build_report(
    records: Iterable[RawRecord],
    store: SchemaStore,
    period: Period,
    now_ms: int,
    *,
    expect: dict[str, tuple[int, bytes]] | None = None,
) -> TransparencyReport:
    """Verify ``records`` (the whole ``i24.audit`` topic) and aggregate the period."""
    decoded, summary = verified_records(records, store, expect=expect)
    reader = _Reader()
    every = [d for rec in decoded if (d := reader.decision(rec)) is not None]
    every.sort(key=lambda d: d.at_ms)
    first_hold: dict[str, _Decision] = {}
    for d in every:
        if d.outcome == "held" and d.message_id is not None:
            first_hold.setdefault(d.message_id, d)
    ds = [d for d in every if d.at_ms in period]

    totals = {o: 0 for o in OUTCOMES}
    for d in ds:
        totals[d.outcome] += 1

    def by(name: str, title: str, label: str, key: Any, order: Sequence[str] = ()) -> Table:
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for d in ds:
            for k in key(d):
                counts[k][d.outcome] += 1
        names = [*order, *sorted(set(counts) - set(order))]
        return Table(
            name,
            title,
            label,
            OUTCOMES,
            tuple((n, tuple(counts[n][o] for o in OUTCOMES)) for n in names),
        )

    screened = ("delivered", "held", "refused_by_screen")
    tables = [
        by("by_month", "Decisions by month", "month", lambda d: [_month(d.at_ms)], _months(period)),
        by("by_kind", "Decisions by kind of message", "kind", lambda d: [d.kind]),
        by(
            "by_region",
            "Decisions by the sender's regional group",
            "region",
            lambda d: [d.region],
        ),
        by(
            "by_rule",
            "Screen decisions by the rule that decided",
            "rule",
            lambda d: [reader.rule(d.rule)] if d.outcome in screened else [],
        ),
        by(
            "by_indicator",
            "Screen decisions by indicator category (Article 3 categories and others)",
            "indicator category",
            lambda d: (
                sorted(
                    {
                        reader.code(r.split(":")[1])
                        for r in d.reasons
                        if r.startswith("indicator:") and r.count(":") >= 2
                    }
                )
                if d.outcome in screened
                else []
            ),
        ),
        _grounds_table(ds),
        _article_table(ds),
    ]

    turnaround = _turnaround(ds, first_hold)
    other = _other(ds, first_hold, reader)
    policies = Counter(
        d.policy if _DIGEST.fullmatch(d.policy) else UNRECOGNISED
        for d in ds
        if d.policy is not None
    )
    return TransparencyReport(
        period=period,
        generated_at_ms=now_ms,
        audit=summary,
        totals=totals,
        tables=tuple(tables),
        turnaround=turnaround,
        other=other,
        four_eyes_decisions=sum(1 for d in ds if d.four_eyes),
        policies=tuple(sorted(policies.items())),
    )


def _month(at_ms: int) -> str:
    return dt.datetime.fromtimestamp(at_ms / 1000, tz=dt.UTC).strftime("%Y-%m")


def _months(period: Period) -> list[str]:
    out: list[str] = []
    y, m = period.first.year, period.first.month
    while (y, m) <= (period.last.year, period.last.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _grounds_table(ds: list[_Decision]) -> Table:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for d in ds:
        if d.outcome == "rejected":
            counts[d.kind][d.grounds or "OTHER"] += 1
    return Table(
        "refusals_by_grounds",
        "Refusals by reviewers, by grounds and kind",
        "kind",
        GROUNDS,
        tuple((k, tuple(counts[k][g] for g in GROUNDS)) for k in sorted(counts)),
    )


def _article_table(ds: list[_Decision]) -> Table:
    counts: Counter[str] = Counter()
    for d in ds:
        if d.outcome == "rejected":
            counts[ARTICLE_OF_GROUNDS[d.grounds or "OTHER"]] += 1
    return Table(
        "by_article",
        "Refusals by reviewers, by the article or rule their grounds invoke",
        "article",
        ("rejected",),
        tuple((a, (counts[a],)) for a in ARTICLES),
    )


def _turnaround(ds: list[_Decision], holds: dict[str, _Decision]) -> tuple[Turnaround, ...]:
    per_kind: dict[str, list[int]] = defaultdict(list)
    every: list[int] = []
    for d in ds:
        if d.outcome not in ("approved", "rejected", "expired") or d.message_id is None:
            continue
        h = holds.get(d.message_id)
        if h is None or h.at_ms > d.at_ms:
            continue
        every.append(d.at_ms - h.at_ms)
        per_kind[d.kind].append(d.at_ms - h.at_ms)
    return (
        Turnaround("all", tuple(every)),
        *(Turnaround(k, tuple(v)) for k, v in sorted(per_kind.items())),
    )


def _other(ds: list[_Decision], holds: dict[str, _Decision], reader: _Reader) -> OtherGrounds:
    grounds = Counter(d.grounds or "OTHER" for d in ds if d.outcome == "rejected")
    others = [d for d in ds if d.outcome == "rejected" and (d.grounds or "OTHER") == "OTHER"]
    rules: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for d in others:
        h = holds.get(d.message_id or "")
        if h is None:
            rules["(hold not in the chain)"] += 1
            continue
        rules[reader.rule(h.rule)] += 1
        if h.reasons:
            reasons[reader.code(h.reasons[0])] += 1
    n = len(others)
    largest = n > 0 and n >= max(grounds.values())

    def table(name: str, title: str, label: str, c: Counter[str]) -> Table:
        rows = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))
        return Table(name, title, label, ("refusals",), tuple((k, (v,)) for k, v in rows))

    return OtherGrounds(
        n,
        largest,
        table(
            "other_by_hold_rule",
            "Refusals on OTHER grounds, by the screen rule that held the message",
            "rule",
            rules,
        ),
        table(
            "other_by_hold_reason",
            "Refusals on OTHER grounds, by the screen's reason code for the hold",
            "reason code",
            reasons,
        ),
    )
