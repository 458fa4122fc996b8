"""Audit chain: every edit, deletion, reordering or duplication is reported precisely."""

from __future__ import annotations

from dataclasses import replace

import pytest

from i24net.audit import (
    HASH_HEADER,
    Action,
    Chain,
    Entry,
    Head,
    ProblemKind,
    RawRecord,
    chain_hash,
    digest,
    encode_reason,
    head_of,
    verify_chain,
)
from i24net.schemas import SchemaStore

STORE = SchemaStore.default()


def build(n: int = 6, chains: tuple[str, ...] = ("router/a",)) -> list[RawRecord]:
    cs = [Chain(c, STORE) for c in chains]
    out: list[RawRecord] = []
    for i in range(n):
        for c in cs:
            a = c.append(
                Entry(
                    Action.DELIVERED,
                    c.chain_id,
                    message_id=f"M{i}",
                    kind="POLICE_MESSAGE",
                    sender="FR",
                    recipients=("JP",),
                    reason=encode_reason("DEFAULT", ["default_deliver"]),
                    envelope_digest=digest(f"env{i}".encode()),
                ),
                at_ms=1_000 + i,
            )
            out.append(RawRecord(len(out), a.key, a.value, tuple(a.headers)))
    return out


def kinds(records: list[RawRecord]) -> list[tuple[ProblemKind, int | None]]:
    return [(p.kind, p.sequence) for p in verify_chain(records, STORE).problems]


def edited(rec: RawRecord, *, reason: str = "forged", keep_header: bool = True) -> RawRecord:
    _, d = STORE.decode_single(rec.value or b"")
    d["reason"] = reason
    value = STORE.encode_single("net.i24.AuditRecord", d)
    return replace(rec, value=value)


def test_intact_chains_verify_and_report_their_heads() -> None:
    recs = build(5, ("router/a", "router/b"))
    report = verify_chain(recs, STORE)
    assert report.ok, report.problems
    assert report.records == 10
    assert {c: s.head.next_sequence for c, s in report.chains.items()} == {
        "router/a": 5,
        "router/b": 5,
    }
    assert head_of(recs, "router/a", STORE) == report.chains["router/a"].head


def test_chain_continues_from_a_recovered_head() -> None:
    recs = build(3)
    head = head_of(recs, "router/a", STORE)
    c = Chain("router/a", STORE, head)
    a = c.append(Entry(Action.HELD, "router/a"), at_ms=5)
    recs.append(RawRecord(99, a.key, a.value, tuple(a.headers)))
    assert verify_chain(recs, STORE).ok


def test_editing_a_record_is_detected_and_located() -> None:
    recs = build()
    recs[2] = edited(recs[2])
    report = verify_chain(recs, STORE)
    assert [(p.kind, p.sequence, p.offset) for p in report.problems] == [(ProblemKind.EDIT, 2, 2)]
    assert "seq 2 (offset 2) was altered" in str(report.problems[0])


def test_editing_a_record_and_its_hash_header_is_still_detected() -> None:
    recs = build()
    e = edited(recs[2])
    _, d = STORE.decode_single(e.value or b"")
    forged_hash = chain_hash("router/a", bytes(d["previous_hash"]), e.value or b"")
    recs[2] = replace(e, headers=((HASH_HEADER, forged_hash.hex().encode()),))
    assert kinds(recs) == [(ProblemKind.EDIT, 3)]


def test_editing_the_last_record_is_caught_by_the_expected_head() -> None:
    recs = build()
    good = verify_chain(recs, STORE).chains["router/a"].head
    recs[-1] = edited(recs[-1])
    report = verify_chain(recs, STORE, expect={"router/a": (good.next_sequence, good.last_hash)})
    assert [(p.kind, p.sequence) for p in report.problems] == [(ProblemKind.EDIT, 5)]


def test_deleting_a_record_is_a_gap() -> None:
    recs = build()
    del recs[3]
    report = verify_chain(recs, STORE)
    assert [(p.kind, p.sequence) for p in report.problems] == [(ProblemKind.GAP, 3)]
    assert "between offsets 2 and 4" in str(report.problems[0])


def test_deleting_the_tail_is_truncation_against_the_expected_head() -> None:
    recs = build()
    head = verify_chain(recs, STORE).chains["router/a"].head
    report = verify_chain(
        recs[:4], STORE, expect={"router/a": (head.next_sequence, head.last_hash)}
    )
    assert [p.kind for p in report.problems] == [ProblemKind.TRUNCATED]


def test_reordering_is_detected() -> None:
    recs = build()
    recs[2], recs[3] = recs[3], recs[2]
    report = verify_chain(recs, STORE)
    assert [(p.kind, p.sequence) for p in report.problems] == [(ProblemKind.REORDER, 2)]


def test_duplicate_and_malformed_records() -> None:
    recs = build()
    recs.append(replace(recs[1], offset=50))
    recs.append(RawRecord(51, b"router/a", b"\xc3\x01garbage"))
    got = kinds(recs)
    assert (ProblemKind.DUPLICATE, 1) in got
    assert (ProblemKind.MALFORMED, None) in got


def test_a_record_moved_to_another_chain_breaks_both() -> None:
    recs = build(3, ("router/a", "router/b"))
    recs[2] = replace(recs[2], key=b"router/b")  # a's seq 1 claimed by b
    report = verify_chain(recs, STORE)
    found: dict[str, set[tuple[ProblemKind, int | None, int | None]]] = {}
    for p in report.problems:
        found.setdefault(p.chain, set()).add((p.kind, p.sequence, p.offset))
    # a lost its seq 1 (between offsets 0 and 4); b got a second seq 1, at offset 2, that does
    # not link to b's seq 0 nor hash to what b's seq 2 recorded
    assert found == {
        "router/a": {(ProblemKind.GAP, 1, None)},
        "router/b": {(ProblemKind.EDIT, 1, 2), (ProblemKind.DUPLICATE, 1, 3)},
    }
    assert "between offsets 0 and 4" in str(report.problems[0])


def test_chain_rollback_after_an_aborted_transaction() -> None:
    c = Chain("router/a", STORE)
    c.append(Entry(Action.DELIVERED, "x"), 1)
    saved = c.head
    c.append(Entry(Action.DELIVERED, "x"), 2)
    c.reset(saved)
    assert c.head == saved and c.head.next_sequence == 1
    assert Head().last_hash == bytes(32)


def test_chain_id_is_bounded() -> None:
    with pytest.raises(ValueError):
        Chain("x" * 300, STORE)
