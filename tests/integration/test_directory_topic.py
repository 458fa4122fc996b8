"""The signed directory on a real log-compacted topic: publish, read back, refuse rollback."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, World, make_world

from i24net.directory import Directory, publish, read_all
from i24net.errors import DirectoryError
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics

pytestmark = pytest.mark.kafka


async def _topic(conn: KafkaConnection, unique_name: Callable[[str], str]) -> str:
    topic = unique_name("directory")
    spec = TopicSpec(topic, partitions=3, config={"cleanup.policy": "compact"})
    assert await ensure_topics(conn, [spec]) == [topic]
    return topic


async def _publish(conn: KafkaConnection, topic: str, entries: dict[str, bytes]) -> None:
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **conn.client_kwargs())
    await producer.start()
    try:
        await publish(producer, entries, topic=topic)
    finally:
        await producer.stop()


async def _read(conn: KafkaConnection, topic: str, w: World) -> Directory:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **conn.client_kwargs())
    await consumer.start()
    try:
        return await read_all(consumer, w.root.public, w.store, topic=topic)
    finally:
        await consumer.stop()


async def test_published_directory_reads_back_and_verifies(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    w = make_world()
    topic = await _topic(kafka_conn, unique_name)
    await _publish(kafka_conn, topic, w.directory.entries)
    d = await _read(kafka_conn, topic, w)
    assert list(d) == list(w.directory)
    assert d.entries == w.directory.entries
    d.verify(w.root.public, w.store)
    fr = w.secrets["FR"]
    assert bytes(d.signing_key("FR", fr.signing_key_id, T0)) == bytes(fr.signing.verify_key)


async def test_a_republished_lower_serial_is_refused(
    kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    w = make_world()
    topic = await _topic(kafka_conn, unique_name)
    old_fr = w.directory.entries["FR"]
    await _publish(kafka_conn, topic, w.directory.entries)
    w.directory.put(dataclasses.replace(w.directory.record("FR"), serial=2))
    new_fr = w.directory.sign(w.root, w.store)["FR"]
    await _publish(kafka_conn, topic, {"FR": new_fr})
    d = await _read(kafka_conn, topic, w)
    assert d.record("FR").serial == 2 and d.entries["FR"] == new_fr

    await _publish(kafka_conn, topic, {"FR": old_fr})  # replay of a genuine, older record
    with pytest.raises(DirectoryError, match="rollback"):
        await _read(kafka_conn, topic, w)
