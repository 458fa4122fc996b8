"""A gateway following the directory topic (``follow_topic``) against the real broker.

The gateway is started with the entry files and the topic; then stations are
added, re-keyed and revoked **on the topic only**, and envelopes delivered to
its in topic (sealed by a test ``Router``, as the GS router would) must be
verified, or refused, by the directory the gateway picked up while running.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).parent))

from _gateway_world import (
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
from i24net.directory import (
    MANIFEST_KEY,
    Directory,
    KeyRecord,
    Status,
    publish,
    sign_manifest,
    sign_record,
)
from i24net.gateway import Gateway
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import StationSecrets

pytestmark = pytest.mark.kafka

STATIONS = ("FR", "GS", "JP")


@pytest.fixture
async def world(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> GatewayWorld:
    w = make_world(tmp_path, unique_name("t"), STATIONS)
    w.directory_topic = unique_name("directory")
    # the shared ingress topic the gateways write, and each station's in topic
    specs = [TopicSpec(f"{w.prefix}.out", 3)] + [TopicSpec(f"{w.prefix}.in.{c}") for c in STATIONS]
    specs.append(TopicSpec(w.directory_topic, 3, config={"cleanup.policy": "compact"}))
    await ensure_topics(kafka_conn, specs)
    await publish_entries(kafka_conn, w, w.directory.entries)  # the GS's
    return w


def gateway(w: GatewayWorld, kafka_conn: KafkaConnection) -> Gateway:
    """JP's gateway, following the world's directory topic."""
    return Gateway(w.settings("JP", kafka_conn.bootstrap, outbox={"retry_backoff_s": 0.5}))


def client(jp: Gateway) -> httpx.AsyncClient:
    """A client of ``jp``'s API as a new integrator with every scope."""
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp.port}", headers=bearer(jp.settings))


async def publish_entries(
    conn: KafkaConnection, w: GatewayWorld, entries: dict[str, bytes]
) -> None:
    """What the GS publishes on the world's directory topic."""
    assert w.directory_topic is not None
    producer = AIOKafkaProducer(
        enable_idempotence=True, acks="all", max_request_size=2 << 20, **conn.client_kwargs()
    )
    await producer.start()
    try:
        await publish(producer, entries, topic=w.directory_topic)
    finally:
        await producer.stop()


async def test_station_added_and_rekeyed_on_the_topic_after_start(
    world: GatewayWorld, kafka_conn: KafkaConnection
) -> None:
    w = world
    fr_new = StationSecrets.generate("FR", now_ms=w.t0 + 1000)
    de = StationSecrets.generate("DE", now_ms=w.t0)
    old_fr = w.record(w.secrets["FR"])
    fr2 = dataclasses.replace(
        old_fr,
        serial=2,
        signing_keys=old_fr.signing_keys + w.record(fr_new).signing_keys,
        encryption_keys=old_fr.encryption_keys + w.record(fr_new).encryption_keys,
    )
    later = Directory([*(r for r in w.directory if r.station != "FR"), fr2, w.record(de)])
    async with (
        gateway(w, kafka_conn) as jp,
        client(jp) as h,
    ):
        api = Api(h)
        assert jp.follower is not None and jp.follower.caught_up.is_set()
        await wait_until(api.ready, 30, "ready (the directory check passes once read)")
        assert await api.metric('i24net_gateway_directory_updates_total{outcome="unchanged"} 3.0')
        # before the change: the new key and the new station are unknown here
        _, early = delivery(w, later, sender_secrets=fr_new)
        await produce(kafka_conn, jp.settings.in_topic, early)
        await wait_until(lambda: api.count(api.rejected, 1), 30, "the early envelope refused")
        assert await api.rejected() == ["unknown_key"]

        await publish_entries(
            kafka_conn,
            w,
            {"FR": sign_record(fr2, w.root, STORE), "DE": sign_record(w.record(de), w.root, STORE)},
        )
        await wait_until(
            lambda: "DE" in jp.directory() and jp.directory().record("FR").serial == 2,
            30,
            "the topic's changes applied",
        )
        from_new_key, env1 = delivery(w, later, sender_secrets=fr_new)
        from_old_key, env2 = delivery(w, later)  # the overlap: both verify
        from_de, env3 = delivery(w, later, sender_secrets=de)
        await produce(kafka_conn, jp.settings.in_topic, env1, env2, env3)
        await wait_until(lambda: api.count(api.inbox, 3), 30, "three messages stored")
        assert await api.inbox() == [from_new_key, from_old_key, from_de]
        assert await api.rejected() == ["unknown_key"]
        assert await api.metric('i24net_gateway_directory_updates_total{outcome="applied"} 2.0')
        assert await api.metric("i24net_gateway_directory_serial 2.0")
        assert await api.metric("i24net_gateway_directory_stations 4.0")


