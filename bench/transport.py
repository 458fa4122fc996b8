"""Raw aiokafka produce → consume of 1 KiB records: the transport baseline.

Every other figure in ``make bench`` is reported as a ratio against this one,
measured in the same run on the same broker, because these machines are
shared and noisy.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics

PAYLOAD = 1024


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def produce_consume(conn: KafkaConnection, count: int, partitions: int = 3) -> dict[str, Any]:
    """Produce ``count`` records (idempotent, acks=all) while a consumer reads them."""
    topic = f"bench.transport.{uuid.uuid4().hex[:8]}"
    await ensure_topics(conn, [TopicSpec(topic, partitions=partitions)])
    padding = b"x" * (PAYLOAD - 8)
    latencies: list[float] = []
    consumer = AIOKafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **conn.client_kwargs(),
    )
    producer = AIOKafkaProducer(
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=256 * 1024,
        **conn.client_kwargs(),
    )
    await consumer.start()
    await producer.start()
    # Wait for the consumer's assignment so latency excludes its start-up.
    while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for it
        await asyncio.sleep(0.05)
    await consumer.seek_to_end()

    async def consume() -> None:
        while len(latencies) < count:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    latencies.append(now - struct.unpack(">d", r.value[:8])[0])

    reader = asyncio.create_task(consume())
    t0 = time.perf_counter()
    try:
        pending = []
        for _ in range(count):
            pending.append(
                await producer.send(topic, struct.pack(">d", time.perf_counter()) + padding)
            )
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        produced_s = time.perf_counter() - t0
        await asyncio.wait_for(reader, timeout=120)
        total_s = time.perf_counter() - t0
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    rate = count / total_s
    return {
        "records": count,
        "payload_bytes": PAYLOAD,
        "produce_msgs_per_s": count / produced_s,
        "end_to_end_msgs_per_s": rate,
        "mb_per_s": rate * PAYLOAD / 1e6,
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
    }


async def relay_baseline(conn: KafkaConnection, count: int) -> dict[str, Any]:
    """Producer → relay (consume + re-produce) → consumer: i24net's topology, no crypto."""
    src = f"bench.relay.in.{uuid.uuid4().hex[:8]}"
    dst = f"bench.relay.out.{uuid.uuid4().hex[:8]}"
    await ensure_topics(conn, [TopicSpec(src, partitions=3), TopicSpec(dst, partitions=3)])
    payload = b"x" * PAYLOAD
    kw = conn.client_kwargs()
    producer = AIOKafkaProducer(enable_idempotence=True, linger_ms=2, **kw)
    relay_in = AIOKafkaConsumer(src, auto_offset_reset="earliest", enable_auto_commit=False, **kw)
    relay_out = AIOKafkaProducer(enable_idempotence=True, linger_ms=2, **kw)
    sink = AIOKafkaConsumer(dst, auto_offset_reset="earliest", enable_auto_commit=False, **kw)
    for client in (producer, relay_in, relay_out, sink):
        await client.start()
    delivered = 0

    async def relay() -> None:
        moved = 0
        while moved < count:
            batch = await relay_in.getmany(timeout_ms=1000, max_records=5000)
            futures = [await relay_out.send(dst, r.value) for rs in batch.values() for r in rs]
            await asyncio.gather(*futures)
            moved += len(futures)

    async def drain() -> None:
        nonlocal delivered
        while delivered < count:
            batch = await sink.getmany(timeout_ms=1000, max_records=5000)
            delivered += sum(len(rs) for rs in batch.values())

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(relay()), asyncio.create_task(drain())]
    try:
        pending = [await producer.send(src, payload) for _ in range(count)]
        await asyncio.gather(*pending)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=180)
        elapsed = time.perf_counter() - t0
    finally:
        for t in tasks:
            t.cancel()
        for client in (producer, relay_in, relay_out, sink):
            await client.stop()
    return {"records": count, "payload_bytes": PAYLOAD, "relay_msgs_per_s": count / elapsed}
