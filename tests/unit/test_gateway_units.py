"""The gateway's parts without a broker: intake (JSON -> Avro, every refusal), the outbox
(precedence order, idempotency, disk bound -> 503, undelivered age) and the inbox cursor."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from i24net.directory import Directory, StationRecord
from i24net.envelope import Limits, Precedence
from i24net.errors import IntakeRefusedError
from i24net.gateway import Gateway, inbox, outbox
from i24net.gateway.app import directory_serial
from i24net.gateway.db import Database
from i24net.gateway.intake import RANK, Intake, Submission, from_json
from i24net.keys import RootSecrets, StationSecrets
from i24net.schemas import KIND_SCHEMAS, SchemaStore
from i24net.stations import station

STORE = SchemaStore.default()
NOW = 1_800_000_000_000
PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}
DAY_MS = 86_400_000


class Clock:
    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def world() -> tuple[dict[str, StationSecrets], Directory, RootSecrets]:
    t = NOW - 60_000
    root = RootSecrets.generate(now_ms=t)
    secrets = {c: StationSecrets.generate(c, now_ms=t) for c in ("FR", "GS", "JP")}
    d = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=t, issued_ms=t)
        for c, s in secrets.items()
    )
    return secrets, d, root


def make_intake(world: Any, *, limits: Limits | None = None, router: str = "GS") -> Intake:
    secrets, d, _ = world
    return Intake(
        secrets["FR"],
        lambda: d,
        clock=Clock(),
        store=STORE,
        router=router,
        default_lifetime_ms=DAY_MS,
        **({"limits": limits} if limits else {}),
    )


def sub(**kw: Any) -> Submission:
    base: dict[str, Any] = {"kind": "POLICE_MESSAGE", "to": ("JP",), "payload": PM}
    base.update(kw)
    return Submission(**base)


# --- intake: JSON -> Avro -----------------------------------------------------


def test_from_json_unions_bytes_defaults_and_errors() -> None:
    schema = STORE.schema("net.i24.PoliceMessage")
    data = b"\x89PNG"
    att = {
        "kind": "PHOTO",
        "media_type": "image/png",
        "description": "car",
        "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
        "data": base64.b64encode(data).decode(),
    }
    rec = from_json(schema, {**PM, "case_reference": "C-1", "attachments": [att]})
    assert rec["case_reference"] == "C-1"  # union value given bare
    assert rec["in_reply_to"] is None  # missing optional field takes its default
    assert rec["attachments"][0]["data"] == data  # bytes from base64
    assert rec["attachments"][0]["sha256"] == hashlib.sha256(data).digest()  # fixed
    _, back = STORE.decode_single(STORE.encode_single("net.i24.PoliceMessage", rec))
    assert back == rec
    for bad, words in [
        ({**PM, "extra": 1}, "unknown field"),
        ({"text": "x", "attachments": []}, "missing field subject_line"),
        ({**PM, "text": 5}, "string expected"),
        ({**PM, "attachments": [{**att, "kind": "VIDEO"}]}, "not one of"),
        ({**PM, "attachments": [{**att, "sha256": "AAAA"}]}, "32 bytes expected"),
        ({**PM, "attachments": [{**att, "data": "!!"}]}, "invalid base64"),
        ({**PM, "attachments": {}}, "array expected"),
    ]:
        with pytest.raises(ValueError, match=words):
            from_json(schema, bad)


def test_prepare_json_and_avro(world: Any) -> None:
    intake = make_intake(world)
    p = intake.prepare(sub(precedence="FLASH", handling=(("OTHER", "ask first"),)))
    h = p.header
    assert (h.kind, h.sender, h.precedence, p.recipients) == (
        "POLICE_MESSAGE",
        "FR",
        Precedence.FLASH,
        ("JP",),
    )
    assert p.rank == RANK[Precedence.FLASH] == 0
    assert h.expires_ms == NOW + DAY_MS
    assert h.payload_fingerprint == STORE.fingerprint(KIND_SCHEMAS["POLICE_MESSAGE"])
    # raw Avro single-object: the kind is implied by the fingerprint
    avro = STORE.encode_single(
        "net.i24.PoliceMessage", {**PM, "case_reference": None, "in_reply_to": None}
    )
    q = intake.prepare(Submission(kind=None, to=("JP",), payload_avro=avro))
    assert q.header.kind == "POLICE_MESSAGE"
    assert len(q.envelope) > len(avro)


REFUSALS: list[tuple[str, dict[str, Any], str, int]] = [
    ("kind missing", {"kind": None}, "unknown_kind", 422),
    ("not a kind", {"kind": "GOSSIP"}, "unknown_kind", 422),
    ("network kind", {"kind": "DELIVERY_RECEIPT"}, "unknown_kind", 422),
    ("both payloads", {"payload_avro": b"\xc3\x01" + b"\0" * 10}, "schema_mismatch", 422),
    ("shape", {"payload": {"text": "x"}}, "schema_mismatch", 422),
    ("not avro", {"payload": None, "payload_avro": b"hello world"}, "schema_mismatch", 422),
    (
        "unknown fingerprint",
        {"kind": None, "payload": None, "payload_avro": b"\xc3\x01" + b"\xff" * 8 + b"\0"},
        "unknown_kind",
        422,
    ),
    ("not in directory", {"to": ("XX",)}, "unknown_recipient", 422),
    ("no recipient", {"to": ()}, "unknown_recipient", 422),
    ("two modes", {"to_all": True}, "unknown_recipient", 422),
    ("bad region", {"to": (), "region": "ATLANTIS"}, "unknown_recipient", 422),
    ("in the past", {"expires_ms": NOW - 1}, "expired", 422),
    ("too long", {"expires_in_s": 8 * 86_400}, "expired", 422),
    ("both expiries", {"expires_ms": NOW + 1000, "expires_in_s": 10}, "expired", 422),
    ("unknown code", {"handling": (("BURN", None),)}, "bad_handling_code", 422),
    ("OTHER no text", {"handling": (("OTHER", None),)}, "bad_handling_code", 422),
    ("text not OTHER", {"handling": (("CRIME_PREVENTION_ONLY", "x"),)}, "bad_handling_code", 422),
    ("precedence", {"precedence": "URGENT"}, "bad_precedence", 422),
    ("language", {"language": "de"}, "bad_language", 422),
    ("reliability", {"source_reliability": "Z"}, "bad_header", 422),
    ("accuracy", {"source_accuracy": 9}, "bad_header", 422),
]


@pytest.mark.parametrize(
    ("change", "code", "status"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_refusal_reason(world: Any, change: dict[str, Any], code: str, status: int) -> None:
    with pytest.raises(IntakeRefusedError) as err:
        make_intake(world).prepare(sub(**change))
    assert (err.value.code, err.value.http_status) == (code, status)


def test_oversized_and_router_unavailable(world: Any) -> None:
    small = make_intake(world, limits=Limits(max_payload=64))
    big = {**PM, "text": "x" * 200}
    with pytest.raises(IntakeRefusedError) as err:
        small.prepare(sub(payload=big))
    assert (err.value.code, err.value.http_status) == ("oversized", 413)
    avro = STORE.encode_single(
        "net.i24.PoliceMessage", {**big, "case_reference": None, "in_reply_to": None}
    )
    with pytest.raises(IntakeRefusedError, match="oversized"):
        small.prepare(sub(payload=None, payload_avro=avro))
    with pytest.raises(IntakeRefusedError) as err:
        make_intake(world, router="BR").prepare(sub())
    assert (err.value.code, err.value.http_status) == ("router_unavailable", 503)


# --- outbox ----------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    d = Database(tmp_path / "gw.sqlite3")
    yield d
    d.close()


def test_outbox_drains_flash_first_then_in_intake_order(world: Any, db: Database) -> None:
    intake = make_intake(world)
    order = ["ROUTINE", "DEFERRED", "FLASH", "PRIORITY", "FLASH", "IMMEDIATE", "ROUTINE"]
    items = [outbox.NewMessage(intake.prepare(sub(precedence=p)), NOW) for p in order]
    ids = [a.message_id for a in db.write_sync(lambda c: outbox.insert_many(c, items))]
    batch = db.write_sync(lambda c: outbox.next_batch(c, 100))
    got = [(b.precedence, ids.index(b.message_id)) for b in batch]
    assert got == [
        ("FLASH", 2),
        ("FLASH", 4),
        ("IMMEDIATE", 5),
        ("PRIORITY", 3),
        ("ROUTINE", 0),
        ("ROUTINE", 6),
        ("DEFERRED", 1),
    ]
    assert [b.message_id for b in db.write_sync(lambda c: outbox.next_batch(c, 2))] == [
        ids[2],
        ids[4],
    ]
    n, size, oldest = db.write_sync(outbox.pending_totals)
    assert (n, oldest) == (7, NOW) and size == sum(len(i.prepared.envelope) for i in items)
    db.write_sync(lambda c: outbox.mark_sent(c, ids[:3], NOW + 5))
    assert db.write_sync(outbox.pending_totals)[0] == 4
    assert db.write_sync(lambda c: outbox.status(c, ids[0]))["status"] == "SENT"
    assert db.write_sync(lambda c: outbox.sent_ms(c, ids[0])) == NOW + 5


def test_outbox_idempotency_within_and_across_batches(world: Any, db: Database) -> None:
    intake = make_intake(world)

    def item(key: str, digest: bytes) -> outbox.NewMessage:
        return outbox.NewMessage(intake.prepare(sub()), NOW, idem_key=key, request_digest=digest)

    first = db.write_sync(
        lambda c: outbox.insert_many(c, [item("k1", b"a"), item("k1", b"a"), item("k2", b"b")])
    )
    assert not first[0].duplicate and first[1].duplicate and not first[1].conflict
    assert first[1].message_id == first[0].message_id
    again = db.write_sync(lambda c: outbox.insert_many(c, [item("k2", b"b"), item("k2", b"X")]))
    assert again[0].duplicate and not again[0].conflict
    assert again[1].duplicate and again[1].conflict
    assert again[0].message_id == first[2].message_id
    assert db.write_sync(outbox.pending_totals)[0] == 2


def test_undelivered_oldest_by_precedence(world: Any, db: Database) -> None:
    intake = make_intake(world)
    a = intake.prepare(sub(precedence="FLASH"))
    b = intake.prepare(sub(precedence="ROUTINE", to=("JP", "GS")))
    c = intake.prepare(sub(precedence="ROUTINE", to=(), to_all=True))
    db.write_sync(
        lambda conn: outbox.insert_many(
            conn,
            [
                outbox.NewMessage(a, NOW),
                outbox.NewMessage(b, NOW + 1000),
                outbox.NewMessage(c, NOW + 2000),
            ],
        )
    )
    ida, idb, idc = a.header.message_id, b.header.message_id, c.header.message_id
    # created_ms is the header's; all three were sealed at NOW
    assert db.write_sync(lambda conn: outbox.undelivered_oldest(conn, NOW + 5000)) == {
        "FLASH": NOW,
        "ROUTINE": NOW,
    }

    def notice(mid: str, status: str, stations: list[str]) -> None:
        db.write_sync(
            lambda conn: outbox.apply_notice(conn, mid, status, stations, None, None, NOW + 9)
        )

    notice(ida, "DELIVERED", ["JP"])
    # GS's receipt is read before the router's notice: it waits for it
    got_receipt = db.write_sync(
        lambda conn: outbox.apply_receipt(conn, idb, "GS", "STORED", NOW + 10)
    )
    assert got_receipt is outbox.ReceiptOutcome.PENDING
    got = db.write_sync(lambda conn: outbox.undelivered_oldest(conn, NOW + 5000))
    assert got == {"ROUTINE": NOW}
    notice(idb, "DELIVERED", ["GS", "JP"])
    notice(idc, "DELIVERED", ["JP", "GS"])
    assert db.write_sync(lambda conn: outbox.undelivered_oldest(conn, NOW + 5000)) == {}
    # a refused message, and an expired one, no longer count
    d = intake.prepare(sub(precedence="IMMEDIATE"))
    e = intake.prepare(sub(precedence="PRIORITY", expires_in_s=60))
    db.write_sync(
        lambda conn: outbox.insert_many(
            conn, [outbox.NewMessage(d, NOW), outbox.NewMessage(e, NOW)]
        )
    )
    notice(d.header.message_id, "REFUSED", [])
    assert db.write_sync(lambda conn: outbox.undelivered_oldest(conn, NOW + 1000)) == {
        "PRIORITY": NOW
    }
    assert db.write_sync(lambda conn: outbox.undelivered_oldest(conn, NOW + 61_000)) == {}


# --- receipts count only from stations the router delivered to ---------------------


def _receipt(
    db: Database, mid: str, station: str, at_ms: int = NOW + 20, **kw: Any
) -> outbox.ReceiptOutcome:
    return db.write_sync(lambda c: outbox.apply_receipt(c, mid, station, "STORED", at_ms, **kw))


def _notice(db: Database, mid: str, status: str, stations: list[str]) -> Any:
    return db.write_sync(
        lambda c: outbox.apply_notice(c, mid, status, stations, None, None, NOW + 30)
    )


def _status(db: Database, mid: str) -> dict[str, Any]:
    got = db.write_sync(lambda c: outbox.status(c, mid))
    assert got is not None
    return got


def _queued(world: Any, db: Database, **kw: Any) -> str:
    p = make_intake(world).prepare(sub(**kw))
    db.write_sync(lambda c: outbox.insert(c, p, NOW))
    return p.header.message_id


def test_receipt_for_a_held_message_is_not_applied(world: Any, db: Database) -> None:
    """A station that knows the id of a held (never delivered) message cannot mark it
    RECEIPTED: its receipt waits for a DELIVERED notice, and the rejection refuses it."""
    mid = _queued(world, db)
    _notice(db, mid, "ACCEPTED", [])
    _notice(db, mid, "HELD_FOR_REVIEW", [])
    assert _receipt(db, mid, "JP") is outbox.ReceiptOutcome.PENDING
    st = _status(db, mid)
    assert st["status"] == "HELD_FOR_REVIEW"
    assert [s["receipted_ms"] for s in st["stations"]] == [None]
    assert db.write_sync(outbox.pending_receipts) == 1
    settled = _notice(db, mid, "REJECTED", [])
    assert settled == outbox.NoticeApplied([], 1)
    assert db.write_sync(outbox.pending_receipts) == 0
    assert _status(db, mid)["status"] == "REJECTED"
    # and after the rejection, no receipt is kept at all
    assert _receipt(db, mid, "JP") is outbox.ReceiptOutcome.NOT_DELIVERED
    assert db.write_sync(outbox.pending_receipts) == 0


def test_receipt_before_and_after_the_delivered_notice(world: Any, db: Database) -> None:
    mid = _queued(world, db, to=("JP", "GS"))
    # read before the notice: waits; the notice lists JP, not GS (which was not delivered)
    assert _receipt(db, mid, "JP") is outbox.ReceiptOutcome.PENDING
    assert _receipt(db, mid, "GS") is outbox.ReceiptOutcome.PENDING
    assert _status(db, mid)["status"] == "ACCEPTED"
    settled = _notice(db, mid, "DELIVERED", ["JP"])
    assert settled == outbox.NoticeApplied(["STORED"], 1)
    st = _status(db, mid)
    assert st["status"] == "RECEIPTED"  # every station delivered to has receipted
    by_station = {s["station"]: s for s in st["stations"]}
    assert by_station["JP"]["receipted_ms"] == NOW + 20
    assert by_station["GS"]["receipted_ms"] is None
    # after the notice: a station it does not list is refused at once
    assert _receipt(db, mid, "GS") is outbox.ReceiptOutcome.NOT_DELIVERED
    assert _receipt(db, mid, "FR") is outbox.ReceiptOutcome.NOT_DELIVERED
    assert db.write_sync(outbox.pending_receipts) == 0
    # the usual order: notice, then receipt
    other = _queued(world, db)
    _notice(db, other, "DELIVERED", ["JP"])
    assert _status(db, other)["status"] == "DELIVERED"
    assert _receipt(db, other, "JP") is outbox.ReceiptOutcome.APPLIED
    assert _status(db, other)["status"] == "RECEIPTED"
    assert _receipt(db, "not-ours", "JP") is outbox.ReceiptOutcome.UNKNOWN_MESSAGE


def test_pending_receipts_are_bounded(world: Any, db: Database) -> None:
    a, b = _queued(world, db), _queued(world, db, expires_in_s=60)
    assert _receipt(db, b, "JP", max_pending=1) is outbox.ReceiptOutcome.PENDING
    assert _receipt(db, a, "JP", max_pending=1) is outbox.ReceiptOutcome.PENDING_FULL
    # once b has expired (it can no longer be delivered), its receipt makes room
    later = NOW + 61_000
    assert _receipt(db, a, "JP", later, max_pending=1) is outbox.ReceiptOutcome.PENDING
    assert _receipt(db, a, "GS", later, max_pending=1) is outbox.ReceiptOutcome.PENDING_FULL
    assert db.write_sync(outbox.pending_receipts) == 1


# --- inbox cursor -------------------------------------------------------------------


def _store(c: Any, mid: str, *, visible: bool = True, offset: int = 0) -> inbox.Stored:
    return inbox.store(
        c,
        message_id=mid,
        visible=visible,
        sender="JP",
        kind="POLICE_MESSAGE",
        precedence="ROUTINE",
        created_ms=NOW,
        expires_ms=NOW + DAY_MS,
        received_ms=NOW + 1,
        header={"message_id": mid},
        payload=b"\xc3\x01payload",
        envelope_digest=b"\0" * 32,
        decision="SCREEN_PASSED",
        topic="i24.in.FR",
        partition=0,
        offset=offset,
    )


def test_inbox_cursor_ack_and_exactly_once(db: Database) -> None:
    for i in range(5):
        db.write_sync(lambda c, i=i: _store(c, f"m{i}", visible=i != 2, offset=i))
    page = db.write_sync(lambda c: inbox.listing(c, 0, 2, unacked_only=False))
    assert [m["message_id"] for m in page] == ["m0", "m1"]
    cursor = page[-1]["cursor"]
    page = db.write_sync(lambda c: inbox.listing(c, cursor, 10, unacked_only=False))
    assert [m["message_id"] for m in page] == ["m3", "m4"]  # m2 (a notice) is not listed
    assert "payload_avro" not in page[0]
    assert (
        db.write_sync(lambda c: inbox.listing(c, page[-1]["cursor"], 10, unacked_only=False)) == []
    )
    assert db.write_sync(lambda c: inbox.ack(c, ["m0", "m3", "m2", "nope"], NOW)) == 2
    assert db.write_sync(lambda c: inbox.ack(c, ["m0"], NOW)) == 0  # already acknowledged
    unacked = db.write_sync(lambda c: inbox.listing(c, 0, 10, unacked_only=True))
    assert [m["message_id"] for m in unacked] == ["m1", "m4"]
    assert db.write_sync(inbox.counts) == {"stored": 4, "unacked": 2, "rejected": 0}
    m = db.write_sync(lambda c: inbox.fetch(c, "m1"))
    assert m is not None and base64.b64decode(m["payload_avro"]) == b"\xc3\x01payload"
    assert db.write_sync(lambda c: inbox.fetch(c, "m2")) is None
    # the same message again: from the same record (a redelivery) or another (a replay)
    again = db.write_sync(lambda c: _store(c, "m1", offset=1))
    assert again.duplicate and again.same_record
    replay = db.write_sync(lambda c: _store(c, "m1", offset=99))
    assert replay.duplicate and not replay.same_record
    assert db.write_sync(inbox.counts)["stored"] == 4


# --- the daemon without a broker: disk bound -> 503, gauges ----------------------------


def make_gateway(
    gateway_settings: Any, world: Any, max_pending: int, directory: dict[str, Any] | None = None
) -> Gateway:
    settings = gateway_settings(
        world,
        STORE,
        directory=directory or {},
        outbox={"max_pending_messages": max_pending},
    )
    return Gateway(settings, clock=Clock(), store=STORE)


@pytest.fixture
def gateway(gateway_settings: Any, world: Any) -> Iterator[Gateway]:
    gw = make_gateway(gateway_settings, world, 2)
    yield gw
    gw._close()


@pytest.fixture
def roomy(gateway_settings: Any, world: Any) -> Iterator[Gateway]:
    gw = make_gateway(gateway_settings, world, 1000)
    yield gw
    gw._close()


async def test_outbox_full_is_503_with_retry_after(gateway: Gateway, authorize: Any) -> None:
    transport = httpx.ASGITransport(app=gateway.app)
    headers = authorize(gateway.settings)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as c:
        body = {"kind": "POLICE_MESSAGE", "to": ["JP"], "payload": PM}
        for _ in range(2):
            assert (await c.post("/v1/messages", json=body)).status_code == 202
        r = await c.post("/v1/messages", json=body)
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.json()["error"] == "outbox_full"
        r = await c.post("/v1/messages", json={**body, "precedence": "SOON"})
        assert r.status_code == 503  # the bound is checked first
    with pytest.raises(IntakeRefusedError) as err:
        await gateway.submit(sub(), None)
    assert (err.value.code, err.value.http_status) == ("outbox_full", 503)
    assert gateway.backlog.messages == 2
    text = gateway.registry.get_sample_value(
        "i24net_gateway_intake_refusals_total", {"reason": "outbox_full"}
    )
    assert text == 2


async def test_concurrent_submissions_share_commits(roomy: Gateway) -> None:
    gateway = roomy
    commits = gateway.db.commits
    results = await asyncio.gather(*(gateway.submit(sub(), None) for _ in range(40)))
    assert len({r.message_id for r in results}) == 40
    assert gateway.db.commits - commits < 40
    assert gateway.backlog.messages == 40


async def test_undelivered_and_directory_gauges(gateway: Gateway, world: Any) -> None:
    await gateway.submit(sub(precedence="FLASH"), None)
    gateway.clock.now += 901_000  # type: ignore[attr-defined]
    await gateway._undelivered_gauge()
    get = gateway.registry.get_sample_value
    name = "i24net_gateway_undelivered_oldest_age_seconds"
    assert get(name, {"precedence": "FLASH"}) == 901.0
    assert get(name, {"precedence": "ROUTINE"}) == 0.0
    assert get("i24net_gateway_directory_serial") == directory_serial(world[1]) >= 1


async def _tails_on() -> None:
    await asyncio.Event().wait()


async def test_start_returns_once_the_directory_topic_is_read(
    gateway_settings: Any, world: Any
) -> None:
    """``start_wait_s`` bounds the wait for an unreachable broker; it is not a fixed delay."""
    gw = make_gateway(gateway_settings, world, 10, {"follow_topic": True, "start_wait_s": 300})
    assert gw.follower is not None
    follower_running = asyncio.create_task(_tails_on())  # a follower that goes on reading
    try:
        gw.follower.caught_up.set()
        await asyncio.wait_for(gw._await_directory(follower_running), 10)
        assert not follower_running.done()
    finally:
        follower_running.cancel()
        gw._close()


async def test_start_serves_on_the_files_when_the_topic_is_not_read(
    gateway_settings: Any, world: Any
) -> None:
    gw = make_gateway(gateway_settings, world, 10, {"follow_topic": True, "start_wait_s": 0.01})
    assert gw.follower is not None
    follower_running = asyncio.create_task(_tails_on())
    try:
        await asyncio.wait_for(gw._await_directory(follower_running), 10)
        assert not gw.follower.caught_up.is_set()
        assert gw._ready_directory() == "directory topic i24.directory not read yet"
    finally:
        follower_running.cancel()
        gw._close()


def test_status_never_moves_backwards(world: Any, db: Database) -> None:
    """docs/gateway.md: notices applied late or out of order never lower a status, and a
    terminal status is final; each notice is still kept in the event history."""
    mid = _queued(world, db)
    db.write_sync(lambda c: outbox.mark_sent(c, [mid], NOW + 1))
    assert _status(db, mid)["status"] == "SENT"
    _notice(db, mid, "DELIVERED", ["JP"])
    for late in ("ACCEPTED", "HELD_FOR_REVIEW", "APPROVED"):  # read after the delivery
        _notice(db, mid, late, [])
        assert _status(db, mid)["status"] == "DELIVERED", late
    db.write_sync(lambda c: outbox.mark_sent(c, [mid], NOW + 2))  # a re-sent round's ack
    assert _status(db, mid)["status"] == "DELIVERED"
    assert _receipt(db, mid, "JP") is outbox.ReceiptOutcome.APPLIED
    _notice(db, mid, "DELIVERED", ["JP"])
    assert _status(db, mid)["status"] == "RECEIPTED"
    # a terminal status is final, whatever comes after it
    held = _queued(world, db)
    _notice(db, held, "HELD_FOR_REVIEW", [])
    _notice(db, held, "REJECTED", [])
    for late in ("ACCEPTED", "APPROVED", "DELIVERED", "EXPIRED"):
        _notice(db, held, late, ["JP"] if late == "DELIVERED" else [])
        assert _status(db, held)["status"] == "REJECTED", late
    assert [e["status"] for e in _status(db, held)["events"]] == [
        "ACCEPTED",
        "HELD_FOR_REVIEW",
        "REJECTED",
        "ROUTED",
        "APPROVED",
        "DELIVERED",
        "EXPIRED",
    ]


async def test_stopping_gateway_refuses_with_503(gateway: Gateway, authorize: Any) -> None:
    transport = httpx.ASGITransport(app=gateway.app)
    headers = authorize(gateway.settings)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers) as c:
        body = {"kind": "POLICE_MESSAGE", "to": ["JP"], "payload": PM}
        assert (await c.post("/v1/messages", json=body)).status_code == 202
        gateway.stop()
        r = await c.post("/v1/messages", json=body)
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert r.json()["error"] == "stopping"
        assert (await c.get("/v1/status")).json()["accepting"] is False
    assert gateway.backlog.messages == 1
