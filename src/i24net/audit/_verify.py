"""Walking ``i24.audit`` and reporting every edit, gap, reordering or duplicate, and
with :class:`HeadCheck` every signed head that does not verify and every unsigned tail."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from i24net.audit._chain import (
    HASH_HEADER,
    HEAD_KEY_HEADER,
    HEAD_SIG_HEADER,
    SCHEMA,
    ZERO,
    Head,
    chain_hash,
    head_message,
    key_station,
)
from i24net.errors import CodecError, I24Error
from i24net.schemas import SchemaStore


class ProblemKind(enum.StrEnum):
    EDIT = "edit"
    GAP = "gap"
    REORDER = "reorder"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    BAD_HEAD = "bad_head"
    """A signed head that does not verify: a rewritten prefix, a forged or foreign signature."""
    UNSIGNED = "unsigned"
    """Records after the last verified signed head (appended without the GS key)."""


@dataclass(frozen=True, slots=True)
class HeadCheck:
    """How :func:`verify_chain` checks signed heads: the station whose key signs them (the
    GS) and its signing key by key id at a time (``Directory.signing_key``, which raises
    for a key unknown, revoked, suspended or outside its validity then)."""

    station: str
    key: Callable[[str, str, int], VerifyKey]


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    chain: str
    sequence: int | None
    offset: int | None
    detail: str

    def __str__(self) -> str:
        where = f"chain {self.chain}"
        if self.sequence is not None:
            where += f" seq {self.sequence}"
        if self.offset is not None:
            where += f" (offset {self.offset})"
        return f"{self.kind.value.upper()}: {where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One ``i24.audit`` record as read from Kafka."""

    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class ChainSummary:
    chain: str
    records: int = 0
    head: Head = field(default_factory=Head)
    signed_through: int | None = None
    """Highest sequence covered by a verified signed head (None: none, or not checked)."""
    signed_heads: int = 0


@dataclass(slots=True)
class Report:
    """``ok`` when no problem was found; ``chains`` gives each chain's length and head."""

    records: int = 0
    chains: dict[str, ChainSummary] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _Rec:
    offset: int
    sequence: int
    previous: bytes
    hash: bytes
    claimed: bytes | None
    at_ms: int = 0
    head_key_id: str | None = None
    head_sig: bytes | None = None


def verify_chain(
    records: Iterable[RawRecord],
    store: SchemaStore,
    *,
    expect: dict[str, tuple[int, bytes]] | None = None,
    heads: HeadCheck | None = None,
) -> Report:
    """Check every chain found in ``records`` (in topic order).

    Reports, precisely: a record that does not decode (MALFORMED); a sequence
    number that is missing (GAP: a deleted record); one that appears before a
    lower one (REORDER); one that appears twice (DUPLICATE); a record whose
    hash is not the ``previous_hash`` of its successor (EDIT: the record was
    altered, or its successor's link was; the ``i24-audit-hash`` header, when
    present, tells which). ``expect`` maps a chain to the (length, head hash)
    an operator recorded earlier (the router exports both): a shorter or
    different chain is TRUNCATED, which catches deletion of the last records.

    ``heads``: check every signed head (``i24-audit-head-*`` headers, docs/router.md)
    against the GS signing key valid at the record's ``at_ms``. A head that does
    not verify is BAD_HEAD (the chain up to it was rewritten, its hash
    recomputed, or the signature is forged or by another station's key);
    records after the last verified head are UNSIGNED (appended without the GS
    key, or the heads were stripped). Without ``heads`` the chain is only
    self-consistent: whoever rebuilds the topic can recompute every hash.
    """
    report = Report()
    by_chain: dict[str, list[_Rec]] = {}
    for raw in records:
        report.records += 1
        chain = raw.key.decode("utf-8", "replace") if raw.key else "<no key>"
        if raw.value is None:
            report.problems.append(
                Problem(ProblemKind.MALFORMED, chain, None, raw.offset, "tombstone")
            )
            continue
        try:
            _, rec = store.decode_single(raw.value, expected=SCHEMA)
        except CodecError as exc:
            report.problems.append(
                Problem(ProblemKind.MALFORMED, chain, None, raw.offset, f"does not decode: {exc}")
            )
            continue
        hs = dict(raw.headers)
        claimed = hs.get(HASH_HEADER)
        try:
            claimed_hash = bytes.fromhex(claimed.decode()) if claimed else None
        except ValueError:  # headers are untrusted: a bad one only loses its convenience
            claimed_hash = None
        kid = hs.get(HEAD_KEY_HEADER)
        by_chain.setdefault(chain, []).append(
            _Rec(
                raw.offset,
                int(rec["sequence"]),
                bytes(rec["previous_hash"]),
                chain_hash(chain, bytes(rec["previous_hash"]), raw.value),
                claimed_hash,
                int(rec["at_ms"]),
                kid.decode("utf-8", "replace") if kid is not None else None,
                hs.get(HEAD_SIG_HEADER),
            )
        )
    for chain, recs in by_chain.items():
        report.problems.extend(_check(chain, recs, report))
        if heads is not None:
            report.problems.extend(_check_heads(chain, recs, report.chains[chain], heads))
    for chain, (length, head_hash) in (expect or {}).items():
        summary = report.chains.get(chain)
        have = summary.head if summary else Head()
        if have.next_sequence < length:
            report.problems.append(
                Problem(
                    ProblemKind.TRUNCATED,
                    chain,
                    length - 1,
                    None,
                    f"expected {length} records, found {have.next_sequence}: "
                    f"the last {length - have.next_sequence} were removed",
                )
            )
        elif have.next_sequence == length and have.last_hash != head_hash:
            report.problems.append(
                Problem(
                    ProblemKind.EDIT,
                    chain,
                    length - 1,
                    None,
                    f"head hash {have.last_hash.hex()} differs from the expected {head_hash.hex()}",
                )
            )
    return report


