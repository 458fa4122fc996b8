"""A gateway opens deliveries queued before its key rotation, then destroys the old key (issue 17).

JP's delivery is wrapped to JP's old encryption key and queued in
``<prefix>.in.JP``; the GS then publishes JP's new key (serial 2) and JP's
gateway starts on the new key file with the old one under
``keys.previous``. The queued delivery is stored; when the gateway's clock
passes the new key's ``valid_from_ms`` + ``keys.previous_grace_s``, the old
key file is overwritten and removed and the destruction is counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from i24net.clock import system_clock
from i24net.directory import Directory, KeyRecord, StationRecord
from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.gateway import Gateway, parse_settings
from i24net.gateway.auth import create_integrator
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import RootSecrets, StationSecrets, save_root, save_station
from i24net.replay import ReplayWindow
from i24net.schemas import SchemaStore
from i24net.stations import station

pytestmark = pytest.mark.kafka

STORE = SchemaStore.default()
PM = {"subject_line": "s", "text": "t", "attachments": [], "in_reply_to": None}
GRACE_S = 3600


def delivery(secrets: dict[str, StationSecrets], d: Directory, text: str) -> tuple[str, bytes]:
    now = system_clock()
    h = Header(
        message_id=new_message_id(now),
        sender="FR",
        sender_key_id=secrets["FR"].signing_key_id,
        recipients=Recipients.to("JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + 2 * GRACE_S * 1000,
        language=Language.EN,
        payload_fingerprint=STORE.fingerprint("net.i24.PoliceMessage"),
    )
    payload = STORE.encode_single(
        "net.i24.PoliceMessage", {**PM, "text": text, "case_reference": None}
    )
    env = Sender(secrets["FR"], d.current_encryption_key("GS", now), store=STORE).seal(h, payload)
    router = Router(secrets["GS"], d, ReplayWindow(clock=system_clock), store=STORE)
    return h.message_id, router.deliver(router.open(env), ["JP"])["JP"]


async def wait_until(pred: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll ``pred`` (a state of the gateway) until it holds, or fail at the deadline."""
    deadline = time.monotonic() + seconds
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_queued_delivery_to_the_old_key_is_stored_then_the_old_key_destroyed(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    from aiokafka import AIOKafkaProducer

    prefix = unique_name("t")
    t0 = system_clock() - 60_000
    keys = tmp_path / "keys"
    root = RootSecrets.generate(now_ms=t0)
    save_root(root, keys)
    secrets = {c: StationSecrets.generate(c, now_ms=t0) for c in ("FR", "GS", "JP")}
    for s in secrets.values():
        save_station(s, keys)
    old_path = keys / "JP.secret.json"
    before = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=t0, issued_ms=t0)
        for c, s in secrets.items()
    )
    queued_id, queued = delivery(secrets, before, "wrapped to the old key")

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
    (tmp_path / "entries").mkdir()
    for code, e in after.sign(root, STORE).items():
        (tmp_path / "entries" / f"{code}.entry").write_bytes(e)
    fresh_id, fresh = delivery(secrets, after, "wrapped to the new key")

    await ensure_topics(kafka_conn, [TopicSpec(f"{prefix}.out"), TopicSpec(f"{prefix}.in.JP")])
    settings = parse_settings(
        {
            "station": "JP",
            "data_dir": str(tmp_path / "gw-JP"),
            "shutdown_grace_s": 5,
            "keys": {
                "secret": str(new_path),
                "root_public": str(keys / "gs-root.public.json"),
                "previous": [str(old_path)],
                "previous_grace_s": GRACE_S,
            },
            "directory": {"entries": str(tmp_path / "entries")},
            "kafka": {
                "bootstrap": kafka_conn.bootstrap,
                "topic_prefix": prefix,
                "request_timeout_ms": 5000,
            },
            "api": {"port": 0},
        }
    )
    producer = AIOKafkaProducer(**kafka_conn.client_kwargs(), max_request_size=2 << 20)
    await producer.start()
    try:  # both queued before the gateway starts
        for data in (queued, fresh):
            await producer.send_and_wait(settings.in_topic, data)
    finally:
        await producer.stop()
    token = create_integrator(
        tmp_path / "gw-JP" / "integrators.sqlite3",
        "tester",
        ["inbox:read", "operator"],
        rate_per_s=1000,
        burst=1000,
    )
    shift = [0]

    def clock() -> int:
        return system_clock() + shift[0]

    async with (
        Gateway(settings, clock=clock) as jp_gw,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{jp_gw.port}",
            headers={"Authorization": f"Bearer {token}"},
        ) as h,
    ):

        async def stored() -> bool:
            return len((await h.get("/v1/inbox")).json()["messages"]) >= 2

        await wait_until(stored, 60, "both deliveries stored")
        inbox = {m["message_id"] for m in (await h.get("/v1/inbox")).json()["messages"]}
        assert inbox == {queued_id, fresh_id}
        assert (await h.get("/v1/rejected")).json()["rejected"] == []
        assert old_path.exists()
        metrics = (await h.get("/metrics")).text
        assert "i24net_gateway_previous_encryption_keys 1.0" in metrics

        shift[0] = GRACE_S * 1000  # the grace period after `rotated` is over

        async def destroyed() -> bool:
            return not old_path.exists()

        await wait_until(destroyed, 30, "the old key file destroyed")
        metrics = (await h.get("/metrics")).text
        assert "i24net_gateway_encryption_keys_destroyed_total 1.0" in metrics
        assert "i24net_gateway_previous_encryption_keys 0.0" in metrics
        assert new_path.exists()
