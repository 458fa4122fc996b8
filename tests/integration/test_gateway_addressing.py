"""A gateway refuses a validly signed and attested delivery that excludes it (issue 17, item 5).

The router is played by ``Router.deliver`` called with a recipient list the
signed header does not allow (what a buggy or compromised router could
produce): the envelope verifies end to end (sender signature, attestation,
wrap), and JP's gateway still refuses it with ``not_addressed``, keeps it in
its rejected list, counts it, and stores only the genuine delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Receiver,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.errors import Reason, VerificationError
from i24net.gateway import Gateway, parse_settings
from i24net.gateway.auth import create_integrator
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import RootSecrets, StationSecrets, save_root, save_station
from i24net.replay import ReplayWindow
from i24net.schemas import SchemaStore
from i24net.stations import station

pytestmark = pytest.mark.kafka

STORE = SchemaStore.default()
STATIONS = ("FR", "GS", "JP", "BR")
PM = {"subject_line": "s", "text": "t", "attachments": [], "in_reply_to": None}


def make_world(tmp: Path) -> tuple[dict[str, StationSecrets], Directory]:
    now = system_clock() - 60_000
    keys = tmp / "keys"
    root = RootSecrets.generate(now_ms=now)
    save_root(root, keys)
    secrets = {c: StationSecrets.generate(c, now_ms=now) for c in STATIONS}
    for s in secrets.values():
        save_station(s, keys)
    d = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=now, issued_ms=now)
        for c, s in secrets.items()
    )
    (tmp / "entries").mkdir()
    for code, e in d.sign(root, STORE).items():
        (tmp / "entries" / f"{code}.entry").write_bytes(e)
    return secrets, d


def delivery(
    secrets: dict[str, StationSecrets],
    d: Directory,
    router: Router,
    recipients: Recipients,
    excluded: tuple[str, ...] = (),
) -> tuple[str, bytes]:
    """FR's message with this addressing, attested and wrapped by the GS for JP regardless."""
    now = system_clock()
    h = Header(
        message_id=new_message_id(now),
        sender="FR",
        sender_key_id=secrets["FR"].signing_key_id,
        recipients=recipients,
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + 3_600_000,
        language=Language.EN,
        payload_fingerprint=STORE.fingerprint("net.i24.PoliceMessage"),
        excluded=excluded,
    )
    payload = STORE.encode_single("net.i24.PoliceMessage", {**PM, "case_reference": None})
    gs = d.current_encryption_key("GS", now)
    env = Sender(secrets["FR"], gs, store=STORE).seal(h, payload)
    return h.message_id, router.deliver(router.open(env), ["JP"])["JP"]


async def wait_until(pred: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    """Poll ``pred`` (a state of the gateway) until it holds, or fail at the deadline."""
    deadline = time.monotonic() + seconds
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_a_delivery_that_excludes_the_gateway_is_refused(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    from aiokafka import AIOKafkaProducer

    prefix = unique_name("t")
    secrets, d = make_world(tmp_path)
    await ensure_topics(kafka_conn, [TopicSpec(f"{prefix}.out"), TopicSpec(f"{prefix}.in.JP")])
    settings = parse_settings(
        {
            "station": "JP",
            "data_dir": str(tmp_path / "gw-JP"),
            "shutdown_grace_s": 5,
            "keys": {
                "secret": str(tmp_path / "keys" / "JP.secret.json"),
                "root_public": str(tmp_path / "keys" / "gs-root.public.json"),
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
    token = create_integrator(
        tmp_path / "gw-JP" / "integrators.sqlite3",
        "tester",
        ["inbox:read", "operator"],
        rate_per_s=1000,
        burst=1000,
    )
    router = Router(secrets["GS"], d, ReplayWindow(clock=system_clock), store=STORE)
    excluded_id, excluded = delivery(secrets, d, router, Recipients.all(), excluded=("JP",))
    unlisted_id, unlisted = delivery(secrets, d, router, Recipients.to("BR"))
    good_id, good = delivery(secrets, d, router, Recipients.to("BR", "JP"))
    # Signature, time, replay and attestation (steps 4-8) all pass: the refusal is step 9a.
    for data in (excluded, unlisted):
        rx = Receiver(secrets["JP"], d, ReplayWindow(clock=system_clock), store=STORE)
        with pytest.raises(VerificationError) as e:
            rx.open(data)
        assert e.value.reason is Reason.NOT_ADDRESSED

    async with (
        Gateway(settings) as jp,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{jp.port}", headers={"Authorization": f"Bearer {token}"}
        ) as h,
    ):
        producer = AIOKafkaProducer(**kafka_conn.client_kwargs(), max_request_size=2 << 20)
        await producer.start()
        try:
            for data in (excluded, unlisted, good):
                await producer.send_and_wait(settings.in_topic, data)
        finally:
            await producer.stop()

        async def settled() -> bool:
            rejected = (await h.get("/v1/rejected")).json()["rejected"]
            inbox = (await h.get("/v1/inbox")).json()["messages"]
            return len(rejected) >= 2 and len(inbox) >= 1

        await wait_until(settled, 60, "two refusals and one stored message")
        rejected = (await h.get("/v1/rejected")).json()["rejected"]
        assert [r["reason"] for r in rejected] == ["not_addressed", "not_addressed"]
        inbox = [m["message_id"] for m in (await h.get("/v1/inbox")).json()["messages"]]
        assert inbox == [good_id]
        assert excluded_id not in inbox and unlisted_id not in inbox
        metrics = (await h.get("/metrics")).text
        assert 'i24net_gateway_verification_failures_total{reason="not_addressed"} 2.0' in metrics
