"""The review service and its HTTP API without a broker: docs/router.md, "Review API and CLI".

``ReviewService`` is built around a stand-in for ``RouterApp`` that has the
real ``Pipeline`` (real keys, the shipped policy, an in-memory replay window,
a clock the test moves) and records what ``execute`` would commit in one
transaction. The store is fed the way ``ReviewService.run`` feeds it: the
pipeline's own ``i24.quarantine`` record, and an audit record that closes it.
The HTTP layer is the real FastAPI router (``review_router``) over ASGI.

``i24.review`` (claims and four-eyes proposals) is a :class:`MemoryLog`: a
list every service of the test reads, in append order, as each instance reads
the one partition of the topic; ``gate`` holds records back until both racing
instances have appended, so the read-back rule (first claim in log order
wins) is what decides a race, not the order of the calls.

Checked: 401 without an identity (proxy mode and token mode), the bearer
token maps to the reviewer who is audited (a proxy header does not override
it), 404 for an unknown hold and 409 for a decided one, approve -> delivered
with a ``REVIEW_APPROVED`` attestation naming the review, reject -> ``REJECTED``
notice with the grounds, a hold that expired by review time is closed as
``EXPIRED`` on approval, not delivered; four-eyes (a refusal is a proposal until
a different reviewer confirms; seen by another instance and after a restart);
two instances deciding one hold at once: one delivers, the other gets 409;
a dead instance's claim stops blocking after ``claim_timeout_ms``; the queue's
order (overdue, precedence, age) and the overdue gauge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from i24net.audit import Action, Chain, Entry, RawRecord
from i24net.directory import Directory
from i24net.envelope import Decision, Opened, Receiver, Recipients
from i24net.errors import NotHeld, ReviewConflict, ReviewForbidden
from i24net.policy import Engine, load_policy
from i24net.replay import ReplayWindow
from i24net.router.app import RouterApp
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import Decided, Out, Pipeline
from i24net.router.review import ReviewService, review_router, review_topic
from i24net.router.settings import RouterSettings, Topics, load_settings
from i24net.router.testing import Network, build_network, hints, red_notice, settings_toml
from i24net.schemas import SchemaStore

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
T0 = 1_780_000_000_000
HOUR_MS = 3_600_000
PREFIX = "t."
TOPICS = Topics(prefix=PREFIX)
TOKEN = "s3cret-token-of-alice"
HELD_TEXT = "Opposition journalist accused of fraud after the elections."


class Clock:
    """The router's clock; tests move it to let a hold expire."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@dataclasses.dataclass
