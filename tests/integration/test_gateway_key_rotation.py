"""A gateway opens deliveries queued before its key rotation, then destroys the old key (issue 17).

In envelope v1 (the wrap to JP's old X25519 key) and in v2 (the HPKE wrap to JP's old
KEM key): a key file holds both keys of a key set, and both go at once.

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

from _gateway_world import (
    PM,
    STORE,
    Api,
    GatewayWorld,
    bearer,
    delivery,
    make_world,
    produce,
    wait_until,
)

from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Recipients,
    Router,
    Sender,
    envelope_version,
    new_message_id,
)
from i24net.gateway import Gateway
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import StationSecrets, save_station
from i24net.replay import ReplayWindow
from i24net.stations import station

pytestmark = pytest.mark.kafka

GRACE_S = 3600
TTL_MS = 2 * GRACE_S * 1000


def delivery_v2(w: GatewayWorld, routed_by: Directory, text: str) -> tuple[str, bytes]:
    """FR -> JP in envelope v2: sealed to the GS's v2 key, wrapped by the GS to JP's current
    KEM key in ``routed_by`` (what the router does for a v2 message)."""
    now = system_clock()
    fr = w.secrets["FR"]
    h = Header(
        message_id=new_message_id(now),
        sender="FR",
        sender_key_id=fr.signing_key_id,
        recipients=Recipients.to("JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + TTL_MS,
        language=Language.EN,
        payload_fingerprint=STORE.fingerprint("net.i24.PoliceMessage"),
    )
    payload = STORE.encode_single("net.i24.PoliceMessage", {**PM, "text": text})
    gs_key = routed_by.current_encryption_key("GS", now, version=2)
    env = Sender(fr, gs_key, store=STORE).seal(h, payload)
    router = Router(w.secrets["GS"], routed_by, ReplayWindow(clock=system_clock), store=STORE)
    out = router.deliver(router.open(env), ["JP"])["JP"]
    assert envelope_version(out) == 2
    return h.message_id, out


@pytest.mark.parametrize("version", [1, 2])
async def test_a_queued_delivery_to_the_old_key_is_stored_then_the_old_key_destroyed(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str], version: int
) -> None:
    w = make_world(tmp_path, unique_name("t"), ("FR", "GS", "JP"))
    old_path = tmp_path / "keys" / "JP.secret.json"
    before = w.directory

    def make(d: Directory, text: str) -> tuple[str, bytes]:
        if version == 2:
            return delivery_v2(w, d, text)
        return delivery(w, d, text=text, ttl_ms=TTL_MS)

    queued_id, queued = make(before, "wrapped to the old key")

    # The rotation: JP's new key set (v1 key and v2 KEM key), published as JP's record
    # serial 2: the old encryption keys until `rotated`, the new ones from then.
    rotated = system_clock() - 1000
    new = StationSecrets.generate("JP", now_ms=rotated)
    new_path, _ = save_station(new, tmp_path / "new")
    jp = before.record("JP")
    fresh_keys = StationRecord.for_station(
        station("JP"), [new.public()], valid_from_ms=rotated, issued_ms=rotated
    )
    after = Directory(
        [
            *(r for r in before if r.station != "JP"),
            dataclasses.replace(
                jp,
                serial=2,
                signing_keys=(*jp.signing_keys, *fresh_keys.signing_keys),
                encryption_keys=(
                    *(dataclasses.replace(k, valid_until_ms=rotated) for k in jp.encryption_keys),
                    *fresh_keys.encryption_keys,
                ),
            ),
        ]
    )
    w.write_entries(after)
    fresh_id, fresh = make(after, "wrapped to the new key")

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
        assert await api.metric(f'i24net_gateway_envelopes_opened_total{{version="{version}"}} 2.0')

        shift[0] = GRACE_S * 1000  # the grace period after `rotated` is over
        await wait_until(lambda: not old_path.exists(), 30, "the old key file destroyed")
        assert await api.metric("i24net_gateway_encryption_keys_destroyed_total 1.0")
        assert await api.metric("i24net_gateway_previous_encryption_keys 0.0")
        assert new_path.exists()
