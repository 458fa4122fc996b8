"""A running router signs its audit chain's head in each transaction: the chain on the
real topic verifies with its heads, through the API and through ``i24net audit verify``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from i24net.audit import HEAD_SIG_HEADER, HeadCheck, RawRecord, verify_chain
from i24net.cli import main

pytestmark = pytest.mark.kafka


async def test_the_router_signs_every_transaction_head_and_audit_verify_checks_it(
    router_world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    w = router_world  # conftest.py
    router = await w.router("a")
    for text in ("Stolen car, plate AB-123-CD.", "Missing person, last seen in Lyon."):
        _, data = w.message(text)
        await w.send(data, [])
    delivered = await w.read(w.topics.inbox("JP"), 2)
    assert len(delivered) == 2
    # the router's own periodic verification checks the heads too (a gauge per kind)
    own = await router.app.verify_audit()
    assert own.ok, own.problems
    [mine] = own.chains.values()
    assert mine.signed_heads >= 1 and mine.signed_through == mine.head.next_sequence - 1
    await router.close()
    records = [
        RawRecord(r.offset, r.key, r.value, tuple((k, bytes(v)) for k, v in r.headers))
        for r in await w.read(w.topics.audit, 2)
    ]
    signed = [r for r in records if HEAD_SIG_HEADER in dict(r.headers)]
    assert 1 <= len(signed) <= len(records)
    report = verify_chain(records, w.net.store, heads=HeadCheck("GS", w.net.directory.signing_key))
    assert report.ok, report.problems
    [summary] = report.chains.values()
    assert summary.signed_through == summary.head.next_sequence - 1  # no unsigned tail
    argv = ["audit", "verify", "--config", str(w.tmp / "router-a.toml"), "--heads", "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["heads_checked"] and out["ok"]
