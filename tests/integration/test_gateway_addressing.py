"""A gateway refuses a validly signed and attested delivery that excludes it (issue 17, item 5).

The router is played by ``Router.deliver`` called with a recipient list the
signed header does not allow (what a buggy or compromised router could
produce): the envelope verifies end to end (sender signature, attestation,
wrap), and JP's gateway still refuses it with ``not_addressed``, keeps it in
its rejected list, counts it, and stores only the genuine delivery.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _gateway_world import STORE, Api, bearer, delivery, make_world, produce, wait_until

from i24net.clock import system_clock
from i24net.envelope import Receiver, Recipients
from i24net.errors import Reason, VerificationError
from i24net.gateway import Gateway
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.replay import ReplayWindow

pytestmark = pytest.mark.kafka


async def test_a_delivery_that_excludes_the_gateway_is_refused(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    w = make_world(tmp_path, unique_name("t"), ("FR", "GS", "JP", "BR"))
    await ensure_topics(kafka_conn, [TopicSpec(f"{w.prefix}.out"), TopicSpec(f"{w.prefix}.in.JP")])
    settings = w.settings("JP", kafka_conn.bootstrap)
    headers = bearer(settings)
    d = w.directory
    excluded_id, excluded = delivery(w, d, recipients=Recipients.all(), excluded=("JP",))
    unlisted_id, unlisted = delivery(w, d, recipients=Recipients.to("BR"))
    good_id, good = delivery(w, d, recipients=Recipients.to("BR", "JP"))
    # Signature, time, replay and attestation (steps 4-8) all pass: the refusal is step 9a.
    for data in (excluded, unlisted):
        rx = Receiver(w.secrets["JP"], d, ReplayWindow(clock=system_clock), store=STORE)
        with pytest.raises(VerificationError) as e:
            rx.open(data)
        assert e.value.reason is Reason.NOT_ADDRESSED

    async with (
        Gateway(settings) as jp,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp.port}", headers=headers) as h,
    ):
        api = Api(h)
        await produce(kafka_conn, settings.in_topic, excluded, unlisted, good)

        async def settled() -> bool:
            return await api.count(api.rejected, 2) and await api.count(api.inbox, 1)

        await wait_until(settled, 60, "two refusals and one stored message")
        assert await api.rejected() == ["not_addressed", "not_addressed"]
        inbox = await api.inbox()
        assert inbox == [good_id]
        assert excluded_id not in inbox and unlisted_id not in inbox
        assert await api.metric(
            'i24net_gateway_verification_failures_total{reason="not_addressed"} 2.0'
        )
