"""The router's replay window is exactly as durable as its deliveries (issue 11, item 7).

Each routing transaction also writes the message ids it made final to
``i24.router.seen``; a router restores its window from that changelog at start
and reads it to the end on every partition assignment. So a replay is refused
``replayed`` at the router even when the instance lost its SQLite copy (a
crash between the Kafka commit and the SQLite write) or when the partition
moved to another instance with a state directory of its own.
"""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from i24net.router.testing import hints

pytestmark = pytest.mark.kafka


async def deliver_once(w: Any) -> tuple[Any, bytes]:
    h, data = w.message("theft of a bicycle")
    await w.send(data, list(hints(h)))
    assert w.msgids(await w.read(w.topics.inbox("JP"), 1)) == [h.message_id]
    return h, data


async def assert_replay_refused(w: Any, r: Any, h: Any, data: bytes) -> None:
    await w.send(data, list(hints(h)))
    (dead,) = await w.read(w.topics.dlq, 1)
    assert dict(dead.headers)["i24-reason"] == b"replayed"
    assert r.refusals("replayed") == 1
    assert w.msgids(await w.read(w.topics.inbox("JP"), 1)) == [h.message_id]  # still once


async def test_a_replay_after_the_router_lost_its_state_is_refused(router_world: Any) -> None:
    w = router_world
    a = await w.router("a")
    h, data = await deliver_once(w)
    await a.close()
    shutil.rmtree(w.tmp / "state-a")  # the SQLite copy of the window is gone
    again = await w.router("a")
    await assert_replay_refused(w, again, h, data)


async def test_a_replay_on_another_instance_is_refused(router_world: Any) -> None:
    w = router_world
    a = await w.router("a")
    h, data = await deliver_once(w)
    await a.close()
    b = await w.router("b")  # its own, empty state directory
    assert b.app.replay.seen(h.message_id)
    await assert_replay_refused(w, b, h, data)