async def test_revocation_on_the_topic_rejects_later_envelopes(
    world: GatewayWorld, kafka_conn: KafkaConnection
) -> None:
    w = world
    fr = w.secrets["FR"]
    async with (
        gateway(w, kafka_conn) as jp,
        client(jp) as h,
    ):
        api = Api(h)
        before, env = delivery(w, w.directory)
        await produce(kafka_conn, jp.settings.in_topic, env)
        await wait_until(lambda: api.count(api.inbox, 1), 30, "the message before the revocation")

        revoked_at = system_clock()
        old = w.record(fr)
        revoked = dataclasses.replace(
            old,
            serial=2,
            signing_keys=tuple(
                KeyRecord(k.key_id, k.public_key, k.valid_from_ms, None, Status.REVOKED, revoked_at)
                for k in old.signing_keys
            ),
        )
        good = sign_record(revoked, w.root, STORE)
        forged = bytearray(sign_record(dataclasses.replace(revoked, serial=3), w.root, STORE))
        forged[-1] ^= 1  # the last byte of the root signature
        await publish_entries(kafka_conn, w, {"FR": good})
        # then noise on the topic: a replay of the older record, a forgery, garbage
        await publish_entries(kafka_conn, w, {"FR": w.directory.entries["FR"]})
        await publish_entries(kafka_conn, w, {"FR": bytes(forged)})
        await publish_entries(kafka_conn, w, {"JP": b"garbage"})

        async def refused_all() -> bool:
            return all(
                [
                    await api.metric(f'i24net_gateway_directory_updates_total{{outcome="{o}"}} 1.0')
                    for o in ("applied", "rollback", "bad_signature", "malformed")
                ]
            )

        await wait_until(refused_all, 30, "the four topic entries counted")
        assert jp.directory().record("FR").serial == 2
        assert await api.metric("i24net_gateway_directory_serial 2.0")

        # made from the revocation on (a signature at or after revoked_at_ms fails); the
        # router here has not seen the revocation and still delivers: JP refuses
        after, env = delivery(w, w.directory)
        await produce(kafka_conn, jp.settings.in_topic, env)
        await wait_until(
            lambda: api.count(api.rejected, 1), 30, "the envelope after the revocation"
        )
        assert await api.rejected() == ["revoked_key"]
        assert await api.inbox() == [before]
        assert await api.metric(
            'i24net_gateway_verification_failures_total{reason="revoked_key"} 1.0'
        )
        assert await api.ready()  # still running, still ready
        assert after not in await api.inbox()


async def test_compacted_rollback_to_before_a_revocation_is_not_trusted(
    world: GatewayWorld, kafka_conn: KafkaConnection
) -> None:
    """Issue 11 item 4: after compaction the topic holds FR's pre-revocation entry, which
    an attacker re-published over the revocation, and the GS's newest manifest. A gateway
    started on entry files from before the revocation must not trust FR."""
    w = world
    fr = w.secrets["FR"]
    old = w.record(fr)
    revoked = dataclasses.replace(
        old,
        serial=2,
        signing_keys=tuple(
            KeyRecord(k.key_id, k.public_key, k.valid_from_ms, None, Status.REVOKED, w.t0)
            for k in old.signing_keys
        ),
    )
    after = Directory([*(r for r in w.directory if r.station != "FR"), revoked])
    after.sign(w.root, STORE)
    now = system_clock()
    manifest = sign_manifest(
        after.manifest(version=2, issued_ms=now, expires_ms=now + 3_600_000), w.root, STORE
    )
    # what compaction leaves of: entries, manifest v1, FR serial 2, manifest v2, FR serial 1
    w.directory_topic = f"{w.directory_topic}.compacted"
    await ensure_topics(
        kafka_conn, [TopicSpec(w.directory_topic, 3, config={"cleanup.policy": "compact"})]
    )
    await publish_entries(kafka_conn, w, {**w.directory.entries})
    producer = AIOKafkaProducer(**kafka_conn.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(w.directory_topic, manifest, key=MANIFEST_KEY.encode())
    finally:
        await producer.stop()
    async with (
        gateway(w, kafka_conn) as jp,
        client(jp) as h,
    ):
        api = Api(h)
        assert jp.follower is not None and jp.follower.caught_up.is_set()
        assert "FR" not in jp.directory() and "FR" in jp.follower.reader.withheld
        assert await api.metric("i24net_gateway_directory_withheld_stations 1.0")
        assert await api.metric("i24net_gateway_directory_manifest_version 2.0")
        assert await api.metric('i24net_gateway_directory_updates_total{outcome="manifest"} 1.0')
        assert not jp.follower.stale and not jp.follower.unprotected
        _, env = delivery(w, w.directory)  # routed by a GS that was rolled back too
        await produce(kafka_conn, jp.settings.in_topic, env)
        await wait_until(lambda: api.count(api.rejected, 1), 30, "the envelope from FR refused")
        assert await api.rejected() == ["unknown_sender"]
        assert await api.inbox() == []

        # the GS re-publishes the current entry: FR is back, revoked
        await publish_entries(kafka_conn, w, {"FR": after.entries["FR"]})
        await wait_until(
            lambda: "FR" in jp.directory() and jp.directory().record("FR").serial == 2,
            30,
            "the revoked entry applied",
        )
        assert await api.metric("i24net_gateway_directory_withheld_stations 0.0")
