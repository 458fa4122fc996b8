"""Reading the whole ``i24.audit`` topic for a report (the same reader ``i24net audit
verify`` uses: read_committed, from the beginning to the end at call time)."""

from __future__ import annotations

from typing import Any

from i24net.audit import RawRecord, read_records


async def read_audit(conn: Any, topic: str) -> list[RawRecord]:
    """Every committed record of ``topic``; ``conn`` is a ``KafkaConnection``."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        **conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await c.start()
    try:
        return [r async for r in read_records(c, topic=topic)]
    finally:
        await c.stop()
