"""A gateway following the directory topic (``follow_topic``) against the real broker.

The gateway is started with the entry files and the topic; then stations are
added, re-keyed and revoked **on the topic only**, and envelopes delivered to
its in topic (sealed by a test ``Router``, as the GS router would) must be
verified, or refused, by the directory the gateway picked up while running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from i24net.clock import system_clock
from i24net.directory import (
    MANIFEST_KEY,
    Directory,
    KeyRecord,
    StationRecord,
    Status,
    publish,
    sign_manifest,
    sign_record,
)
from i24net.envelope import Header, Language, Precedence, Recipients, Router, Sender, new_message_id
from i24net.gateway import Gateway, Settings, parse_settings
from i24net.gateway.auth import create_integrator
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import RootSecrets, StationSecrets, save_root, save_station
from i24net.replay import ReplayWindow
from i24net.schemas import SchemaStore
from i24net.stations import station

pytestmark = pytest.mark.kafka

STORE = SchemaStore.default()
STATIONS = ("FR", "GS", "JP")
PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}


def authorised(gw: Gateway) -> dict[str, str]:
    """The ``Authorization`` header of a new integrator of ``gw`` with every scope."""
    scopes = ["send", "inbox:read", "status:read", "operator"]
    token = create_integrator(gw.settings.integrators_path, "tester", scopes)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    dir: Path
    prefix: str
    topic: str
    root: RootSecrets
    secrets: dict[str, StationSecrets]
    directory: Directory
    t0: int

    def settings(self, code: str, bootstrap: str) -> Settings:
        return parse_settings(
            {
                "station": code,
                "data_dir": str(self.dir / f"gw-{code}"),
                "shutdown_grace_s": 5,
                "keys": {
                    "secret": str(self.dir / "keys" / f"{code}.secret.json"),
                    "root_public": str(self.dir / "keys" / "gs-root.public.json"),
                },
                "directory": {
                    "entries": str(self.dir / "entries"),
                    "follow_topic": True,
                    "topic": self.topic,
                    "start_wait_s": 30,
                },
                "kafka": {
                    "bootstrap": bootstrap,
                    "topic_prefix": self.prefix,
                    "request_timeout_ms": 5000,
                },
                "api": {"port": 0},
                "outbox": {"retry_backoff_s": 0.5},
            }
        )

    def record(self, st: StationSecrets, serial: int = 1) -> StationRecord:
        r = StationRecord.for_station(
            station(st.station), [st.public()], valid_from_ms=self.t0, issued_ms=self.t0
        )
        return dataclasses.replace(r, serial=serial)


@pytest.fixture
async def world(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> World:
    t0 = system_clock() - 60_000
    keys = tmp_path / "keys"
    root = RootSecrets.generate(now_ms=t0)
    save_root(root, keys)
    secrets = {c: StationSecrets.generate(c, now_ms=t0) for c in STATIONS}
    for s in secrets.values():
        save_station(s, keys)
    w = World(
        tmp_path, unique_name("t"), unique_name("directory"), root, secrets, Directory(()), t0
    )
    w.directory = Directory([w.record(s) for s in secrets.values()])
    (tmp_path / "entries").mkdir()
    for code, e in w.directory.sign(root, STORE).items():
        (tmp_path / "entries" / f"{code}.entry").write_bytes(e)
    # the shared ingress topic the gateways write, and each station's in topic
    specs = [TopicSpec(f"{w.prefix}.out", 3)] + [TopicSpec(f"{w.prefix}.in.{c}") for c in STATIONS]
    specs.append(TopicSpec(w.topic, 3, config={"cleanup.policy": "compact"}))
    await ensure_topics(kafka_conn, specs)
    await produce(kafka_conn, w.topic, w.directory.entries)  # what the GS published
    return w


async def produce(conn: KafkaConnection, topic: str, entries: dict[str, bytes]) -> None:
    producer = AIOKafkaProducer(
        enable_idempotence=True, acks="all", max_request_size=2 << 20, **conn.client_kwargs()
    )
    await producer.start()
    try:
        await publish(producer, entries, topic=topic)
    finally:
        await producer.stop()


def delivery(
    w: World, routed_by: Directory, sender: StationSecrets, to: str = "JP"
) -> tuple[str, bytes]:
    """An envelope from ``sender`` to ``to``, routed by a GS whose directory is ``routed_by``."""
    now = system_clock()
    h = Header(
        message_id=new_message_id(now),
        sender=sender.station,
        sender_key_id=sender.signing_key_id,
        recipients=Recipients.to(to),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + 3_600_000,
        language=Language.EN,
        payload_fingerprint=STORE.fingerprint("net.i24.PoliceMessage"),
    )
    payload = STORE.encode_single(
        "net.i24.PoliceMessage", {**PM, "in_reply_to": None, "case_reference": None}
    )
    router = Router(w.secrets["GS"], routed_by, ReplayWindow(clock=system_clock), store=STORE)
    env = Sender(sender, routed_by.current_encryption_key("GS", now), store=STORE).seal(h, payload)
    return h.message_id, router.deliver(router.open(env), [to])[to]


async def to_in_topic(conn: KafkaConnection, gw: Gateway, *values: bytes) -> None:
    producer = AIOKafkaProducer(max_request_size=2 << 20, **conn.client_kwargs())
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(gw.settings.in_topic, v)
    finally:
        await producer.stop()


async def wait_until(pred: Callable[[], Any], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Api:
    def __init__(self, h: httpx.AsyncClient) -> None:
        self.h = h

    async def inbox(self) -> list[str]:
        return [m["message_id"] for m in (await self.h.get("/v1/inbox")).json()["messages"]]

    async def rejected(self) -> list[str]:
        return [r["reason"] for r in (await self.h.get("/v1/rejected")).json()["rejected"]]

    async def ready(self) -> bool:
        return (await self.h.get("/readyz")).status_code == 200

    async def metric(self, line: str) -> bool:
        return line in (await self.h.get("/metrics")).text


async def test_station_added_and_rekeyed_on_the_topic_after_start(
    world: World, kafka_conn: KafkaConnection
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
        Gateway(w.settings("JP", kafka_conn.bootstrap)) as jp,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp.port}", headers=authorised(jp)) as h,
    ):
        api = Api(h)
        assert jp.follower is not None and jp.follower.caught_up.is_set()
        await wait_until(api.ready, 30, "ready (the directory check passes once read)")
        assert await api.metric('i24net_gateway_directory_updates_total{outcome="unchanged"} 3.0')
        # before the change: the new key and the new station are unknown here
        _, early = delivery(w, later, fr_new)
        await to_in_topic(kafka_conn, jp, early)
        await wait_until(lambda: _n(api.rejected(), 1), 30, "the early envelope refused")
        assert await api.rejected() == ["unknown_key"]

        await produce(
            kafka_conn,
            w.topic,
            {"FR": sign_record(fr2, w.root, STORE), "DE": sign_record(w.record(de), w.root, STORE)},
        )
        await wait_until(
            lambda: "DE" in jp.directory() and jp.directory().record("FR").serial == 2,
            30,
            "the topic's changes applied",
        )
        from_new_key, env1 = delivery(w, later, fr_new)
        from_old_key, env2 = delivery(w, later, w.secrets["FR"])  # the overlap: both verify
        from_de, env3 = delivery(w, later, de)
        await to_in_topic(kafka_conn, jp, env1, env2, env3)
        await wait_until(lambda: _n(api.inbox(), 3), 30, "three messages stored")
        assert await api.inbox() == [from_new_key, from_old_key, from_de]
        assert await api.rejected() == ["unknown_key"]
        assert await api.metric('i24net_gateway_directory_updates_total{outcome="applied"} 2.0')
        assert await api.metric("i24net_gateway_directory_serial 2.0")
        assert await api.metric("i24net_gateway_directory_stations 4.0")


async def test_revocation_on_the_topic_rejects_later_envelopes(
    world: World, kafka_conn: KafkaConnection
) -> None:
    w = world
    fr = w.secrets["FR"]
    async with (
        Gateway(w.settings("JP", kafka_conn.bootstrap)) as jp,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp.port}", headers=authorised(jp)) as h,
    ):
        api = Api(h)
        before, env = delivery(w, w.directory, fr)
        await to_in_topic(kafka_conn, jp, env)
        await wait_until(lambda: _n(api.inbox(), 1), 30, "the message before the revocation")

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
        await produce(kafka_conn, w.topic, {"FR": good})
        # then noise on the topic: a replay of the older record, a forgery, garbage
        await produce(kafka_conn, w.topic, {"FR": w.directory.entries["FR"]})
        await produce(kafka_conn, w.topic, {"FR": bytes(forged)})
        await produce(kafka_conn, w.topic, {"JP": b"garbage"})

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
        after, env = delivery(w, w.directory, fr)
        await to_in_topic(kafka_conn, jp, env)
        await wait_until(lambda: _n(api.rejected(), 1), 30, "the envelope after the revocation")
        assert await api.rejected() == ["revoked_key"]
        assert await api.inbox() == [before]
        assert await api.metric(
            'i24net_gateway_verification_failures_total{reason="revoked_key"} 1.0'
        )
        assert await api.ready()  # still running, still ready
        assert after not in await api.inbox()


async def _n(coro: Any, n: int) -> bool:
    return len(await coro) >= n


async def test_compacted_rollback_to_before_a_revocation_is_not_trusted(
    world: World, kafka_conn: KafkaConnection
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
    w.topic = f"{w.topic}.compacted"
    await ensure_topics(kafka_conn, [TopicSpec(w.topic, 3, config={"cleanup.policy": "compact"})])
    await produce(kafka_conn, w.topic, {**w.directory.entries})
    producer = AIOKafkaProducer(**kafka_conn.client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(w.topic, manifest, key=MANIFEST_KEY.encode())
    finally:
        await producer.stop()
    async with (
        Gateway(w.settings("JP", kafka_conn.bootstrap)) as jp,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp.port}", headers=authorised(jp)) as h,
    ):
        api = Api(h)
        assert jp.follower is not None and jp.follower.caught_up.is_set()
        assert "FR" not in jp.directory() and "FR" in jp.follower.reader.withheld
        assert await api.metric("i24net_gateway_directory_withheld_stations 1.0")
        assert await api.metric("i24net_gateway_directory_manifest_version 2.0")
        assert await api.metric('i24net_gateway_directory_updates_total{outcome="manifest"} 1.0')
        assert not jp.follower.stale and not jp.follower.unprotected
        _, env = delivery(w, w.directory, fr)  # routed by a GS that was rolled back too
        await to_in_topic(kafka_conn, jp, env)
        await wait_until(lambda: _n(api.rejected(), 1), 30, "the envelope from FR refused")
        assert await api.rejected() == ["unknown_sender"]
        assert await api.inbox() == []

        # the GS re-publishes the current entry: FR is back, revoked
        await produce(kafka_conn, w.topic, {"FR": after.entries["FR"]})
        await wait_until(
            lambda: "FR" in jp.directory() and jp.directory().record("FR").serial == 2,
            30,
            "the revoked entry applied",
        )
        assert await api.metric("i24net_gateway_directory_withheld_stations 0.0")
