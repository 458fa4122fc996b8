"""Raw aiokafka produce → consume of 1 KiB records, and the fair relay baselines.

Every other figure in ``make bench`` is reported as a ratio against this one,
measured in the same run on the same broker, because these machines are
shared and noisy.
"""

from __future__ import annotations

import asyncio
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.procstat import cpu_seconds
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


def envelope_size(text_chars: int = 1000) -> int:
    """Bytes of the sealed envelope of a police message of ``text_chars`` characters
    (the pipeline's record), so that the relay baselines move records of the same
    size: a 1 KiB payload seals to ~1.3 KiB (header, signature, wrapped keys)."""
    import tempfile

    from i24net.envelope import Recipients
    from i24net.router.testing import build_network, police_message

    with tempfile.TemporaryDirectory() as d:
        now = time.time_ns() // 1_000_000
        net = build_network(["FR", "JP"], Path(d), now_ms=now)
        _, data = net.gateway("FR", now).message(
            "POLICE_MESSAGE", police_message("x" * text_chars), Recipients.to("JP"), now
        )
    return len(data)


async def _preload(conn: KafkaConnection, topic: str, count: int, size: int) -> None:
    producer = AIOKafkaProducer(
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        **conn.client_kwargs(),
    )
    await producer.start()
    try:
        payload = b"x" * size
        pending = []
        for i in range(count):
            pending.append(await producer.send(topic, payload, key=str(i % 64).encode()))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _broker_cpu(pid: int | None) -> float:
    if pid is None:
        return float("nan")
    try:
        return cpu_seconds(pid)
    except OSError:
        return float("nan")


async def relay_baseline(
    conn: KafkaConnection,
    count: int,
    *,
    size: int = PAYLOAD,
    transactional: bool = False,
    per_transaction: int = 500,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """A well-written aiokafka relay: consume → re-produce, batched, same broker.

    The fair yardstick for the router (issue 12): what one Python process with
    the project's client moves on this broker when nothing but the relay's own
    work is done. A backlog of ``count`` records (``size`` bytes) is written
    first, untimed; then the relay drains it into a second topic, fetching in
    large batches (``max_records`` 10,000, 4 MiB per partition) and producing
    with a 1 MiB batch and ``linger_ms=5`` without waiting on each send. The
    time runs from the relay's first fetch to the last produced record's ack.
    ``transactional``: exactly-once like the router (``read_committed`` input,
    offsets sent to the transaction, one commit per ``per_transaction`` records
    or per fetch, whichever is smaller), the same cost model as i24net's hop.
    CPU per message is reported for the relay (this process) and the broker.
    """
    tag = uuid.uuid4().hex[:8]
    src, dst = f"bench.relay.in.{tag}", f"bench.relay.out.{tag}"
    await ensure_topics(conn, [TopicSpec(src, partitions=3), TopicSpec(dst, partitions=3)])
    await _preload(conn, src, count, size)
    kw = conn.client_kwargs()
    group = f"bench-relay-{tag}"
    consumer = AIOKafkaConsumer(
        src,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=4 << 20,
        **kw,
    )
    producer = AIOKafkaProducer(
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        retry_backoff_ms=10,
        transactional_id=f"bench-relay-{tag}" if transactional else None,
        **kw,
    )
    await consumer.start()
    await producer.start()
    try:
        while not consumer.assignment():  # noqa: ASYNC110 - aiokafka offers no event for it
            await asyncio.sleep(0.05)
        moved = transactions = 0
        t0 = cpu0 = broker0 = None
        deadline = time.monotonic() + 300
        while moved < count and time.monotonic() < deadline:
            batch = await consumer.getmany(
                timeout_ms=500, max_records=per_transaction if transactional else 10000
            )
            if not batch:
                continue
            if t0 is None:
                t0, cpu0, broker0 = (
                    time.perf_counter(),
                    time.process_time(),
                    _broker_cpu(broker_pid),
                )
            if transactional:
                async with producer.transaction():
                    futs = [
                        await producer.send(dst, r.value, key=r.key)
                        for rs in batch.values()
                        for r in rs
                    ]
                    offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
                    await producer.send_offsets_to_transaction(offsets, group)
                transactions += 1
                moved += len(futs)
            else:
                for rs in batch.values():
                    for r in rs:
                        await producer.send(dst, r.value, key=r.key)  # acks: flush() below
                moved += sum(len(rs) for rs in batch.values())
        await producer.flush()  # every record acked: the relay's work is done
        if t0 is None or cpu0 is None or broker0 is None:
            raise RuntimeError("the relay fetched nothing")
        elapsed = time.perf_counter() - t0
        relay_cpu = time.process_time() - cpu0
        broker_cpu = _broker_cpu(broker_pid) - broker0
    finally:
        await producer.stop()
        await consumer.stop()
    if moved < count:
        raise RuntimeError(f"the relay moved {moved} of {count} records in 300 s")
    return {
        "records": count,
        "payload_bytes": size,
        "transactional": transactional,
        "transactions": transactions,
        "relay_msgs_per_s": count / elapsed,
        "elapsed_s": elapsed,
        "cpu_ms_per_msg_relay": relay_cpu / count * 1000,
        "cpu_ms_per_msg_broker": broker_cpu / count * 1000,
    }
