"""Bad envelopes injected into i24.out.<station>: each refused with its reason, the rest flows.

Also the review path end to end (hold, show, reject, approve, audit chain).
One ``RouterApp`` runs in this process; a router crash fails the test (the
fixture awaits the router task and re-raises what it raised).

Settings that differ from the shipped defaults (``i24net.router.testing.settings_toml``
and the fixture): ``session_timeout_ms = 6000`` (default 10000),
``transaction_timeout_ms = 10000`` (default 60000), ``directory_refresh_ms = 500``
(default 5000: the revocation is seen sooner; the test still waits for it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from i24net.audit.topic import prime
from i24net.directory import Status
from i24net.envelope import Precedence, Receiver, Recipients
from i24net.kafka import KafkaConnection
from i24net.keys import StationSecrets
from i24net.replay import ReplayWindow
from i24net.router.app import RouterApp
from i24net.router.settings import RouterSettings, Topics, load_settings
from i24net.router.testing import (
    Network,
    build_network,
    hints,
    police_message,
    provision,
    red_notice,
    revise,
    settings_toml,
)

pytestmark = pytest.mark.kafka
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
STATIONS = ("FR", "JP", "BR", "DE", "SY")


def now() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Env:
    conn: KafkaConnection
    net: Network
    topics: Topics
    settings: RouterSettings
    producer: Any
    app: RouterApp
    registry: CollectorRegistry


@pytest.fixture
async def env(
    kafka_conn: KafkaConnection, tmp_path: Path, unique_name: Callable[[str], str]
) -> AsyncIterator[Env]:
    prefix = unique_name("t") + "."
    topics = Topics(prefix=prefix)
    net = build_network(STATIONS, tmp_path / "keys", now_ms=now())
    await provision(kafka_conn, net, topics)
    cfg = tmp_path / "router.toml"
    cfg.write_text(
        settings_toml(
            instance="a",
            bootstrap=kafka_conn.bootstrap,
            prefix=prefix,
            keys_dir=tmp_path / "keys",
            state_dir=tmp_path / "state",
            policy=POLICY,
            group=prefix + "router",
            extra_router={"directory_refresh_ms": 500},
        )
    )
    settings = load_settings(cfg)
    registry = CollectorRegistry()
    producer = AIOKafkaProducer(
        **kafka_conn.client_kwargs(), enable_idempotence=True, max_request_size=2 << 20
    )
    await producer.start()
    stop = asyncio.Event()
    async with RouterApp(settings, registry) as app:
        task = asyncio.create_task(app.run(stop))
        try:
            yield Env(kafka_conn, net, topics, settings, producer, app, registry)
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 10)  # a router crash fails the test here
            finally:
                await producer.stop()


async def read_topic(conn: KafkaConnection, topic: str, want: int, wait_s: float = 30) -> list[Any]:
    from aiokafka import TopicPartition

    c = AIOKafkaConsumer(
        **conn.client_kwargs(), isolation_level="read_committed", enable_auto_commit=False
    )
    await c.start()
    try:
        await prime(c, [topic])
        parts = c.partitions_for_topic(topic) or {0}
        tps = [TopicPartition(topic, p) for p in parts]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + wait_s
        while len(out) < want and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=300)
            for recs in batch.values():
                out.extend(recs)
        # a little more, to catch extras
        batch = await c.getmany(timeout_ms=300)
        for recs in batch.values():
            out.extend(recs)
        return out
    finally:
        await c.stop()


async def until(cond: Callable[[], bool], within_s: float, what: str) -> None:
    """Wait for a state, with a deadline (never a sleep hoping for it)."""
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def header(rec: Any, name: str) -> str | None:
    for k, v in rec.headers:
        if k == name:
            return bytes(v).decode()
    return None


async def test_bad_envelopes_are_refused_with_their_reason_and_the_stream_flows(env: Env) -> None:
    t = now()
    fr = env.net.gateway("FR", t)
    good: list[str] = []
    sends: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    def ok() -> None:
        h, data = fr.message(
            "POLICE_MESSAGE", police_message("Stolen car"), Recipients.to("JP"), now()
        )
        good.append(h.message_id)
        sends.append((h.message_id, data, hints(h)))

    def bad(msgid: str, data: bytes, hs: list[tuple[str, bytes]] | None = None) -> None:
        sends.append((msgid, data, hs or []))

    ok()
    # forged: signed by JP's key but claiming FR's key id
    h, _ = fr.message("POLICE_MESSAGE", police_message("x"), Recipients.to("JP"), now())
    forger = env.net.gateway("JP", t)
    forger.secrets = replace(
        env.net.secrets["JP"], station="FR", signing_key_id=fr.secrets.signing_key_id
    )
    forger.sender.secrets = forger.secrets
    bad("forged", forger.seal(h, police_message("x")))
    ok()
    # tampered: one ciphertext byte flipped
    h, data = fr.message("POLICE_MESSAGE", police_message("x"), Recipients.to("JP"), now())
    _, d = env.net.store.decode_single(data)
    d["ciphertext"] = bytes([d["ciphertext"][0] ^ 1]) + d["ciphertext"][1:]
    bad("tampered", env.net.store.encode_single("net.i24.Envelope", d))
    ok()
    # replayed: a good message sent twice
    h, data = fr.message("POLICE_MESSAGE", police_message("once"), Recipients.to("JP"), now())
    good.append(h.message_id)
    sends.append((h.message_id, data, hints(h)))
    bad("replayed", data)
    ok()
    # expired: created two days ago, lived one
    old = now() - 2 * 86_400_000
    h, data = fr.message("POLICE_MESSAGE", police_message("x"), Recipients.to("JP"), old)
    bad("expired", data)
    # oversized
    bad("oversized", b"\xc3\x01" + bytes(1_100_000))
    ok()
    # unknown sender: a station not in the directory writes to its own topic name
    stranger = StationSecrets.generate("XK", now_ms=t)
    h = fr.header("POLICE_MESSAGE", Recipients.to("JP"), now())
    h = replace(h, sender="XK", sender_key_id=stranger.signing_key_id)
    from i24net.envelope import Sender

    xk = Sender(stranger, env.net.directory.current_encryption_key("GS", t), store=env.net.store)
    bad(
        "unknown",
        xk.seal(h, env.net.store.encode_single("net.i24.PoliceMessage", police_message("x"))),
    )
    ok()
    for msgid, data, hs in sends:
        await env.producer.send_and_wait(
            env.topics.out("FR"), key=msgid.encode(), value=data, headers=hs
        )

    # revoked key: DE's key revoked now; DE's next message is refused
    de_rec = env.net.directory.record("DE")
    revoked = replace(
        de_rec,
        signing_keys=tuple(
            replace(k, status=Status.REVOKED, revoked_at_ms=now() - 1000)
            for k in de_rec.signing_keys
        ),
    )
    entry = revise(env.net, revoked)
    await env.producer.send_and_wait(env.topics.directory, key=b"DE", value=entry)
    serial = env.net.directory.record("DE").serial
    await until(
        lambda: env.app.directory.record("DE").serial == serial,
        30,
        "the router reads DE's revision",
    )
    de = env.net.gateway("DE", t)
    h, data = de.message("POLICE_MESSAGE", police_message("x"), Recipients.to("JP"), now())
    await env.producer.send_and_wait(env.topics.out("DE"), key=h.message_id.encode(), value=data)
    ok()
    msgid, data, hs = sends[-1]
    await env.producer.send_and_wait(
        env.topics.out("FR"), key=msgid.encode(), value=data, headers=hs
    )

    dlq = await read_topic(env.conn, env.topics.dlq, 7)
    reasons = sorted(header(r, "i24-reason") or "" for r in dlq)
    assert reasons == sorted(
        [
            "bad_signature",  # forged: signed with another station's key
            "bad_signature",  # tampered: the sender signature covers the ciphertext
            "replayed",
            "expired",
            "oversized",
            "unknown_sender",
            "revoked_key",
        ]
    ), reasons

    jp = await read_topic(env.conn, env.topics.inbox("JP"), len(good))
    receiver = Receiver(env.net.secrets["JP"], env.net.directory, ReplayWindow(clock=now))
    got = [receiver.open(r.value).header.message_id for r in jp]
    assert sorted(got) == sorted(good)

    fails = {
        s.labels["reason"]: s.value
        for m in env.registry.collect()
        if m.name == "i24net_router_verification_failures"
        for s in m.samples
        if s.name.endswith("_total")
    }
    for reason in (
        "bad_signature",
        "replayed",
        "expired",
        "oversized",
        "unknown_sender",
        "revoked_key",
    ):
        assert fails.get(reason, 0) >= 1, (reason, fails)


async def test_hold_review_reject_and_approve_with_audit(env: Env) -> None:
    from i24net.audit import read_records, verify_chain
    from i24net.router.review import ReviewService

    svc = ReviewService(env.app, env.settings)
    stop = asyncio.Event()
    task = asyncio.create_task(svc.run(stop))
    try:
        t = now()
        fr = env.net.gateway("FR", t)
        # A wanted-person diffusion with a political context: held.
        h1, d1 = fr.message(
            "RED_NOTICE_REQUEST",
            red_notice("Opposition journalist accused of fraud after the elections."),
            Recipients.all(),
            t,
            precedence=Precedence.IMMEDIATE,
        )
        h2, d2 = fr.message(
            "RED_NOTICE_REQUEST",
            red_notice("Insulting the head of state on television.", category="OTHER"),
            Recipients.to("JP", "BR"),
            t,
        )
        for h, d in ((h1, d1), (h2, d2)):
            await env.producer.send_and_wait(
                env.topics.out("FR"), key=h.message_id.encode(), value=d, headers=hints(h)
            )
        await until(lambda: len(svc.held) >= 2, 30, "both holds in the review store")
        assert set(svc.held) == {h1.message_id, h2.message_id}
        shown = svc.show(h2.message_id)
        assert shown["rule"] == "WANTED-PERSON-RISK"
        assert "A3-POLITICAL" in shown["screen"]["also_matched"]
        assert shown["payload"]["case"]["facts"].startswith("Insulting")

        await svc.reject(h2.message_id, "reviewer.alice", "POLITICAL", "Political offence (Art. 3)")
        out = await svc.approve(h1.message_id, "reviewer.bob", "Fraud predominates")
        assert out["status"] == "delivered"
        assert svc.held == {}

        # Approved: delivered to every station but the sender, attestation names the review.
        jp = await read_topic(env.conn, env.topics.inbox("JP"), 1)
        rx = Receiver(env.net.secrets["JP"], env.net.directory, ReplayWindow(clock=now))
        opened = [rx.open(r.value) for r in jp]
        assert [o.header.message_id for o in opened] == [h1.message_id]
        att = opened[0].attestation
        assert att.decision.value == "REVIEW_APPROVED" and att.review_id == out["review_id"]
        assert set(att.recipients) == set(STATIONS) - {"FR"}

        # FR got notices: held x2, rejected with the reason, delivered.
        frx = Receiver(env.net.secrets["FR"], env.net.directory, ReplayWindow(clock=now))
        notes = await read_topic(env.conn, env.topics.inbox("FR"), 4)
        statuses = []
        for r in notes:
            o = frx.open(r.value)
            assert o.header.sender == "GS" and o.attestation.router == "GS"
            _, n = env.net.store.decode_single(o.payload, expected="net.i24.StatusNotice")
            statuses.append((n["message_id"], n["status"], n["reason"]))
        assert (h2.message_id, "REJECTED", "POLITICAL") in statuses
        assert (h1.message_id, "DELIVERED", None) in statuses
        assert sum(s[1] == "HELD_FOR_REVIEW" for s in statuses) == 2

        # The audit chain holds all four decisions and verifies.
        c = AIOKafkaConsumer(
            **env.conn.client_kwargs(), isolation_level="read_committed", enable_auto_commit=False
        )
        await c.start()
        try:
            recs = [r async for r in read_records(c, topic=env.topics.audit)]
        finally:
            await c.stop()
        report = verify_chain(recs, env.net.store)
        assert report.ok, report.problems
        actions = []
        for r in recs:
            assert r.value is not None
            _, a = env.net.store.decode_single(r.value)
            actions.append((a["action"], a["actor"]))
        assert ("REJECTED", "reviewer.alice") in actions
        assert ("APPROVED", "reviewer.bob") in actions
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_the_shared_ingress_topic_flows_and_a_forged_record_tells_nobody(env: Env) -> None:
    """Messages of several stations on ``i24.out`` (partitioned by sender, broker-stamped
    time) are delivered; a record that does not verify is refused with no notice to the
    station it claims (issue 12: the topic no longer says who wrote it)."""
    from aiokafka.partitioner import murmur2

    assert env.topics.ingress in env.app._consumer.subscription()
    parts = sorted(await env.producer.partitions_for(env.topics.ingress))
    assert len(parts) == env.settings.router.ingress_partitions
    sent: dict[str, str] = {}
    for sender, text in (("FR", "Theft of a car"), ("DE", "Theft of a bicycle")):
        h, data = env.net.gateway(sender, now()).message(
            "POLICE_MESSAGE", police_message(text), Recipients.to("JP"), now()
        )
        partition = parts[(murmur2(sender.encode()) & 0x7FFFFFFF) % len(parts)]
        await env.producer.send_and_wait(
            env.topics.ingress,
            data,
            key=h.message_id.encode(),
            headers=hints(h),
            partition=partition,
        )
        sent[h.message_id] = sender
    h, data = env.net.gateway("FR", now()).message(
        "POLICE_MESSAGE", police_message("Theft of a boat"), Recipients.to("JP"), now()
    )
    forged = data[:-1] + bytes([data[-1] ^ 1])
    await env.producer.send_and_wait(
        env.topics.ingress, forged, key=h.message_id.encode(), headers=hints(h)
    )
    delivered = await read_topic(env.conn, env.topics.inbox("JP"), 2)
    assert sorted(header(r, "i24-msgid") or "" for r in delivered) == sorted(sent)
    # the router created i24.out with the broker's append time (the revocation check)
    ingress = await read_topic(env.conn, env.topics.ingress, 3)
    assert {r.timestamp_type for r in ingress} == {1}  # LogAppendTime
    dead = await read_topic(env.conn, env.topics.dlq, 1)
    assert [header(r, "i24-claimed-sender") for r in dead] == ["FR"]
    assert [header(r, "i24-sender") for r in dead] == [None]
    # FR hears about its own delivered message only, never about the forged record that
    # claimed to be from it (its notices are read after the refusal was committed).
    rx = Receiver(env.net.secrets["FR"], env.net.directory, ReplayWindow(clock=now))
    about = set()
    for r in await read_topic(env.conn, env.topics.inbox("FR"), 1):
        _, n = env.net.store.decode_single(
            rx.open(r.value).payload, expected="net.i24.StatusNotice"
        )
        about.add(n["message_id"])
    assert about == {m for m, s in sent.items() if s == "FR"}
