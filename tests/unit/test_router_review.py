"""The review service and its HTTP API without a broker: docs/router.md, "Review API and CLI".

``ReviewService`` is built around a stand-in for ``RouterApp`` that has the
real ``Pipeline`` (real keys, the shipped policy, an in-memory replay window,
a clock the test moves) and records what ``execute`` would commit in one
transaction. The store is fed the way ``ReviewService.run`` feeds it: the
pipeline's own ``i24.quarantine`` record, and an audit record that closes it.
The HTTP layer is the real FastAPI router (``review_router``) over ASGI.

Checked: 401 without an identity (proxy mode and token mode), the bearer
token maps to the reviewer who is audited (a proxy header does not override
it), 404 for an unknown or already decided hold, approve -> delivered with a
``REVIEW_APPROVED`` attestation naming the review, reject -> ``REJECTED``
notice with the grounds, and a hold that expired by review time is closed as
``EXPIRED`` on approval, not delivered.
"""

from __future__ import annotations

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

from i24net.audit import Action, Chain, Entry
from i24net.directory import Directory
from i24net.envelope import Decision, Opened, Receiver, Recipients
from i24net.errors import NotHeld
from i24net.policy import Engine, load_policy
from i24net.replay import ReplayWindow
from i24net.router.app import RouterApp
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import Decided, Out, Pipeline
from i24net.router.review import ReviewService, review_router
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

    async def execute(self, decided: Sequence[Decided]) -> None:
        self.executed.append(list(decided))


@dataclasses.dataclass
class World:
    net: Network
    clock: Clock
    app: FakeApp
    svc: ReviewService

    def hold(self, text: str = HELD_TEXT, *, lifetime_ms: int = 24 * HOUR_MS) -> str:
        """FR sends a Red Notice request the policy holds; the quarantine record is loaded."""
        gw = self.net.gateway("FR", self.clock.now)
        h, data = gw.message(
            "RED_NOTICE_REQUEST",
            red_notice(text),
            Recipients.to("JP", "BR"),
            self.clock.now,
            lifetime_ms=lifetime_ms,
        )
        d = self.app.pipeline.process(TOPICS.out("FR"), "o:0:1", b"k", data, hints(h), set())
        assert d.status == "held", d.reason
        (q,) = (o for o in d.outputs if o.topic == TOPICS.quarantine)
        self.svc._apply(Record(q.topic, 0, len(self.svc.held), q.key, q.value, q.headers))
        return h.message_id

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


def settings(tmp: Path, *, tokens: dict[str, str] | None = None) -> RouterSettings:
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
    return load_settings(cfg)


def make_world(net: Network, s: RouterSettings) -> World:
    clock = Clock()
    app = FakeApp(net, clock)
    return World(net, clock, app, ReviewService(cast(RouterApp, app), s))


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
        json={"grounds": "OTHER", "explanation": "x"},
        headers=AS_BOB,
    )
    assert r.status_code == 404
    assert world.app.executed == []


async def test_a_decided_hold_is_404_and_is_not_decided_twice(
    world: World, api: httpx.AsyncClient
) -> None:
    mid = world.hold()
    r = await api.post(f"/review/held/{mid}/approve", json={}, headers=AS_BOB)
    assert r.status_code == 200
    for path, body in (
        ("approve", {}),
        ("reject", {"grounds": "OTHER", "explanation": "x"}),
    ):
        r = await api.post(f"/review/held/{mid}/{path}", json=body, headers=AS_BOB)
        assert r.status_code == 404, (path, r.text)
    assert (await api.get(f"/review/held/{mid}", headers=AS_BOB)).status_code == 404
    assert len(world.app.executed) == 1


def test_an_audit_record_closing_the_hold_removes_it_from_the_store(world: World) -> None:
    """How a restarted instance learns that a hold was decided (the store is rebuilt)."""
    mid, other = world.hold(), world.hold("Insulting the head of state, and fraud.")
    (rec,) = world.app.chain.extend([Entry(Action.REJECTED, "reviewer.x", message_id=mid)], T0)
    world.svc._apply(Record(TOPICS.audit, 0, 0, rec.key, rec.value, ()))
    assert set(world.svc.held) == {other}
    with pytest.raises(NotHeld, match=mid):
        world.svc.show(mid)


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