def _check(chain: str, recs: list[_Rec], report: Report) -> list[Problem]:
    out: list[Problem] = []
    by_seq: dict[int, _Rec] = {}
    highest: _Rec | None = None
    for r in recs:
        if r.sequence in by_seq:
            out.append(
                Problem(
                    ProblemKind.DUPLICATE,
                    chain,
                    r.sequence,
                    r.offset,
                    f"sequence {r.sequence} already at offset {by_seq[r.sequence].offset}",
                )
            )
            continue
        if highest is not None and r.sequence < highest.sequence:
            out.append(
                Problem(
                    ProblemKind.REORDER,
                    chain,
                    r.sequence,
                    r.offset,
                    f"appears after seq {highest.sequence} (offset {highest.offset})",
                )
            )
        by_seq[r.sequence] = r
        if highest is None or r.sequence > highest.sequence:
            highest = r
    top = max(by_seq) if by_seq else -1
    missing = [s for s in range(top + 1) if s not in by_seq]
    for run in _runs(missing):
        before = by_seq.get(run[0] - 1)
        after = by_seq.get(run[-1] + 1)
        span = f"{run[0]}" if len(run) == 1 else f"{run[0]}..{run[-1]}"
        out.append(
            Problem(
                ProblemKind.GAP,
                chain,
                run[0],
                None,
                f"sequence {span} missing (between offsets "
                f"{before.offset if before else '-'} and {after.offset if after else '-'})",
            )
        )
    for seq in sorted(by_seq):
        r = by_seq[seq]
        if seq == 0:
            if r.previous != ZERO:
                out.append(
                    Problem(
                        ProblemKind.EDIT,
                        chain,
                        0,
                        r.offset,
                        "first record's previous_hash not zero",
                    )
                )
            continue
        prev = by_seq.get(seq - 1)
        if prev is None or r.previous == prev.hash:
            continue
        if prev.claimed is not None and prev.claimed != prev.hash:
            detail = (
                f"seq {seq - 1} (offset {prev.offset}) was altered: its content no longer "
                f"hashes to what seq {seq} (offset {r.offset}) recorded"
            )
            out.append(Problem(ProblemKind.EDIT, chain, seq - 1, prev.offset, detail))
        else:
            detail = (
                f"previous_hash does not match seq {seq - 1} (offset {prev.offset}): "
                f"this record's link or the previous record was altered"
            )
            out.append(Problem(ProblemKind.EDIT, chain, seq, r.offset, detail))
    summary = ChainSummary(chain, len(recs))
    if top >= 0:
        summary.head = Head(top + 1, by_seq[top].hash)
    report.chains[chain] = summary
    return out


def _check_heads(
    chain: str, recs: list[_Rec], summary: ChainSummary, heads: HeadCheck
) -> list[Problem]:
    """Verify each signed head of ``chain``; report bad ones and the unsigned tail."""
    out: list[Problem] = []
    by_seq: dict[int, _Rec] = {}
    for r in recs:
        by_seq.setdefault(r.sequence, r)
    for seq in sorted(by_seq):
        r = by_seq[seq]
        if r.head_key_id is None and r.head_sig is None:
            continue
        why = _head_problem(chain, r, heads)
        if why is None:
            summary.signed_heads += 1
            summary.signed_through = seq
        else:
            out.append(Problem(ProblemKind.BAD_HEAD, chain, seq, r.offset, why))
    top = max(by_seq) if by_seq else -1
    first = 0 if summary.signed_through is None else summary.signed_through + 1
    if first <= top:
        span = f"{first}" if first == top else f"{first}..{top}"
        out.append(
            Problem(
                ProblemKind.UNSIGNED,
                chain,
                first,
                by_seq[first].offset if first in by_seq else None,
                f"sequence {span} not covered by a signed head of {heads.station} "
                f"(appended without its key, or its signed head was removed)",
            )
        )
    return out


def _head_problem(chain: str, r: _Rec, heads: HeadCheck) -> str | None:
    if r.head_key_id is None or r.head_sig is None:
        return "incomplete signed head (key id or signature header missing)"
    station = key_station(r.head_key_id)
    if station != heads.station:
        return f"signed head by key {r.head_key_id!r}, not a key of {heads.station}"
    try:
        vk = heads.key(station, r.head_key_id, r.at_ms)
    except I24Error as exc:
        return f"signed head key {r.head_key_id} not valid at {r.at_ms}: {exc}"
    try:
        vk.verify(head_message(chain, r.sequence, r.hash, r.at_ms, r.head_key_id), r.head_sig)
    except (BadSignatureError, ValueError, TypeError):
        return (
            f"signed head does not verify with {r.head_key_id}: the chain up to seq "
            f"{r.sequence} was rewritten (its hash recomputed) or the signature is forged"
        )
    return None


def _runs(xs: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for x in xs:
        if runs and runs[-1][-1] == x - 1:
            runs[-1].append(x)
        else:
            runs.append([x])
    return runs


def head_of(records: Iterable[RawRecord], chain: str, store: SchemaStore) -> Head:
    """The head of ``chain`` after ``records``: where a restarted writer continues."""
    key = chain.encode()
    head = Head()
    for raw in records:
        if raw.key != key or raw.value is None:
            continue
        try:
            _, rec = store.decode_single(raw.value, expected=SCHEMA)
        except CodecError:
            continue
        seq = int(rec["sequence"])
        if seq >= head.next_sequence:
            head = Head(seq + 1, chain_hash(chain, bytes(rec["previous_hash"]), raw.value))
    return head
