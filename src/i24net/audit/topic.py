"""Reading ``i24.audit`` from Kafka (read_committed), for verification and recovery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from i24net.audit._chain import TOPIC
from i24net.audit._verify import RawRecord


async def read_records(consumer: Any, *, topic: str = TOPIC) -> AsyncIterator[RawRecord]:
    """Every committed record of ``topic`` from the beginning to its end at call time.

    ``consumer`` must be started, unsubscribed, ``isolation_level="read_committed"``.
    """
    from aiokafka import TopicPartition

    await consumer.topics()  # refreshes metadata
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
