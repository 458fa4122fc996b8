"""Hostile and unlucky records on the real broker: refused with a reason, the stream flows.

Issue 11, items 2 and 3: a null Kafka header once stopped the router for every
station; a delivery larger than its topic's ``max.message.bytes`` was reported
DELIVERED (aiokafka commits over a failed send) while nothing reached the
recipient. Now the first is refused ``malformed``, the second is dead-lettered
``broker_refused`` with a REFUSED notice to its sender, and the records after
each are delivered by the same running router (``router_world`` in conftest.py
fails the test if the router stopped).
"""

from __future__ import annotations

from typing import Any

import pytest

from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.router.settings import Topics
from i24net.router.testing import hints

pytestmark = pytest.mark.kafka
JP_INBOX_MAX_MESSAGE_BYTES = 512 << 10
"""JP's inbox as a hand-made or older provisioning may leave it: smaller than what the
router produces (provision sets 2 MiB and sets a drifted value back)."""


async def test_a_null_header_is_refused_and_the_next_message_is_delivered(
    router_world: Any,
) -> None:
    w = router_world
    r = await w.router()
    bad_h, bad = w.message("theft, with a null kind header")
    await w.send(bad, [(k, None if k == "i24-kind" else v) for k, v in hints(bad_h)])
    good_h, good = w.message("theft, well formed")
    await w.send(good, list(hints(good_h)))
    assert w.msgids(await w.read(w.topics.inbox("JP"), 1)) == [good_h.message_id]
    (dead,) = await w.read(w.topics.dlq, 1)
    assert dict(dead.headers)["i24-reason"] == b"malformed"
    assert r.refusals("malformed") == 1


async def small_jp_inbox(conn: KafkaConnection, topics: Topics) -> None:
    config = {"max.message.bytes": str(JP_INBOX_MAX_MESSAGE_BYTES)}
    await ensure_topics(conn, [TopicSpec(topics.inbox("JP"), 1, config=config)])


@pytest.fixture
def router_world_setup() -> list[Any]:
    return [small_jp_inbox]


async def test_a_delivery_the_broker_refuses_is_dead_lettered_not_reported_delivered(
    router_world: Any,
) -> None:
    w = router_world
    r = await w.router()
    big_h, big = w.message("x" * (600 << 10))
    assert JP_INBOX_MAX_MESSAGE_BYTES < len(big) < r.app.pipeline.max_record_bytes
    await w.send(big, list(hints(big_h)))
    small_h, small = w.message("a small one after it")
    await w.send(small, list(hints(small_h)))
    # JP receives the small one only; the big one is in the DLQ with its reason
    assert w.msgids(await w.read(w.topics.inbox("JP"), 1)) == [small_h.message_id]
    (dead,) = await w.read(w.topics.dlq, 1)
    assert dict(dead.headers)["i24-reason"] == b"broker_refused"
    assert dict(dead.headers)["i24-msgid"] == big_h.message_id.encode()
    # FR is told the truth about both
    notices = await w.notices(2)
    assert notices[big_h.message_id]["status"] == "REFUSED"
    assert notices[big_h.message_id]["reason"] == "broker_refused"
    assert notices[small_h.message_id]["status"] == "DELIVERED"
    assert r.refusals("broker_refused") == 1
