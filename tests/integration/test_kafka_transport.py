"""The transport guarantees i24net builds on, checked against the real broker."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics

pytestmark = pytest.mark.kafka


async def _consume(
    conn: KafkaConnection,
    topic: str,
    count: int,
    *,
    group: str | None = None,
    timeout_ms: int = 20000,
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **conn.client_kwargs(),
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        while len(out) < count:
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch:
                break
            for records in batch.values():
                out.extend(r.value for r in records)
    finally:
        await consumer.stop()
    return out


async def test_idempotent_produce_consume_round_trip(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("rt")
    assert await ensure_topics(kafka_conn, [TopicSpec(topic, partitions=3)]) == [topic]
    assert await ensure_topics(kafka_conn, [TopicSpec(topic, partitions=3)]) == []  # idempotent

    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **kafka_conn.client_kwargs())
    await producer.start()
    try:
        sent = [f"message-{i}".encode() * 40 for i in range(200)]
        futures = [
            await producer.send(topic, value, key=b"k%d" % (i % 7)) for i, value in enumerate(sent)
        ]
        for fut in futures:
            await fut
    finally:
        await producer.stop()

    received = await _consume(kafka_conn, topic, len(sent))
    assert sorted(received) == sorted(sent)
    assert len(received) == len(set(received))


async def test_transactional_consume_produce_is_read_committed(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    src, dst, group = unique_name("src"), unique_name("dst"), unique_name("g")
    await ensure_topics(kafka_conn, [TopicSpec(src), TopicSpec(dst)])

    producer = AIOKafkaProducer(enable_idempotence=True, **kafka_conn.client_kwargs())
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(src, b"in-%d" % i)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        src,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        **kafka_conn.client_kwargs(),
    )
    txp = AIOKafkaProducer(transactional_id=unique_name("tx"), **kafka_conn.client_kwargs())
    await consumer.start()
    await txp.start()
    try:
        relayed = 0
        # One aborted transaction: its records must never be visible read_committed.
        await txp.begin_transaction()
        await txp.send(dst, b"aborted")
        await txp.abort_transaction()
        while relayed < 10:
            batch = await consumer.getmany(timeout_ms=10000)
            assert batch, "source records did not arrive"
            for tp, records in batch.items():
                async with txp.transaction():
                    # Offsets first, then the records (aiokafka #1098, #1004, #905).
                    await txp.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
                    for r in records:
                        await txp.send(dst, r.value.replace(b"in-", b"out-"))
                relayed += len(records)
    finally:
        await txp.stop()
        await consumer.stop()

    # The group's offset moved with the transaction: a restarted relay has nothing left.
    admin = AIOKafkaAdminClient(**kafka_conn.client_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    assert offsets[TopicPartition(src, 0)].offset == 10

    out = await _consume(kafka_conn, dst, 11, timeout_ms=3000)
    assert sorted(out) == sorted(b"out-%d" % i for i in range(10))