class Record:
    """What ``ReviewService._apply`` reads of an aiokafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class MemoryLog:
    """``i24.review`` in memory: appends get offsets in order; every subscribed service
    reads every record. With ``gate`` set, records wait in the log until ``release``."""

    def __init__(self, topic: str = review_topic(TOPICS)) -> None:
        self.topic = topic
        self.records: list[tuple[bytes, bytes]] = []
        self.readers: list[ReviewService] = []
        self.delivered = 0
        self.gate: asyncio.Event | None = None
        self.appended = asyncio.Event()

    def subscribe(self, svc: ReviewService) -> None:
        self.readers.append(svc)
        for off, (k, v) in enumerate(self.records[: self.delivered]):
            svc._apply(Record(self.topic, 0, off, k, v, ()))

    def deliver(self) -> None:
        for off in range(self.delivered, len(self.records)):
            k, v = self.records[off]
            for svc in self.readers:
                svc._apply(Record(self.topic, 0, off, k, v, ()))
        self.delivered = len(self.records)

    async def append(self, key: bytes, value: bytes) -> int:
        self.records.append((key, value))
        self.appended.set()
        if self.gate is None:
            self.deliver()
        return len(self.records) - 1

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for _, v in self.records if (r := json.loads(v))["type"] == kind]


class FakeApp:
    """The parts of ``RouterApp`` the review service uses; ``execute`` only records."""

    def __init__(self, net: Network, clock: Clock) -> None:
        self.store: SchemaStore = net.store
        self.registry = CollectorRegistry()
        self.metrics = RouterMetrics.create(self.registry)
        self.pipeline = Pipeline(
            secrets=net.secrets["GS"],
            directory=Directory(list(net.directory)),
            replay=ReplayWindow(clock=clock),
            engine=Engine(load_policy(POLICY)),
            topics=TOPICS,
            store=net.store,
            actor="router/a",
            metrics=self.metrics,
        )
        self.chain = Chain("router/a", net.store)
        self.executed: list[list[Decided]] = []
        self.fail_next = False

    async def execute(self, decided: Sequence[Decided]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the transaction aborted")
        self.executed.append(list(decided))


@dataclasses.dataclass
class World:
    net: Network
    clock: Clock
    app: FakeApp
    svc: ReviewService
    log: MemoryLog
    quarantine: list[Record] = dataclasses.field(default_factory=list)
    audit: list[RawRecord] = dataclasses.field(default_factory=list)
    """What this world's router wrote to ``i24.audit`` (the HELD entries of ``hold``)."""

    def hold(
        self,
        text: str = HELD_TEXT,
        *,
        lifetime_ms: int = 24 * HOUR_MS,
        precedence: Any = None,
        sender: str = "FR",
    ) -> str:
        """``sender`` sends a Red Notice request the policy holds; the quarantine record
        is loaded into every service reading this world's log."""
        gw = self.net.gateway(sender, self.clock.now)
        kw: dict[str, Any] = {"lifetime_ms": lifetime_ms}
        if precedence is not None:
            kw["precedence"] = precedence
        h, data = gw.message(
            "RED_NOTICE_REQUEST",
            red_notice(text),
            Recipients.to(*({"FR", "JP", "BR"} - {sender})),
            self.clock.now,
            **kw,
        )
        d = self.app.pipeline.process(TOPICS.out(sender), "o:0:1", b"k", data, hints(h), set())
        assert d.status == "held", d.reason
        (q,) = (o for o in d.outputs if o.topic == TOPICS.quarantine)
        rec = Record(q.topic, 0, len(self.quarantine), q.key, q.value, q.headers)
        self.quarantine.append(rec)
        for svc in self.log.readers:
            svc._apply(rec)
        for e in d.audit:  # the HELD entry, as the store reads it from i24.audit
            (a,) = self.app.chain.extend([e], self.clock.now)
            self.audit.append(RawRecord(len(self.audit), a.key, a.value, tuple(a.headers)))
            for svc in self.log.readers:
                svc._apply(Record(TOPICS.audit, 0, 0, a.key, a.value, ()))
        return h.message_id

    def instance(self, s: RouterSettings | None = None) -> ReviewService:
        """Another router instance's review service on the same topics (and log)."""
        svc = ReviewService(cast(RouterApp, self.app), s or self.svc.settings, log=self.log)
        for rec in self.quarantine:
            svc._apply(rec)
        self.log.subscribe(svc)
        return svc

    def committed(self) -> list[Decided]:
        """The decisions of the last ``execute`` call."""
        assert self.app.executed, "nothing was committed"
        return self.app.executed[-1]

    def open_as(self, station: str, out: Out) -> Opened:
        rx = Receiver(
            self.net.secrets[station],
            self.net.directory,
            ReplayWindow(clock=self.clock),
            store=self.net.store,
        )
        return rx.open(out.value)

    def notice_to(self, station: str, decided: Sequence[Decided]) -> dict[str, Any]:
        outs = [o for d in decided for o in d.outputs if o.topic == TOPICS.inbox(station)]
        (out,) = outs
        opened = self.open_as(station, out)
        assert opened.header.kind == "STATUS_NOTICE" and opened.header.sender == "GS"
        _, n = self.net.store.decode_single(opened.payload, expected="net.i24.StatusNotice")
        return n

    def verdicts(self) -> dict[str, float]:
        return {
            v: self.app.registry.get_sample_value(
                "i24net_router_review_decisions_total", {"verdict": v}
            )
            or 0.0
            for v in ("approved", "rejected", "expired")
        }


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(("FR", "JP", "BR"), tmp_path_factory.mktemp("keys"), now_ms=T0)


def settings(tmp: Path, *, tokens: dict[str, str] | None = None, **review: Any) -> RouterSettings:
    """Router settings; ``review`` overrides ``[review]`` keys (four-eyes is off unless
    a test turns it on: most tests here are about one decision taking effect)."""
    tokens_file = None
    if tokens is not None:
        tokens_file = tmp / "reviewers.toml"
        lines = ["[tokens]"]
        for token, who in tokens.items():
            lines.append(
                f'"{hashlib.blake2b(token.encode(), digest_size=32).hexdigest()}" = "{who}"'
            )
        tokens_file.write_text("\n".join(lines) + "\n")
    cfg = tmp / "router.toml"
    cfg.write_text(
        settings_toml(
            instance="a",
            bootstrap="127.0.0.1:9",
            prefix=PREFIX,
            keys_dir=tmp / "keys",
            state_dir=tmp / "state",
            policy=POLICY,
            tokens_file=tokens_file,
        )
    )
    s = load_settings(cfg)
    update = {"four_eyes_refusals": False, **review}
    return s.model_copy(update={"review": s.review.model_copy(update=update)})


