"""A gateway opens deliveries queued before its key rotation, then destroys the old key (issue 17).

JP's delivery is wrapped to JP's old encryption key and queued in
``<prefix>.in.JP``; the GS then publishes JP's new key (serial 2) and JP's
gateway starts on the new key file with the old one under
``keys.previous``. The queued delivery is stored; when the gateway's clock
passes the new key's ``valid_from_ms`` + ``keys.previous_grace_s``, the old
key file is overwritten and removed and the destruction is counted.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _gateway_world import Api, bearer, delivery, make_world, produce, wait_until

from i24net.clock import system_clock
from i24net.directory import Directory, KeyRecord
from i24net.gateway import Gateway
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import StationSecrets, save_station

pytestmark = pytest.mark.kafka

GRACE_S = 3600
TTL_MS = 2 * GRACE_S * 1000


async def test_a_queued_delivery_to_the_old_key_is_stored_then_the_old_key_destroyed(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    w = make_world(tmp_path, unique_name("t"), ("FR", "GS", "JP"))
    old_path = tmp_path / "keys" / "JP.secret.json"
    before = w.directory
    queued_id, queued = delivery(w, before, text="wrapped to the old key", ttl_ms=TTL_MS)

    # The rotation: JP's new keys, published as JP's record serial 2.
    rotated = system_clock() - 1000
    new = StationSecrets.generate("JP", now_ms=rotated)
    new_path, _ = save_station(new, tmp_path / "new")
    jp = before.record("JP")
    after = Directory(
        [
            *(r for r in before if r.station != "JP"),
            dataclasses.replace(
                jp,
                serial=2,
                signing_keys=(
                    *jp.signing_keys,
                    KeyRecord(new.signing_key_id, bytes(new.signing.verify_key), rotated),
                ),
                encryption_keys=(
                    dataclasses.replace(jp.encryption_keys[0], valid_until_ms=rotated),
                    KeyRecord(new.encryption_key_id, bytes(new.encryption.public_key), rotated),
                ),
            ),
        ]
    )
    w.write_entries(after)
    fresh_id, fresh = delivery(w, after, text="wrapped to the new key", ttl_ms=TTL_MS)

    await ensure_topics(kafka_conn, [TopicSpec(f"{w.prefix}.out"), TopicSpec(f"{w.prefix}.in.JP")])
    settings = w.settings(
        "JP",
        kafka_conn.bootstrap,
        keys={"secret": str(new_path), "previous": [str(old_path)], "previous_grace_s": GRACE_S},
    )
    await produce(kafka_conn, settings.in_topic, queued, fresh)  # before the gateway starts
    headers = bearer(settings)
    shift = [0]

    def clock() -> int:
        return system_clock() + shift[0]

    async with (
        Gateway(settings, clock=clock) as jp_gw,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp_gw.port}", headers=headers) as h,
    ):
        api = Api(h)
        await wait_until(lambda: api.count(api.inbox, 2), 60, "both deliveries stored")
        assert set(await api.inbox()) == {queued_id, fresh_id}
        assert await api.rejected() == []
        assert old_path.exists()
        assert await api.metric("i24net_gateway_previous_encryption_keys 1.0")

        shift[0] = GRACE_S * 1000  # the grace period after `rotated` is over
        await wait_until(lambda: not old_path.exists(), 30, "the old key file destroyed")
        assert await api.metric("i24net_gateway_encryption_keys_destroyed_total 1.0")
        assert await api.metric("i24net_gateway_previous_encryption_keys 0.0")
        assert new_path.exists()
