"""Signed audit-chain heads: a rewritten prefix, a foreign or bad signature, an unsigned tail."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, World, make_world

from i24net.audit import (
    HEAD_KEY_HEADER,
    HEAD_SIG_HEADER,
    Action,
    Appended,
    Chain,
    Entry,
    Head,
    HeadCheck,
    HeadSigner,
    ProblemKind,
    RawRecord,
    Report,
    verify_chain,
)
from i24net.directory import KeyRecord, Status

CHAIN = "router/a"


def signer(w: World, code: str = "GS") -> HeadSigner:
    s = w.secrets[code]
    return HeadSigner(s.signing_key_id, s.signing)


def check(w: World) -> HeadCheck:
    return HeadCheck("GS", w.directory.signing_key)


def entries(n: int, reason: str = "r") -> list[Entry]:
    return [Entry(Action.DELIVERED, CHAIN, f"m{i}", reason=reason) for i in range(n)]


def raw(appended: list[Appended]) -> list[RawRecord]:
    return [RawRecord(i, a.key, a.value, tuple(a.headers)) for i, a in enumerate(appended)]


def kinds(report: Report) -> list[tuple[ProblemKind, int | None]]:
    return [(p.kind, p.sequence) for p in report.problems]


def test_one_signature_per_batch_and_the_chain_verifies_with_its_heads() -> None:
    w = make_world()
    c = Chain(CHAIN, w.store, signer=signer(w))
    batch = c.extend(entries(3), T0)
    batch += c.extend(entries(2), T0 + 1)
    signed = [a.sequence for a in batch if a.head_signature is not None]
    assert signed == [2, 4]  # the last record of each batch
    assert {k for a in batch for k, _ in a.headers} >= {HEAD_KEY_HEADER, HEAD_SIG_HEADER}
    report = verify_chain(raw(batch), w.store, heads=check(w))
    assert report.ok, report.problems
    summary = report.chains[CHAIN]
    assert (summary.signed_through, summary.signed_heads) == (4, 2)


def test_records_appended_without_the_key_are_an_unsigned_tail() -> None:
    w = make_world()
    c = Chain(CHAIN, w.store, signer=signer(w))
    batch = c.extend(entries(2), T0)
    intruder = Chain(CHAIN, w.store, c.head)  # the right links, no key
    batch += intruder.extend(entries(2, "forged"), T0 + 1)
    assert verify_chain(raw(batch), w.store).ok  # the unkeyed chain alone sees nothing
    report = verify_chain(raw(batch), w.store, heads=check(w))
    assert kinds(report) == [(ProblemKind.UNSIGNED, 2)]
    assert "sequence 2..3 not covered" in report.problems[0].detail
    # a chain written before heads existed: unsigned from 0 until the router signs again
    legacy = Chain(CHAIN, w.store).extend(entries(2), T0)
    assert kinds(verify_chain(raw(legacy), w.store, heads=check(w))) == [(ProblemKind.UNSIGNED, 0)]


def test_a_rewritten_prefix_with_recomputed_hashes_is_caught_by_its_signed_head() -> None:
    w = make_world()
    original = Chain(CHAIN, w.store, signer=signer(w)).extend(entries(3), T0)
    # whoever can rebuild the topic rewrites record 1 and recomputes every hash after it,
    # then copies the GS signature headers (they cannot make new ones)
    rebuilt = Chain(CHAIN, w.store)
    forged_entries = entries(3)
    forged_entries[1] = dataclasses.replace(forged_entries[1], reason="rewritten")
    forged = rebuilt.extend(forged_entries, T0)
    records = [
        RawRecord(i, f.key, f.value, tuple(o.headers))
        for i, (o, f) in enumerate(zip(original, forged, strict=True))
    ]
    records = [
        dataclasses.replace(r, headers=tuple((k, v) for k, v in r.headers if k != "i24-audit-hash"))
        for r in records
    ]
    assert verify_chain(records, w.store).ok  # self-consistent: the unkeyed chain passes
    report = verify_chain(records, w.store, heads=check(w))
    assert kinds(report) == [(ProblemKind.BAD_HEAD, 2), (ProblemKind.UNSIGNED, 0)]
    assert "rewritten" in report.problems[0].detail


def test_a_head_signed_by_another_station_or_an_invalid_gs_key_is_refused() -> None:
    w = make_world()
    by_fr = Chain(CHAIN, w.store, signer=signer(w, "FR")).extend(entries(1), T0)
    report = verify_chain(raw(by_fr), w.store, heads=check(w))
    assert kinds(report) == [(ProblemKind.BAD_HEAD, 0), (ProblemKind.UNSIGNED, 0)]
    assert "not a key of GS" in report.problems[0].detail
    # the GS key revoked before the head's time: not valid then
    gs = w.directory.record("GS")
    revoked = dataclasses.replace(
        gs,
        serial=2,
        signing_keys=tuple(
            KeyRecord(k.key_id, k.public_key, k.valid_from_ms, None, Status.REVOKED, T0)
            for k in gs.signing_keys
        ),
    )
    w.directory.put(revoked)
    signed = Chain(CHAIN, w.store, signer=signer(w)).extend(entries(1), T0 + 5)
    report = verify_chain(raw(signed), w.store, heads=check(w))
    assert kinds(report)[0] == (ProblemKind.BAD_HEAD, 0)
    assert "not valid at" in report.problems[0].detail
    # a signature that is not the key's over this head
    ok = Chain(CHAIN, w.store, signer=signer(w)).extend(entries(1), T0 - 5)
    bad = [
        RawRecord(
            0,
            a.key,
            a.value,
            tuple((k, bytes(64) if k == HEAD_SIG_HEADER else v) for k, v in a.headers),
        )
        for a in ok
    ]
    assert kinds(verify_chain(bad, w.store, heads=check(w)))[0] == (ProblemKind.BAD_HEAD, 0)
    assert verify_chain(raw(ok), w.store, heads=check(w)).ok


def test_a_stripped_last_head_leaves_the_tail_after_the_previous_one_unsigned() -> None:
    w = make_world()
    c = Chain(CHAIN, w.store, Head(), signer=signer(w))
    records = raw(c.extend(entries(2), T0) + c.extend(entries(2), T0 + 1))
    last = records[-1]
    records[-1] = dataclasses.replace(
        last, headers=tuple((k, v) for k, v in last.headers if k not in (HEAD_SIG_HEADER,))
    )
    report = verify_chain(records, w.store, heads=check(w))
    assert kinds(report) == [(ProblemKind.BAD_HEAD, 3), (ProblemKind.UNSIGNED, 2)]
    assert report.chains[CHAIN].signed_through == 1


def test_audit_verify_says_when_heads_were_not_checked_and_needs_roots_to_check_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import i24net.report as report_pkg
    from i24net.cli import main

    w = make_world()
    records = raw(Chain(CHAIN, w.store, signer=signer(w)).extend(entries(2), T0))

    async def fake_read(conn: object, topic: str) -> list[RawRecord]:
        return records

    monkeypatch.setattr(report_pkg, "read_audit", fake_read)
    argv = ["audit", "verify", "--bootstrap", "127.0.0.1:9"]
    assert main(argv) == 0
    assert "signed heads: not checked (--no-heads" in capsys.readouterr().out
    assert main([*argv, "--heads"]) == 2
    assert "--heads needs --config or --root-public" in capsys.readouterr().err


def test_audit_verify_checks_heads_by_default_with_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--config`` alone means heads are checked: the roots come from the router's
    settings (and a missing root file is an error, not a silent hash-chain-only pass)."""
    import argparse
    import types

    import i24net.router.settings as router_settings
    from i24net.cli.audit import head_roots

    root = tmp_path / "root.json"
    loaded = types.SimpleNamespace(
        keys=types.SimpleNamespace(root_public=root, roots=[]),
        topics=types.SimpleNamespace(directory="p.i24.directory"),
    )
    monkeypatch.setattr(router_settings, "load_settings", lambda path: loaded)
    args = argparse.Namespace(
        heads=None, root_public=[], config=tmp_path / "router.toml", directory_topic=None
    )
    assert head_roots(args) == ([root], "p.i24.directory")
    args.heads = False
    assert head_roots(args) == ([], None)
