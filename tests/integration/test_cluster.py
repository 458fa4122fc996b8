"""The 3-node KRaft cluster survives ``kill -9`` of a partition leader.

An idempotent ``acks=all`` producer sends 2,000 numbered messages to a topic with
replication factor 3 and ``min.insync.replicas=2``; the leader of its partition
is killed after 500 acknowledgements and restarted after 1,200. Every message
must be read back exactly once, in order. The longest producer stall (the
longest send-to-acknowledgement time, and the longest gap between two
acknowledgements) is printed and written to ``$I24NET_RESULTS_DIR`` if set.

Settings that differ from the shipped defaults: the brokers use
``broker.session.timeout.ms=3000`` (Kafka's default 9000) and
``broker.heartbeat.interval.ms=500`` (default 2000), so a killed broker is fenced
sooner; the producer ``request_timeout_ms=30000`` (aiokafka's default 40000) and
``linger_ms=5`` (default 0). No router runs here, so no session or transaction
timeout is involved.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from i24net.kafka.admin import TopicSpec, ensure_topics
from i24net.kafka.cluster import Cluster, ClusterSettings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

MESSAGES = 2000
KILL_AT = 500
RESTART_AT = 1200


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    settings = ClusterSettings(
        data_dir=tmp_path_factory.mktemp("cluster"),
        # fence a dead broker after 3 s instead of 9 s (loopback, no network jitter)
        properties={"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"},
    )
    with Cluster(settings) as c:
        yield c


async def _leader(cluster: Cluster, topic: str) -> int:
    admin = AIOKafkaAdminClient(**cluster.admin_connection().client_kwargs())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return int(described["partitions"][0]["leader"])
    finally:
        await admin.close()


def test_cluster_topics_get_replication_3_and_min_isr_2(cluster: Cluster) -> None:
    props = cluster.broker(1).server_properties()
    assert props["controller.quorum.voters"] == cluster.voters
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert len({cluster.broker(i).settings.data_dir for i in cluster.node_ids}) == 3


async def test_kill_9_of_the_leader_loses_and_duplicates_nothing(
    cluster: Cluster, unique_name: Callable[[str], str]
) -> None:
    conn = cluster.admin_connection()
    topic = unique_name("i24.out.FR")
    await ensure_topics(conn, [TopicSpec(topic, 1, 3, {"min.insync.replicas": "2"})])
    victim = await _leader(cluster, topic)

    producer = AIOKafkaProducer(
        **conn.client_kwargs(),
        enable_idempotence=True,  # implies acks=all
        linger_ms=5,
        request_timeout_ms=30000,
        retry_backoff_ms=100,
    )
    sent_at: dict[int, float] = {}
    acked_at: dict[int, float] = {}
    await producer.start()
    try:
        pending: set[asyncio.Future[object]] = set()
        restarted: asyncio.Future[None] | None = None
        kill_time = 0.0
        killed = False
        for i in range(MESSAGES):
            if not killed and len(acked_at) >= KILL_AT:
                await asyncio.to_thread(cluster.kill, victim)
                killed, kill_time = True, time.monotonic()
            if killed and restarted is None and len(acked_at) >= RESTART_AT:
                # launch from this thread (an attached JVM dies with the thread that
                # started it), wait for readiness in a worker; producing goes on
                cluster.restart(victim, wait=False)
                restarted = asyncio.ensure_future(
                    asyncio.to_thread(cluster.broker(victim).wait_ready)
                )
            sent_at[i] = time.monotonic()
            fut = await producer.send(topic, str(i).encode(), key=b"FR")
            fut.add_done_callback(lambda f, i=i: acked_at.setdefault(i, time.monotonic()))
            pending.add(fut)
            if len(pending) >= 50:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for f in done:
                    f.result()  # a failed send fails the test
            await asyncio.sleep(0.002)  # ~ a steady stream, not one burst
        await asyncio.gather(*pending)  # raises if any send failed
        if restarted is None:  # the last acks came after the last send
            cluster.restart(victim, wait=False)
            restarted = asyncio.ensure_future(asyncio.to_thread(cluster.broker(victim).wait_ready))
        await restarted
    finally:
        await producer.stop()
    assert killed

    latencies = [acked_at[i] - sent_at[i] for i in range(MESSAGES)]
    acks = sorted(acked_at.values())
    gaps = [b - a for a, b in itertools.pairwise(acks)]
    result: dict[str, object] = {
        "messages": MESSAGES,
        "killed_node": victim,
        "killed_was_leader": True,
        "longest_send_to_ack_s": round(max(latencies), 3),
        "longest_gap_between_acks_s": round(max(gaps), 3),
        "kill_time_offset_s": round(kill_time - min(sent_at.values()), 3),
    }
    print(f"\n3-node cluster, kill -9 of leader {victim}: {json.dumps(result)}")
    _record(result)

    assert cluster.is_running(victim)
    consumer = AIOKafkaConsumer(
        topic,
        **conn.client_kwargs(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < MESSAGES and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            seen += [int(r.value) for rs in batches.values() for r in rs if r.value is not None]
    finally:
        await consumer.stop()
    assert len(seen) == MESSAGES, f"{len(seen)} messages read, {MESSAGES} sent"
    assert seen == list(range(MESSAGES))  # exactly once, in order


def _record(result: dict[str, object]) -> None:
    results_dir = os.environ.get("I24NET_RESULTS_DIR")
    if results_dir:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        (Path(results_dir) / "cluster_failover.json").write_text(json.dumps(result, indent=2))
