"""kill -9 of a router mid-stream: every message delivered exactly once (read_committed)."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from i24net.audit.topic import prime
from i24net.envelope import Recipients
from i24net.kafka import KafkaConnection
from i24net.router.settings import Topics
from i24net.router.testing import build_network, hints, police_message, provision, settings_toml

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
CLI = Path(sys.executable).parent / "i24net"
N = 1000


def now() -> int:
    return time.time_ns() // 1_000_000


class Setup:
    def __init__(self, conn: KafkaConnection, tmp: Path, prefix: str) -> None:
        self.conn = conn
        self.tmp = tmp
        self.topics = Topics(prefix=prefix)
        self.prefix = prefix
        self.net = build_network(("FR", "JP", "BR"), tmp / "keys", now_ms=now())
        self.procs: list[subprocess.Popen[bytes]] = []

    def config(self, instance: str) -> Path:
        cfg = self.tmp / f"router-{instance}.toml"
        cfg.write_text(
            settings_toml(
                instance=instance,
                bootstrap=self.conn.bootstrap,
                prefix=self.prefix,
                keys_dir=self.tmp / "keys",
                state_dir=self.tmp / f"state-{instance}",
                policy=POLICY,
                group=self.prefix + "router",
                extra_router={"batch_max_records": 50},
            )
        )
        return cfg

    def start(self, instance: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"router-{instance}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(
            [str(CLI), "router", "--config", str(self.config(instance))],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)

    async def produce(self, n: int) -> list[str]:
        ids: list[str] = []
        fr = self.net.gateway("FR", now())
        producer = AIOKafkaProducer(
            **self.conn.client_kwargs(), enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            futs = []
            for i in range(n):
                to = Recipients.to("JP") if i % 2 else Recipients.to("BR", "JP")
                h, data = fr.message("POLICE_MESSAGE", police_message(f"Theft {i}"), to, now())
                ids.append(h.message_id)
                futs.append(
                    await producer.send(
                        self.topics.out("FR"),
                        key=h.message_id.encode(),
                        value=data,
                        headers=hints(h),
                    )
                )
            await asyncio.gather(*futs)
        finally:
            await producer.stop()
        return ids


async def count_ids(conn: KafkaConnection, topic: str) -> collections.Counter[str]:
    c = AIOKafkaConsumer(
        **conn.client_kwargs(), isolation_level="read_committed", enable_auto_commit=False
    )
    await c.start()
    try:
        await prime(c, [topic])
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        end = (await c.end_offsets([tp]))[tp]
        seen: collections.Counter[str] = collections.Counter()
        while await c.position(tp) < end:
            batch = await c.getmany(timeout_ms=500)
            for recs in batch.values():
                for r in recs:
                    for k, v in r.headers:
                        if k == "i24-msgid":
                            seen[bytes(v).decode()] += 1
        return seen
    finally:
        await c.stop()


async def wait_for(
    conn: KafkaConnection, topic: str, n: int, timeout_s: float
) -> collections.Counter[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = await count_ids(conn, topic)
        if len(seen) >= n or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.5)


@pytest.fixture
async def setup(
    kafka_conn: KafkaConnection, tmp_path: Path, unique_name: Callable[[str], str]
) -> Any:
    s = Setup(kafka_conn, tmp_path, unique_name("t") + ".")
    await provision(kafka_conn, s.net, s.topics)
    try:
        yield s
    finally:
        s.stop_all()


def assert_exactly_once(seen: collections.Counter[str], ids: list[str], tmp: Path) -> None:
    dupes = {k: v for k, v in seen.items() if v != 1}
    missing = set(ids) - set(seen)
    logs = "\n".join(p.read_text()[-3000:] for p in tmp.glob("router-*.log"))
    assert not dupes and not missing, (len(dupes), len(missing), logs)


async def test_kill_9_mid_stream_then_restart_delivers_exactly_once(setup: Setup) -> None:
    ids = await setup.produce(N)
    p = setup.start("a")
    seen = await wait_for(setup.conn, setup.topics.inbox("JP"), 150, 60)
    assert 0 < len(seen) < N, "router too fast or too slow to kill mid-stream"
    os.kill(p.pid, signal.SIGKILL)
    p.wait(5)
    setup.start("a")  # same instance: fences the zombie, aborts its open transaction
    seen = await wait_for(setup.conn, setup.topics.inbox("JP"), N, 120)
    assert_exactly_once(seen, ids, setup.tmp)
    br = await count_ids(setup.conn, setup.topics.inbox("BR"))
    assert_exactly_once(br, ids[0::2], setup.tmp)
    # one status notice per message, to FR
    notices = await wait_for(setup.conn, setup.topics.inbox("FR"), N, 30)
    assert len(notices) == N and set(notices.values()) == {1}


async def test_two_instances_one_killed_delivers_exactly_once(setup: Setup) -> None:
    ids = await setup.produce(N)
    a = setup.start("a")
    setup.start("b")
    seen = await wait_for(setup.conn, setup.topics.inbox("JP"), 150, 60)
    assert len(seen) < N
    os.kill(a.pid, signal.SIGKILL)
    a.wait(5)
    # b takes a's partitions after the session timeout; a's open transaction is
    # aborted by the coordinator after transaction_timeout_ms (10 s here).
    seen = await wait_for(setup.conn, setup.topics.inbox("JP"), N, 150)
    assert_exactly_once(seen, ids, setup.tmp)
