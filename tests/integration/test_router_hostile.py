"""Hostile and unlucky records on the real broker: refused with a reason, the stream flows.

Issue 11, items 2 and 3: a null Kafka header once stopped the router for every
station; a delivery larger than its topic's ``max.message.bytes`` was reported
DELIVERED (aiokafka commits over a failed send) while nothing reached the
recipient. Now the first is refused ``malformed``, the second is dead-lettered
``broker_refused`` with a REFUSED notice to its sender, and the records after
each are delivered by the same running router.

Test settings that differ from the shipped defaults (``settings_toml``):
``session_timeout_ms`` 6000 and ``transaction_timeout_ms`` 10000.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from i24net.audit.topic import prime
from i24net.envelope import Receiver, Recipients
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.replay import ReplayWindow
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import (
    Network,
    build_network,
    hints,
    police_message,
    provision,
    settings_toml,
)

pytestmark = pytest.mark.kafka
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
JP_INBOX_MAX_MESSAGE_BYTES = 512 << 10
"""JP's inbox as a hand-made or older provisioning may leave it: smaller than what the
router produces (provision sets 2 MiB and sets a drifted value back)."""


def now() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class World:
    conn: KafkaConnection
    net: Network
    topics: Topics
    app: RouterApp
    task: asyncio.Task[None]
    producer: Any
    registry: CollectorRegistry

    async def send(self, data: bytes, headers: list[tuple[str, bytes | None]]) -> None:
        await self.producer.send_and_wait(
            self.topics.out("FR"), key=b"k", value=data, headers=headers
        )

    def message(self, text: str, to: str = "JP") -> tuple[Any, bytes]:
        return self.net.gateway("FR", now()).message(
            "POLICE_MESSAGE", police_message(text), Recipients.to(to), now()
        )

    def refusals(self, reason: str) -> float:
        v = self.registry.get_sample_value("i24net_router_refusals_total", {"reason": reason})
        return v or 0.0

    async def notices(self, want: int) -> dict[str, dict[str, Any]]:
        """message id -> the StatusNotice FR received about it."""
        rx = Receiver(self.net.secrets["FR"], self.net.directory, ReplayWindow(clock=now))
        out: dict[str, dict[str, Any]] = {}
        for r in await read(self.conn, self.topics.inbox("FR"), want):
            opened = rx.open(r.value)
            _, n = self.net.store.decode_single(opened.payload, expected="net.i24.StatusNotice")
            out[n["message_id"]] = n
        return out


@pytest.fixture
async def world(
    kafka_conn: KafkaConnection, tmp_path: Path, unique_name: Callable[[str], str]
) -> AsyncIterator[World]:
    prefix = unique_name("t") + "."
    topics = Topics(prefix=prefix)
    await ensure_topics(
        kafka_conn,
        [
            TopicSpec(
                topics.inbox("JP"),
                1,
                config={"max.message.bytes": str(JP_INBOX_MAX_MESSAGE_BYTES)},
            )
        ],
    )
    net = build_network(("FR", "JP"), tmp_path / "keys", now_ms=now())
    await provision(kafka_conn, net, topics)
    cfg = tmp_path / "router.toml"
    cfg.write_text(
        settings_toml(
            instance="a",
            bootstrap=kafka_conn.bootstrap,
            prefix=prefix,
            keys_dir=tmp_path / "keys",
            state_dir=tmp_path / "state",
            policy=POLICY,
            group=prefix + "router",
        )
    )
    registry = CollectorRegistry()
    producer = AIOKafkaProducer(
        **kafka_conn.client_kwargs(), enable_idempotence=True, max_request_size=2 << 20
    )
    await producer.start()
    stop = asyncio.Event()
    try:
        async with RouterApp(load_settings(cfg), registry) as app:
            task = asyncio.create_task(app.run(stop))
            yield World(kafka_conn, net, topics, app, task, producer, registry)
            assert not task.done(), "the router stopped during the test"
            stop.set()
            await asyncio.wait_for(task, 20)  # raises what stopped it, if anything
    finally:
        await producer.stop()


async def read(conn: KafkaConnection, topic: str, want: int, wait_s: float = 60) -> list[Any]:
    """At least ``want`` committed records of ``topic`` (fails after ``wait_s``), then any
    extra already there up to the end offset."""
    c = AIOKafkaConsumer(
        **conn.client_kwargs(), isolation_level="read_committed", enable_auto_commit=False
    )
    await c.start()
    try:
        await prime(c, [topic])
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or {0})]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + wait_s
        while len(out) < want:
            assert time.monotonic() < deadline, f"{len(out)} of {want} records on {topic}"
            for recs in (await c.getmany(timeout_ms=300)).values():
                out.extend(recs)
        end = await c.end_offsets(tps)
        while [tp for tp in tps if await c.position(tp) < end[tp]]:
            for recs in (await c.getmany(timeout_ms=300)).values():
                out.extend(recs)
        return out
    finally:
        await c.stop()


def msgids(records: list[Any]) -> list[str]:
    return [bytes(dict(r.headers)["i24-msgid"]).decode() for r in records]


async def test_a_null_header_is_refused_and_the_next_message_is_delivered(world: World) -> None:
    bad_h, bad = world.message("theft, with a null kind header")
    await world.send(bad, [(k, None if k == "i24-kind" else v) for k, v in hints(bad_h)])
    good_h, good = world.message("theft, well formed")
    await world.send(good, list(hints(good_h)))
    assert msgids(await read(world.conn, world.topics.inbox("JP"), 1)) == [good_h.message_id]
    (dead,) = await read(world.conn, world.topics.dlq, 1)
    assert dict(dead.headers)["i24-reason"] == b"malformed"
    assert world.refusals("malformed") == 1


async def test_a_delivery_the_broker_refuses_is_dead_lettered_not_reported_delivered(
    world: World,
) -> None:
    big_h, big = world.message("x" * (600 << 10))
    assert JP_INBOX_MAX_MESSAGE_BYTES < len(big) < world.app.pipeline.max_record_bytes
    await world.send(big, list(hints(big_h)))
    small_h, small = world.message("a small one after it")
    await world.send(small, list(hints(small_h)))
    # JP receives the small one only; the big one is in the DLQ with its reason
    assert msgids(await read(world.conn, world.topics.inbox("JP"), 1)) == [small_h.message_id]
    (dead,) = await read(world.conn, world.topics.dlq, 1)
    assert dict(dead.headers)["i24-reason"] == b"broker_refused"
    assert dict(dead.headers)["i24-msgid"] == big_h.message_id.encode()
    # FR is told the truth about both
    notices = await world.notices(2)
    assert notices[big_h.message_id]["status"] == "REFUSED"
    assert notices[big_h.message_id]["reason"] == "broker_refused"
    assert notices[small_h.message_id]["status"] == "DELIVERED"
    assert world.refusals("broker_refused") == 1
