"""A router killed mid-stream: every message delivered, and audited, exactly once.

The kill point is deterministic, not a race with the machine: the router runs
with the fault hook ``[testing] exit_before_commit_after_batches = K``, so it
commits exactly K transactions, writes the records of the next one to the
broker and exits with status 137 (as kill -9 leaves it) before committing.
The test checks that state (K batches committed, uncommitted records in the
log) before it restarts or lets another instance take over.

Test settings that differ from the shipped defaults: ``batch_max_records`` 50
(so K transactions cover a small part of the stream) and, in the restart
test, ``session_timeout_ms`` 6000 and ``transaction_timeout_ms`` 10000
(``settings_toml``'s test values). The two-instance takeover test runs with
the shipped defaults for both (10 s and 60 s): the survivor's reads wait for
the coordinator to abort the dead instance's open transaction.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from i24net.audit import SCHEMA as AUDIT_SCHEMA
from i24net.audit import read_records, verify_chain
from i24net.audit.topic import prime
from i24net.envelope import Recipients
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.provision import OUT_TOPIC_CONFIG
from i24net.router.settings import Topics
from i24net.router.testing import build_network, hints, police_message, provision, settings_toml

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
CLI = Path(sys.executable).parent / "i24net"
N = 1000
BATCH = 50
SHIPPED_TIMEOUTS = {"session_timeout_ms": 10_000, "transaction_timeout_ms": 60_000}


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

    def config(
        self, instance: str, *, crash_after: int = 0, router: dict[str, Any] | None = None
    ) -> Path:
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
                extra_router={"batch_max_records": BATCH, **(router or {})},
                testing={"exit_before_commit_after_batches": crash_after} if crash_after else None,
            )
        )
        return cfg

    def start(
        self, instance: str, *, crash_after: int = 0, router: dict[str, Any] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"router-{instance}.log", "ab")  # noqa: SIM115
        cfg = self.config(instance, crash_after=crash_after, router=router)
        p = subprocess.Popen(
            [str(CLI), "router", "--config", str(cfg)],
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
                        # The shared ingress topic, spread by message id over its 12
                        # partitions (a gateway would put all of FR's in one): so each
                        # instance of the takeover test owns some of FR's records.
                        self.topics.ingress,
                        key=h.message_id.encode(),
                        value=data,
                        headers=hints(h),
                    )
                )
            await asyncio.gather(*futs)
        finally:
            await producer.stop()
        return ids


async def end_offset(conn: KafkaConnection, topic: str) -> int:
    """The log end offset of partition 0, uncommitted records included."""
    c = AIOKafkaConsumer(**conn.client_kwargs(), isolation_level="read_uncommitted")
    await c.start()
    try:
        await prime(c, [topic])
        tp = TopicPartition(topic, 0)
        return int((await c.end_offsets([tp]))[tp])
    finally:
        await c.stop()


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
    # The ingress topic as the routers create it (written before the first one starts).
    await ensure_topics(kafka_conn, [TopicSpec(s.topics.ingress, 12, config=OUT_TOPIC_CONFIG)])
    try:
        yield s
    finally:
        s.stop_all()


def assert_exactly_once(seen: collections.Counter[str], ids: list[str], tmp: Path) -> None:
    dupes = {k: v for k, v in seen.items() if v != 1}
    missing = set(ids) - set(seen)
    logs = "\n".join(p.read_text()[-3000:] for p in tmp.glob("router-*.log"))
    assert not dupes and not missing, (len(dupes), len(missing), logs)


async def crashed(p: subprocess.Popen[bytes], within_s: float) -> None:
    """The fault hook ended ``p`` (status 137): it owned partitions and committed batches."""
    status = await asyncio.to_thread(p.wait, within_s)
    assert status == 137, "the router did not reach its crash point"


async def assert_audited_once(setup: Setup, ids: list[str]) -> None:
    """``i24.audit`` verifies (no gap, edit, duplicate across the crash) and has exactly one
    DELIVERED entry per message."""
    c = AIOKafkaConsumer(
        **setup.conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await c.start()
    try:
        records = [r async for r in read_records(c, topic=setup.topics.audit)]
    finally:
        await c.stop()
    report = verify_chain(records, setup.net.store)
    assert report.ok, report.problems[:5]
    delivered: collections.Counter[str] = collections.Counter()
    for r in records:
        _, rec = setup.net.store.decode_single(r.value, expected=AUDIT_SCHEMA)
        if rec["action"] == "DELIVERED":
            delivered[rec["message_id"]] += 1
    assert delivered == collections.Counter(ids)


async def test_killed_with_a_transaction_open_then_restarted_delivers_exactly_once(
    setup: Setup,
) -> None:
    ids = await setup.produce(N)
    await crashed(setup.start("a", crash_after=3), 120)
    committed = await count_ids(setup.conn, setup.topics.inbox("JP"))
    # exactly three transactions committed (each at most BATCH records), the fourth was
    # written to the log and left open
    assert 3 <= len(committed) <= 3 * BATCH, len(committed)
    assert await end_offset(setup.conn, setup.topics.inbox("JP")) > sum(committed.values())
    setup.start("a")  # same instance: fences the zombie, aborts its open transaction
    seen = await wait_for(setup.conn, setup.topics.inbox("JP"), N, 120)
    assert_exactly_once(seen, ids, setup.tmp)
    br = await count_ids(setup.conn, setup.topics.inbox("BR"))
    assert_exactly_once(br, ids[0::2], setup.tmp)
    # one status notice per message, to FR
    notices = await wait_for(setup.conn, setup.topics.inbox("FR"), N, 30)
    assert len(notices) == N and set(notices.values()) == {1}
    await assert_audited_once(setup, ids)


def assigned(setup: Setup, instance: str) -> int | None:
    """How many partitions the instance's latest assignment gave it (its log), or None."""
    found = re.findall(
        r"assigned (\d+) partitions", (setup.tmp / f"router-{instance}.log").read_text()
    )
    return int(found[-1]) if found else None


async def until(check: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_two_instances_one_killed_delivers_exactly_once(setup: Setup) -> None:
    """The takeover with the shipped session and transaction timeouts.

    Both instances share the group's partitions before any message is written (the
    test waits for their assignments in their logs), so the instance with the fault
    hook owns some of FR's partitions whichever starts faster."""
    a = setup.start("a", crash_after=2, router=SHIPPED_TIMEOUTS)
    await until(lambda: assigned(setup, "a") is not None, 120, "a's assignment")
    b = setup.start("b", router=SHIPPED_TIMEOUTS)
    everything = 12 + 3 * 4  # i24.out (12), and the legacy i24.out.{BR,FR,GS,JP} (3 each)

    def shared() -> bool:
        na, nb = assigned(setup, "a"), assigned(setup, "b")
        return bool(na and nb and na + nb == everything)

    await until(shared, 120, "a and b sharing the partitions")
    assert b.poll() is None
    ids = await setup.produce(N)
    await crashed(a, 180)
    # b takes a's partitions after the session timeout; a's open transaction is
    # aborted by the coordinator after transaction_timeout_ms.
    seen = await wait_for(setup.conn, setup.topics.inbox("JP"), N, 240)
    assert_exactly_once(seen, ids, setup.tmp)
    await assert_audited_once(setup, ids)
