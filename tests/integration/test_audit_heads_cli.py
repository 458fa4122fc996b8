"""``i24net audit verify`` on a real broker: signed heads checked against the directory
read from its topic; an unsigned tail fails the verification, and says so."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, make_world

from i24net.audit import Action, Appended, Chain, Entry, HeadSigner
from i24net.cli import main
from i24net.directory import publish
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import ROOT_NAME, save_root

pytestmark = pytest.mark.kafka

CHAIN = "router/a"


async def _send(conn: KafkaConnection, topic: str, appended: list[Appended]) -> None:
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **conn.client_kwargs())
    await producer.start()
    try:
        for a in appended:
            await (await producer.send(topic, key=a.key, value=a.value, headers=a.headers))
    finally:
        await producer.stop()


def _entries(n: int) -> list[Entry]:
    return [Entry(Action.DELIVERED, CHAIN, f"m{i}", sender="FR") for i in range(n)]


async def test_audit_verify_checks_signed_heads_and_reports_an_unsigned_tail(
    kafka_conn: KafkaConnection,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    w = make_world()
    audit, directory = unique_name("audit"), unique_name("directory")
    specs = [TopicSpec(audit, 1), TopicSpec(directory, 1, config={"cleanup.policy": "compact"})]
    await ensure_topics(kafka_conn, specs)
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **kafka_conn.client_kwargs())
    await producer.start()
    try:
        await publish(producer, w.directory.entries, topic=directory)
    finally:
        await producer.stop()
    _, root_public = save_root(w.root, tmp_path / "root")
    assert root_public.name == f"{ROOT_NAME}.public.json"
    gs = w.secrets["GS"]
    chain = Chain(CHAIN, w.store, signer=HeadSigner(gs.signing_key_id, gs.signing))
    await _send(kafka_conn, audit, chain.extend(_entries(3), T0) + chain.extend(_entries(2), T0))
    argv = ["audit", "verify", "--bootstrap", kafka_conn.bootstrap, "--topic", audit]
    heads = ["--directory-topic", directory, "--root-public", str(root_public)]

    assert await asyncio.to_thread(main, [*argv, *heads, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["heads_checked"]
    assert out["chains"][CHAIN]["signed_through"] == 4

    # records appended with the right links but without the GS key
    await _send(kafka_conn, audit, Chain(CHAIN, w.store, chain.head).extend(_entries(2), T0))
    assert await asyncio.to_thread(main, argv) == 0  # the unkeyed chain alone passes...
    assert "signed heads: not checked" in capsys.readouterr().out
    assert await asyncio.to_thread(main, [*argv, *heads]) == 1  # ...the signed heads do not
    text = capsys.readouterr().out
    assert "UNSIGNED: chain router/a seq 5" in text and "signed through seq 4" in text
