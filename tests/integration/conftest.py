"""A world of stations around in-process routers, on the real broker (shared fixtures).

``router_world`` gives a unique topic prefix, keys and a GS-signed directory for
a few stations, the topics provisioned, a producer playing FR's gateway and a
way to start (and stop) ``RouterApp`` instances in this process, each with its
own registry and state directory. Routers run with ``settings_toml``'s test
values: ``session_timeout_ms`` 6000 and ``transaction_timeout_ms`` 10000
(shipped defaults: 10000 and 60000).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from i24net.audit.topic import prime
from i24net.envelope import Receiver, Recipients
from i24net.kafka import KafkaConnection
from i24net.replay import ReplayWindow
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import Network, build_network, police_message, provision, settings_toml

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"


def now() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Running:
    app: RouterApp
    registry: CollectorRegistry
    stop: asyncio.Event
    task: asyncio.Task[None]

    def refusals(self, reason: str) -> float:
        v = self.registry.get_sample_value("i24net_router_refusals_total", {"reason": reason})
        return v or 0.0

    async def close(self) -> None:
        """Stop this router; fails if it had stopped by itself (it must not)."""
        assert not self.task.done(), "the router stopped during the test"
        self.stop.set()
        await asyncio.wait_for(self.task, 20)  # raises what stopped it, if anything
        await self.app.stop()


@dataclass
class RouterWorld:
    conn: KafkaConnection
    net: Network
    topics: Topics
    tmp: Path
    producer: Any
    routers: list[Running] = field(default_factory=list)

    async def router(
        self, instance: str = "a", *, state: str | None = None, policy: Path = POLICY
    ) -> Running:
        """Start a router instance (state directory ``state-<state or instance>``)."""
        cfg = self.tmp / f"router-{instance}.toml"
        cfg.write_text(
            settings_toml(
                instance=instance,
                bootstrap=self.conn.bootstrap,
                prefix=self.topics.prefix,
                keys_dir=self.tmp / "keys",
                state_dir=self.tmp / f"state-{state or instance}",
                policy=policy,
                group=self.topics.prefix + "router",
            )
        )
        registry = CollectorRegistry()
        app = RouterApp(load_settings(cfg), registry)
        await app.start()
        stop = asyncio.Event()
        running = Running(app, registry, stop, asyncio.create_task(app.run(stop)))
        self.routers.append(running)
        return running

    def message(self, text: str, to: str = "JP") -> tuple[Any, bytes]:
        return self.net.gateway("FR", now()).message(
            "POLICE_MESSAGE", police_message(text), Recipients.to(to), now()
        )

    async def send(self, data: bytes, headers: list[tuple[str, bytes | None]]) -> None:
        await self.producer.send_and_wait(
            self.topics.out("FR"), key=b"k", value=data, headers=headers
        )

    async def read(self, topic: str, want: int, wait_s: float = 60) -> list[Any]:
        return await read(self.conn, topic, want, wait_s)

    @staticmethod
    def msgids(records: list[Any]) -> list[str]:
        return msgids(records)

    async def notices(self, want: int) -> dict[str, dict[str, Any]]:
        """message id -> the StatusNotice FR received about it."""
        rx = Receiver(self.net.secrets["FR"], self.net.directory, ReplayWindow(clock=now))
        out: dict[str, dict[str, Any]] = {}
        for r in await read(self.conn, self.topics.inbox("FR"), want):
            opened = rx.open(r.value)
            _, n = self.net.store.decode_single(opened.payload, expected="net.i24.StatusNotice")
            out[n["message_id"]] = n
        return out


async def read(conn: KafkaConnection, topic: str, want: int, wait_s: float = 60) -> list[Any]:
    """At least ``want`` committed records of ``topic`` (fails after ``wait_s``), then every
    other record already there, up to the end offset."""
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


@pytest.fixture
def router_world_setup() -> list[Callable[[KafkaConnection, Topics], Any]]:
    """Steps run before provisioning (e.g. a topic created with other settings)."""
    return []


@pytest.fixture
async def router_world(
    kafka_conn: KafkaConnection,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    router_world_setup: list[Callable[[KafkaConnection, Topics], Any]],
) -> AsyncIterator[RouterWorld]:
    topics = Topics(prefix=unique_name("t") + ".")
    for step in router_world_setup:
        await step(kafka_conn, topics)
    net = build_network(("FR", "JP"), tmp_path / "keys", now_ms=now())
    await provision(kafka_conn, net, topics)
    producer = AIOKafkaProducer(
        **kafka_conn.client_kwargs(), enable_idempotence=True, max_request_size=2 << 20
    )
    await producer.start()
    world = RouterWorld(kafka_conn, net, topics, tmp_path, producer)
    try:
        yield world
        for r in world.routers:
            if not r.stop.is_set():
                await r.close()
    finally:
        for r in world.routers:
            r.stop.set()
            await r.app.stop()
        await producer.stop()