def make_world(net: Network, s: RouterSettings) -> World:
    clock = Clock()
    app = FakeApp(net, clock)
    log = MemoryLog()
    svc = ReviewService(cast(RouterApp, app), s, log=log)
    log.subscribe(svc)
    return World(net, clock, app, svc, log)


@pytest.fixture
def world(net: Network, tmp_path: Path) -> World:
    return make_world(net, settings(tmp_path))


@pytest.fixture
def tokened(net: Network, tmp_path: Path) -> World:
    return make_world(net, settings(tmp_path, tokens={TOKEN: "reviewer.alice"}))


async def client(w: World) -> httpx.AsyncClient:
    http = FastAPI()
    http.include_router(review_router(w.svc))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=http), base_url="http://review")


@pytest.fixture
async def api(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with await client(world) as c:
        yield c


@pytest.fixture
async def tokened_api(tokened: World) -> AsyncIterator[httpx.AsyncClient]:
    async with await client(tokened) as c:
        yield c


AS_BOB = {"X-I24-Reviewer": "reviewer.bob"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


# --- identity ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/review/held", None),
        ("GET", "/review/held/{id}", None),
        ("POST", "/review/held/{id}/approve", {"explanation": "ok"}),
        ("POST", "/review/held/{id}/reject", {"grounds": "POLITICAL", "explanation": "no"}),
    ],
)
async def test_without_an_identity_every_endpoint_is_401_and_nothing_is_decided(
    world: World, api: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    mid = world.hold()
    r = await api.request(method, path.format(id=mid), json=body)
    assert r.status_code == 401, r.text
    assert set(world.svc.held) == {mid} and world.app.executed == []


async def test_the_proxy_header_names_the_reviewer_who_is_audited(
    world: World, api: httpx.AsyncClient
) -> None:
    mid = world.hold()
    r = await api.get("/review/held", headers=AS_BOB)
    assert r.status_code == 200 and [h["message_id"] for h in r.json()] == [mid]
    r = await api.post(f"/review/held/{mid}/approve", json={"explanation": "ok"}, headers=AS_BOB)
    assert r.status_code == 200, r.text
    (d,) = world.committed()
    assert d.audit[-1].actor == "reviewer.bob"


@pytest.mark.parametrize("peer", ["192.0.2.10", "10.1.2.3", "::ffff:192.0.2.10"])
async def test_the_proxy_header_from_another_machine_is_no_identity(
    world: World, peer: str
) -> None:
    """``[http]`` also serves /metrics, so it is often bound where Prometheus can reach it:
    anyone there could name themselves (and a second "reviewer" to confirm their own
    refusal) with the header. It is an identity only from this machine's own proxy."""
    mid = world.hold()
    http = FastAPI()
    http.include_router(review_router(world.svc))
    transport = httpx.ASGITransport(app=http, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://review") as c:
        assert (await c.get("/review/held", headers=AS_BOB)).status_code == 401
        r = await c.post(f"/review/held/{mid}/approve", json={"explanation": "ok"}, headers=AS_BOB)
        assert r.status_code == 401 and "tokens_file" in r.text
    assert set(world.svc.held) == {mid} and world.app.executed == []
    for local in ("127.0.0.1", "::1"):
        transport = httpx.ASGITransport(app=http, client=(local, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://review") as c:
            assert (await c.get("/review/held", headers=AS_BOB)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        AS_BOB,  # the proxy header is not an identity once tokens are configured
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": TOKEN},  # no scheme
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
async def test_with_a_tokens_file_only_a_known_bearer_token_is_an_identity(
    tokened: World, tokened_api: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    mid = tokened.hold()
    assert (await tokened_api.get("/review/held", headers=headers)).status_code == 401
    r = await tokened_api.post(
        f"/review/held/{mid}/reject",
        json={"grounds": "POLITICAL", "explanation": "no"},
        headers=headers,
    )
    assert r.status_code == 401
    assert tokened.app.executed == []


async def test_the_token_names_the_reviewer_and_a_proxy_header_cannot_override_it(
    tokened: World, tokened_api: httpx.AsyncClient
) -> None:
    mid = tokened.hold()
    r = await tokened_api.post(
        f"/review/held/{mid}/reject",
        json={"grounds": "POLITICAL", "explanation": "Political offence"},
        headers={**BEARER, **AS_BOB},
    )
    assert r.status_code == 200, r.text
    (d,) = tokened.committed()
    assert d.audit[-1].actor == "reviewer.alice"


# --- 404 --------------------------------------------------------------------------------


async def test_an_unknown_hold_is_404_everywhere(world: World, api: httpx.AsyncClient) -> None:
    world.hold()
    unknown = "01J0000000000000000000000A"
    assert (await api.get(f"/review/held/{unknown}", headers=AS_BOB)).status_code == 404
    r = await api.post(f"/review/held/{unknown}/approve", json={}, headers=AS_BOB)
    assert r.status_code == 404
    r = await api.post(
        f"/review/held/{unknown}/reject",
        json={"grounds": "OTHER", "explanation": "x" * 30},
        headers=AS_BOB,
    )
    assert r.status_code == 404
    assert world.app.executed == []


async def test_a_decided_hold_is_409_and_is_not_decided_twice(
    world: World, api: httpx.AsyncClient
) -> None:
    mid = world.hold()
    r = await api.post(f"/review/held/{mid}/approve", json={}, headers=AS_BOB)
    assert r.status_code == 200
    for path, body in (
        ("approve", {}),
        ("reject", {"grounds": "OTHER", "explanation": "x" * 30}),
    ):
        r = await api.post(f"/review/held/{mid}/{path}", json=body, headers=AS_BOB)
        assert r.status_code == 409, (path, r.text)
        assert "already decided" in r.json()["detail"]
    assert (await api.get(f"/review/held/{mid}", headers=AS_BOB)).status_code == 404
    assert len(world.app.executed) == 1


def test_an_audit_record_closing_the_hold_removes_it_from_the_store(world: World) -> None:
    """How a restarted instance learns that a hold was decided (the store is rebuilt)."""
    mid, other = world.hold(), world.hold("Insulting the head of state, and fraud.")
    (rec,) = world.app.chain.extend([Entry(Action.REJECTED, "reviewer.x", message_id=mid)], T0)
    world.svc._apply(Record(TOPICS.audit, 0, 0, rec.key, rec.value, ()))
    assert set(world.svc.held) == {other}
    with pytest.raises(ReviewConflict, match=f"{mid} is already decided"):
        world.svc.show(mid)
    with pytest.raises(NotHeld, match="01J0000000000000000000000A"):
        world.svc.show("01J0000000000000000000000A")


# --- decisions --------------------------------------------------------------------------


async def test_approve_delivers_with_an_attestation_naming_the_review(
    world: World, api: httpx.AsyncClient
) -> None:
    mid = world.hold()
    shown = (await api.get(f"/review/held/{mid}", headers=AS_BOB)).json()
    assert shown["rule"] == "WANTED-PERSON-RISK" and shown["payload"]["case"]["facts"] == HELD_TEXT
    r = await api.post(
        f"/review/held/{mid}/approve", json={"explanation": "Fraud predominates"}, headers=AS_BOB
    )
    body = r.json()
    assert body["status"] == "delivered", body
    (d,) = world.committed()
    for station in ("JP", "BR"):
        (out,) = (o for o in d.outputs if o.topic == TOPICS.inbox(station))
        att = world.open_as(station, out).attestation
        assert att.decision is Decision.REVIEW_APPROVED and att.review_id == body["review_id"]
    assert world.notice_to("FR", [d])["status"] == "DELIVERED"
    entry = d.audit[-1]
    assert entry.action is Action.APPROVED and entry.actor == "reviewer.bob"
    assert json.loads(entry.reason or "")["reasons"] == [
        f"review:{body['review_id']}",
        "reviewer:reviewer.bob",
        "note:Fraud predominates",
    ]
    assert world.verdicts() == {"approved": 1, "rejected": 0, "expired": 0}
    assert world.svc.held == {}


async def test_reject_notifies_the_sender_with_the_grounds(
    world: World, api: httpx.AsyncClient
) -> None:
    mid = world.hold()
    r = await api.post(
        f"/review/held/{mid}/reject",
        json={"grounds": "POLITICAL", "explanation": "Political offence (Art. 3)"},
        headers=AS_BOB,
    )
    assert r.json()["status"] == "rejected"
    decided = world.committed()
    n = world.notice_to("FR", decided)
    assert (n["message_id"], n["status"], n["reason"], n["explanation"]) == (
        mid,
        "REJECTED",
        "POLITICAL",
        "Political offence (Art. 3)",
    )
    topics = {o.topic for d in decided for o in d.outputs}
    assert topics == {TOPICS.inbox("FR")}  # nothing to JP or BR
    (entry,) = (e for d in decided for e in d.audit)
    assert entry.action is Action.REJECTED and entry.actor == "reviewer.bob"
    assert world.verdicts() == {"approved": 0, "rejected": 1, "expired": 0}


async def test_a_hold_that_expired_by_review_time_is_closed_expired_not_delivered(
    world: World, api: httpx.AsyncClient
) -> None:
    mid = world.hold(lifetime_ms=HOUR_MS)
    world.clock.now += 2 * HOUR_MS  # the reviewer comes back after the message expired
    r = await api.post(f"/review/held/{mid}/approve", json={"explanation": "ok"}, headers=AS_BOB)
    body = r.json()
    assert (body["status"], body["reason"]) == ("expired", "expired"), body
    decided = world.committed()
    topics = {o.topic for d in decided for o in d.outputs}
    assert topics == {TOPICS.inbox("FR")}  # the notice only: no delivery to JP or BR
    n = world.notice_to("FR", decided)
    assert (n["message_id"], n["status"], n["reason"]) == (mid, "EXPIRED", "expired")
    (entry,) = (e for d in decided for e in d.audit)
    assert entry.action is Action.EXPIRED and entry.actor == "reviewer.bob"
    assert world.verdicts() == {"approved": 0, "rejected": 0, "expired": 1}
    assert world.svc.held == {}


async def test_a_hold_approved_in_time_is_delivered(world: World, api: httpx.AsyncClient) -> None:
    """The control for the test above: the same hold, approved before it expires."""
    mid = world.hold(lifetime_ms=HOUR_MS)
    world.clock.now += HOUR_MS // 2
    r = await api.post(f"/review/held/{mid}/approve", json={}, headers=AS_BOB)
    assert r.json()["status"] == "delivered"


async def test_the_list_is_oldest_first(world: World, api: httpx.AsyncClient) -> None:
    first = world.hold()
    world.clock.now += 1000
    second = world.hold("Insulting the head of state, and fraud.")
    r = await api.get("/review/held", headers=AS_BOB)
    assert [h["message_id"] for h in r.json()] == [first, second]
    assert [h["held_ms"] for h in r.json()] == [T0, T0 + 1000]


# --- four-eyes ----------------------------------------------------------------------------

AS_CAROL = {"X-I24-Reviewer": "reviewer.carol"}
REFUSAL = {"grounds": "POLITICAL", "explanation": "Political offence (Art. 3)"}


@pytest.fixture
def four_eyes(net: Network, tmp_path: Path) -> World:
    return make_world(net, settings(tmp_path, four_eyes_refusals=True))


@pytest.fixture
async def four_eyes_api(four_eyes: World) -> AsyncIterator[httpx.AsyncClient]:
    async with await client(four_eyes) as c:
        yield c


async def test_with_four_eyes_a_refusal_is_only_proposed_until_another_reviewer_confirms(
    four_eyes: World, four_eyes_api: httpx.AsyncClient
) -> None:
    w, api = four_eyes, four_eyes_api
    mid = w.hold()
    r = await api.post(f"/review/held/{mid}/reject", json=REFUSAL, headers=AS_BOB)
    assert r.status_code == 200 and r.json()["status"] == "proposed", r.text
    pid = r.json()["proposal_id"]
    assert w.app.executed == [] and set(w.svc.held) == {mid}
    (listed,) = (await api.get("/review/held", headers=AS_CAROL)).json()
    assert listed["proposal"]["reviewer"] == "reviewer.bob"

    # the proposer cannot confirm their own proposal
    r = await api.post(f"/review/held/{mid}/confirm", json={"proposal_id": pid}, headers=AS_BOB)
    assert r.status_code == 403 and w.app.executed == []
    # nor can anyone decide around it
    r = await api.post(f"/review/held/{mid}/approve", json={}, headers=AS_CAROL)
    assert r.status_code == 409 and w.app.executed == []

    r = await api.post(f"/review/held/{mid}/confirm", json={"proposal_id": pid}, headers=AS_CAROL)
    assert r.status_code == 200 and r.json()["status"] == "rejected", r.text
    decided = w.committed()
    n = w.notice_to("FR", decided)
    assert (n["status"], n["reason"], n["explanation"]) == (
        "REJECTED",
        "POLITICAL",
        "Political offence (Art. 3)",
    )
    (entry,) = (e for d in decided for e in d.audit)
    assert entry.action is Action.REJECTED and entry.actor == "reviewer.carol"
    reasons = json.loads(entry.reason or "")["reasons"]
    assert f"proposal:{pid}" in reasons and "proposed:reviewer.bob" in reasons
    assert "grounds:POLITICAL" in reasons


async def test_an_approval_needs_no_second_reviewer_unless_configured(
    net: Network, tmp_path: Path
) -> None:
    w = make_world(net, settings(tmp_path, four_eyes_refusals=True))
    mid = w.hold()
    assert (await w.svc.decide(mid, "reviewer.bob", "approve"))["status"] == "delivered"
    w2 = make_world(
        net, settings(tmp_path, four_eyes_refusals=True, four_eyes_red_notice_approvals=True)
    )
    mid2 = w2.hold()
    assert (await w2.svc.decide(mid2, "reviewer.bob", "approve"))["status"] == "proposed"
    assert w2.app.executed == []


async def test_a_proposal_is_seen_by_every_instance_and_survives_a_restart(
    four_eyes: World,
) -> None:
    w = four_eyes
    mid = w.hold()
    out = await w.svc.decide(mid, "reviewer.bob", "reject", "MILITARY", "A military offence.")
    other = w.instance()  # another instance, or this one restarted: reads the log again
    assert other.proposals[mid].proposal_id == out["proposal_id"]
    assert other.proposals[mid].reviewer == "reviewer.bob"
    with pytest.raises(ReviewForbidden):
        await other.confirm(mid, "reviewer.bob", out["proposal_id"])
    assert (await other.confirm(mid, "reviewer.carol", out["proposal_id"]))["status"] == (
        "rejected"
    )


async def test_a_withdrawn_proposal_cannot_be_confirmed(four_eyes: World) -> None:
    w = four_eyes
    mid = w.hold()
    pid = (await w.svc.decide(mid, "reviewer.bob", "reject", "RACIAL", "Racial grounds."))[
        "proposal_id"
    ]
    assert (await w.svc.withdraw(mid, "reviewer.carol", pid))["status"] == "withdrawn"
    with pytest.raises(ReviewConflict, match="no longer pending"):
        await w.svc.confirm(mid, "reviewer.dave", pid)
    assert w.app.executed == [] and mid not in w.svc.proposals
    assert [t.action for t in w.svc.trails[mid]] == ["HELD", "PROPOSED reject RACIAL", "WITHDRAWN"]


async def test_of_two_proposals_made_at_once_the_first_in_the_log_stands(
    four_eyes: World,
) -> None:
    w = four_eyes
    mid = w.hold()
    b = w.instance()
    w.log.gate = asyncio.Event()

    async def release_when_both_proposed() -> None:
        while len(w.log.of_type("proposal")) < 2:
            w.log.appended.clear()
            await w.log.appended.wait()
        w.log.deliver()
        w.log.gate = None

    first, second, _ = await asyncio.gather(
        w.svc.decide(mid, "reviewer.bob", "reject", "POLITICAL", "Political offence."),
        b.decide(mid, "reviewer.carol", "reject", "RACIAL", "Racial grounds."),
        release_when_both_proposed(),
        return_exceptions=True,
    )
    assert isinstance(first, dict) and first["status"] == "proposed", (first, second)
    assert isinstance(second, ReviewConflict), (first, second)
    for svc in (w.svc, b):  # every instance agrees on the one that stands
        assert svc.proposals[mid].proposal_id == first["proposal_id"]
        assert svc.proposals[mid].reviewer == "reviewer.bob"


async def test_other_grounds_must_say_why(world: World, api: httpx.AsyncClient) -> None:
    mid = world.hold()
    r = await api.post(
        f"/review/held/{mid}/reject",
        json={"grounds": "OTHER", "explanation": "no"},
        headers=AS_BOB,
    )
    assert r.status_code == 422 and world.app.executed == []
    r = await api.post(
        f"/review/held/{mid}/reject",
        json={"grounds": "OTHER", "explanation": "Private dispute between business partners."},
        headers=AS_BOB,
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"


@pytest.mark.parametrize(
    ("verdict", "explanation"),
    [
        ("reject", "Private dispute\x1b[2J\x1b]0;owned\x07 between partners."),  # terminal escapes
        ("reject", "Refused: the facts are \u202epolitical\u202c in nature, see Art. 3."),  # bidi
        ("reject", "Refused on other grounds\x00 with a NUL inside it."),
        ("approve", "ok\x1b[31m"),
    ],
)
async def test_an_explanation_with_control_characters_never_reaches_the_sender(
    world: World, api: httpx.AsyncClient, verdict: str, explanation: str
) -> None:
    """The explanation goes to the sender's systems and terminals in the status notice (and
    into the audit): terminal escapes, NULs and bidi overrides (text shown reversed to the
    sender or to the confirming reviewer) are refused 422, and nothing is proposed or sent.
    Line breaks and tabs stay allowed."""
    mid = world.hold()
    body: dict[str, str] = {"explanation": explanation}
    if verdict == "reject":
        body["grounds"] = "OTHER"
    r = await api.post(f"/review/held/{mid}/{verdict}", json=body, headers=AS_BOB)
    assert r.status_code == 422, r.text
    assert "\x1b" not in r.text and "control character" in r.text
    assert world.app.executed == [] and world.log.records == []
    ok = "Private dispute between partners;\n\tnot a police matter."
    r = await api.post(
        f"/review/held/{mid}/reject",
        json={"grounds": "OTHER", "explanation": ok},
        headers=AS_BOB,
    )
    assert r.status_code == 200, r.text


# --- claims: one decision across instances ------------------------------------------------


async def test_two_instances_deciding_one_hold_at_once_deliver_once(world: World) -> None:
    """Both have checked the hold is open and appended their claims before either reads
    the log back: the first claim in log order wins, the other is refused."""
    mid = world.hold()
    b = world.instance()
    world.log.gate = asyncio.Event()

    async def release_when_both_claimed() -> None:
        while len(world.log.of_type("claim")) < 2:
            world.log.appended.clear()
            await world.log.appended.wait()
        world.log.deliver()
        world.log.gate = None

    results = await asyncio.gather(
        world.svc.approve(mid, "reviewer.bob", "ok"),
        b.reject(mid, "reviewer.carol", "POLITICAL", "no"),
        release_when_both_claimed(),
        return_exceptions=True,
    )
    won, lost, _ = results
    assert isinstance(won, dict) and won["status"] == "delivered", results
    assert isinstance(lost, ReviewConflict) and "reviewer.bob" in str(lost), results
    assert len(world.app.executed) == 1  # nothing delivered or refused twice


@pytest.mark.parametrize("confirm_first", [True, False])
async def test_a_confirmation_racing_a_withdrawal_is_one_or_the_other(
    net: Network, tmp_path: Path, confirm_first: bool
) -> None:
    """Bob confirms Alice's refusal on one instance while Carol withdraws it on another,
    both having seen it pending. Before, both were told they succeeded: the withdrawal
    removed the proposal and the confirmation still refused the message (a refusal whose
    proposal was withdrawn reached the sender). Now exactly one of them stands."""
    w = make_world(net, settings(tmp_path, four_eyes_refusals=True))
    mid = w.hold()
    p = await w.svc.decide(mid, "reviewer.alice", "reject", "POLITICAL", "political facts")
    b = w.instance()
    w.log.gate = asyncio.Event()
    before = len(w.log.records)

    async def release_when_both_appended() -> None:
        while len(w.log.records) < before + 2:
            w.log.appended.clear()
            await w.log.appended.wait()
        w.log.deliver()
        w.log.gate = None

    confirm = w.svc.confirm(mid, "reviewer.bob", p["proposal_id"])
    withdraw = b.withdraw(mid, "reviewer.carol", p["proposal_id"])
    first, second = (confirm, withdraw) if confirm_first else (withdraw, confirm)
    results = await asyncio.gather(
        first, second, release_when_both_appended(), return_exceptions=True
    )
    confirmed, withdrawn = (results[0], results[1]) if confirm_first else results[1::-1]
    ok = [r for r in (confirmed, withdrawn) if isinstance(r, dict)]
    assert len(ok) == 1, results
    assert all(isinstance(r, (dict, ReviewConflict)) for r in results[:2]), results
    if isinstance(confirmed, dict):
        assert confirmed["status"] == "rejected" and len(w.app.executed) == 1
    else:
        assert withdrawn["status"] == "withdrawn" and w.app.executed == []  # type: ignore[index]
        assert mid in w.svc.held and mid not in w.svc.proposals


async def test_a_live_claim_blocks_until_it_times_out(world: World) -> None:
    """An instance that claimed and died before committing: the hold is decidable again
    once ``claim_timeout_ms`` has passed since its claim."""
    mid = world.hold()
    await world.log.append(
        mid.encode(),
        json.dumps(
            {
                "type": "claim",
                "message_id": mid,
                "claim_id": "C-dead",
                "reviewer": "reviewer.zed",
                "at_ms": world.clock.now,
            }
        ).encode(),
    )
    with pytest.raises(ReviewConflict, match=r"reviewer\.zed"):
        await world.svc.approve(mid, "reviewer.bob", "ok")
    world.clock.now += world.svc.settings.review.claim_timeout_ms
    assert (await world.svc.approve(mid, "reviewer.bob", "ok"))["status"] == "delivered"


async def test_a_failed_commit_releases_its_claim(world: World) -> None:
    mid = world.hold()
    world.app.fail_next = True
    with pytest.raises(RuntimeError):
        await world.svc.approve(mid, "reviewer.bob", "ok")
    assert [r["claim_id"] for r in world.log.of_type("release")] == [
        r["claim_id"] for r in world.log.of_type("claim")
    ]
    assert (await world.svc.approve(mid, "reviewer.bob", "ok"))["status"] == "delivered"


def test_malformed_review_records_are_ignored(world: World) -> None:
    mid = world.hold()
    for value in (
        b"not json",
        b"[]",
        b'{"type": "claim"}',
        b'{"type":"x","message_id":"m","reviewer":"r","at_ms":1}',
    ):
        world.svc._apply(Record(world.log.topic, 0, 0, mid.encode(), value, ()))
    assert world.svc.claims == {} and world.svc.proposals == {}
    assert world.svc._progress.next_offset == 1


# --- queue, deadlines, record ----------------------------------------------------------


async def test_the_queue_puts_overdue_first_then_precedence_then_age(
    world: World, api: httpx.AsyncClient
) -> None:
    from i24net.envelope import Precedence

    routine = world.hold(precedence=Precedence.ROUTINE)
    world.clock.now += 1000
    flash = world.hold("Insulting the head of state, and fraud.", precedence=Precedence.FLASH)
    world.clock.now += 1000
    routine2 = world.hold(precedence=Precedence.ROUTINE)
    r = await api.get("/review/held", headers=AS_BOB)
    assert [h["message_id"] for h in r.json()] == [flash, routine, routine2]
    assert [h["overdue"] for h in r.json()] == [False] * 3
    # FLASH is due in an hour; the Red Notice requests within 24 h (kind limit)
    assert r.json()[0]["deadline_ms"] == T0 + 1000 + HOUR_MS
    assert r.json()[1]["deadline_ms"] == T0 + 24 * HOUR_MS

    world.clock.now = T0 + 24 * HOUR_MS + 500  # the first two Red Notices are overdue
    r = await api.get("/review/held", headers=AS_BOB)
    assert [h["message_id"] for h in r.json()] == [flash, routine, routine2]
    assert [h["overdue"] for h in r.json()] == [True, True, False]
    world.svc._gauges()
    assert world.app.registry.get_sample_value("i24net_review_overdue") == 2


async def test_the_store_keeps_each_senders_record_and_each_messages_trail(
    world: World,
) -> None:
    a, b, c = world.hold(), world.hold(), world.hold(sender="JP")
    await world.svc.approve(a, "reviewer.bob", "ok")
    await world.svc.reject(b, "reviewer.bob", "POLITICAL", "no")
    for d in world.app.executed:  # read back from i24.audit, as after a restart
        for e in (e for x in d for e in x.audit):
            (rec,) = world.app.chain.extend([e], world.clock.now)
            world.svc._apply(Record(TOPICS.audit, 0, 0, rec.key, rec.value, ()))
    fr, jp = world.svc.senders["FR"], world.svc.senders["JP"]
    assert (fr.held, fr.approved, fr.refused) == (2, 1, 1)
    assert (jp.held, jp.approved, jp.refused) == (1, 0, 0)
    assert [t.action for t in world.svc.trails[b]] == ["HELD", "REJECTED"]
    assert world.svc.trails[b][-1].actor == "reviewer.bob"
    assert [t.action for t in world.svc.trails[c]] == ["HELD"]


def test_show_names_the_words_to_highlight(world: World) -> None:
    """Holds recorded without the screen's hits: the current policy's indicators."""
    mid = world.hold()
    words = {w for hit in world.svc.show(mid)["hits"] for w in hit["words"]}
    assert {"opposition journalist", "elections"} & words, words


def test_show_prefers_the_surface_words_the_screen_recorded_with_the_hold(
    world: World,
) -> None:
    mid = world.hold()
    h = world.svc.held[mid]
    screen = json.loads(h.headers["i24-screen"])
    screen["hits"] = [
        {"indicator": "x.one", "category": "political", "lang": "en", "words": ["accused"]},
        {"indicator": "x.two", "category": "status", "terms": ["journalist"]},  # older form
        "not a hit",
    ]
    h.headers["i24-screen"] = json.dumps(screen)
    hits = world.svc.show(mid)["hits"]
    assert [(x["indicator"], x["lang"], x["words"]) for x in hits] == [
        ("x.one", "en", ["accused"]),
        ("x.two", None, ["journalist"]),
    ]
