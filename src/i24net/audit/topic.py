"""Reading ``i24.audit`` from Kafka (read_committed), for verification and recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from i24net.audit._chain import TOPIC
from i24net.audit._verify import RawRecord


async def prime(consumer: Any, topics: list[str]) -> None:
    """Load metadata of ``topics`` into an unsubscribed consumer.

    aiokafka bootstraps with an empty metadata request (no topics), so
    ``partitions_for_topic`` knows nothing of a topic the consumer never
    subscribed to; it has no public call to fix that, hence the client's
    ``add_topic`` (which returns a future resolved after the update).
    """
    for topic in topics:
        await consumer._client.add_topic(topic)


async def read_records(consumer: Any, *, topic: str = TOPIC) -> AsyncIterator[RawRecord]:
    """Every committed record of ``topic`` from the beginning to its end at call time.

    ``consumer`` must be started, unsubscribed, ``isolation_level="read_committed"``.
    """
    from aiokafka import TopicPartition

    await prime(consumer, [topic])
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    if not tps:
        return
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    pending = {tp for tp in tps if end[tp] > 0}
    while pending:
        for tp in list(pending):
            if await consumer.position(tp) >= end[tp]:
                pending.discard(tp)
        if not pending:
            break
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            for rec in records:
                if rec.offset >= end[tp]:
                    pending.discard(tp)
                    break
                yield RawRecord(
                    rec.offset, rec.key, rec.value, tuple((k, bytes(v)) for k, v in rec.headers)
                )
