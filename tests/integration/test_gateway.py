"""Gateways against the real broker: round trip, bad input, forged envelopes, broker outage,
kill -9 and restart. The router is played by a test helper (``FakeRouter``) that calls
``Router.open`` + ``Router.deliver`` and produces to ``<prefix>.in.*``, as the real one will.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _gateway_world import GatewayWorld, wait_until
from _gateway_world import make_world as make_gateway_world

from i24net.client import AsyncGatewayClient
from i24net.clock import system_clock
from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.errors import IntakeRefusedError, VerificationError
from i24net.gateway import Gateway, Settings, inbox
from i24net.gateway.auth import create_integrator
from i24net.gateway.outbox import STATUS_ORDER
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.kafka.security import CertificateAuthority
from i24net.replay import ReplayWindow
from i24net.schemas import SchemaStore

pytestmark = pytest.mark.kafka

STORE = SchemaStore.default()
STATIONS = ("FR", "GS", "JP", "BR")

PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}


@dataclass
class World(GatewayWorld):
    """The shared gateway world (``_gateway_world``) plus an integrator token per
    gateway, authenticated clients and TOML settings files."""

    tokens: dict[str, str] = field(default_factory=dict)

    def settings(self, code: str, bootstrap: str, **over: Any) -> Settings:
        return super().settings(
            code, bootstrap, **{"outbox": {"retry_backoff_s": 0.5, "progress_log_s": 2}, **over}
        )

    def token(self, code: str) -> str:
        """The bearer token of integrator ``tester`` (every scope) at ``code``'s gateway,
        created in its store (``<data_dir>/integrators.sqlite3``) on first use."""
        if code not in self.tokens:
            path = self.dir / f"gw-{code}" / "integrators.sqlite3"
            scopes = ["send", "inbox:read", "status:read", "operator"]
            token = create_integrator(path, "tester", scopes, rate_per_s=10_000, burst=10_000)
            assert token is not None
            self.tokens[code] = token
        return self.tokens[code]

    def headers(self, code: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(code)}"}

    def client(self, code: str, port: int, **kw: Any) -> AsyncGatewayClient:
        """An authenticated client of ``code``'s gateway on ``port``."""
        return AsyncGatewayClient(f"http://127.0.0.1:{port}", token=self.token(code), **kw)

    def toml(self, code: str, bootstrap: str, port: int, extra: str = "") -> Path:
        p = self.dir / f"{code}.toml"
        p.write_text(
            f'station = "{code}"\ndata_dir = "gw-{code}"\nshutdown_grace_s = 5\n'
            f'[keys]\nsecret = "keys/{code}.secret.json"\n'
            f'root_public = "keys/gs-root.public.json"\n'
            f'[directory]\nentries = "entries"\n'
            f'[kafka]\nbootstrap = "{bootstrap}"\ntopic_prefix = "{self.prefix}"\n'
            f"request_timeout_ms = 5000\n[api]\nport = {port}\n"
            f"[outbox]\nretry_backoff_s = 0.5\n{extra}",
            encoding="utf-8",
        )
        return p


def make_world(tmp: Path, prefix: str) -> World:
    w = make_gateway_world(tmp, prefix, STATIONS)
    return World(w.dir, w.prefix, w.root, w.secrets, w.directory, w.t0)


async def make_topics(conn: KafkaConnection, prefix: str) -> None:
    # the shared ingress topic (partitioned by sender) and each station's in topic
    specs = [TopicSpec(f"{prefix}.out", 3)] + [TopicSpec(f"{prefix}.in.{c}") for c in STATIONS]
    await ensure_topics(conn, specs)


class FakeRouter:
    """Plays the GS router: open each sender envelope, deliver it, tell the sender."""

    def __init__(
        self,
        w: World,
        conn: KafkaConnection,
        senders: tuple[str, ...],
        *,
        window: ReplayWindow | None = None,
    ) -> None:
        self.w = w
        self.conn = conn
        self.senders = senders
        # a restarted router keeps its replay window, as the real one does (persisted)
        self.window = window if window is not None else ReplayWindow(clock=system_clock)
        self.router = Router(w.secrets["GS"], w.directory, self.window, store=STORE)
        gs_key = w.directory.current_encryption_key("GS", system_clock())
        self.gs_sender = Sender(w.secrets["GS"], gs_key, store=STORE)
        self.routed = 0
        self.refused: collections.Counter[str] = collections.Counter()
        """Envelopes ``Router.open`` refused, by reason: tests assert on it (a gateway
        re-sending after a crash shows as ``replayed``; anything else is a failure)."""
        self.notices = True

    def notice(self, to: str, message_id: str, status: str, stations: list[str]) -> bytes:
        now = system_clock()
        payload = STORE.encode_single(
            "net.i24.StatusNotice",
            {
                "message_id": message_id,
                "status": status,
                "stations": stations,
                "reason": None,
                "explanation": None,
                "at_ms": now,
            },
        )
        h = Header(
            message_id=new_message_id(now),
            sender="GS",
            sender_key_id=self.w.secrets["GS"].signing_key_id,
            recipients=Recipients.to(to),
            kind="STATUS_NOTICE",
            precedence=Precedence.IMMEDIATE,
            created_ms=now,
            expires_ms=now + 3_600_000,
            language=Language.EN,
            payload_fingerprint=STORE.fingerprint("net.i24.StatusNotice"),
        )
        inbound = self.router.open(self.gs_sender.seal(h, payload))
        return self.router.deliver(inbound, [to])[to]

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        p = self.w.prefix
        consumer = AIOKafkaConsumer(
            f"{p}.out",  # the shared ingress topic: only ``senders``' records are routed
            **self.conn.client_kwargs(),
            group_id=f"{p}.router",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            isolation_level="read_committed",
        )
        producer = AIOKafkaProducer(
            **self.conn.client_kwargs(), enable_idempotence=True, max_request_size=2 << 20
        )
        await consumer.start()
        await producer.start()
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                futs = []
                for recs in batch.values():
                    for rec in recs:
                        if _sender_hint(rec) not in self.senders:
                            continue
                        try:
                            inbound = self.router.open(rec.value)
                        except VerificationError as exc:  # e.g. a re-send after a crash
                            self.refused[exc.reason.value] += 1
                            continue
                        h = inbound.header
                        to = list(h.recipients.stations)
                        out = self.router.deliver(inbound, to)
                        for code, env in out.items():
                            futs.append(
                                await producer.send(
                                    f"{p}.in.{code}", env, key=h.message_id.encode()
                                )
                            )
                        if self.notices and h.kind not in ("DELIVERY_RECEIPT", "STATUS_NOTICE"):
                            for status, st in (("ACCEPTED", []), ("DELIVERED", to)):
                                futs.append(
                                    await producer.send(
                                        f"{p}.in.{h.sender}",
                                        self.notice(h.sender, h.message_id, status, st),
                                    )
                                )
                        self.routed += 1
                for f in futs:
                    await f
        finally:
            await consumer.stop()
            await producer.stop()


@contextlib.asynccontextmanager
async def running(coro_fn: Callable[[asyncio.Event], Any]) -> Any:
    stop = asyncio.Event()
    task = asyncio.create_task(coro_fn(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def fr_sending_to_jp(world: World, conn: KafkaConnection, n: int) -> Any:
    """FR's gateway and a FakeRouter, ``n`` messages sent by FR and routed to JP's in
    topic (no JP gateway yet); yields ``(router, FR's client, the message ids)``."""
    router = FakeRouter(world, conn, ("FR", "JP"))
    async with (
        Gateway(world.settings("FR", conn.bootstrap)) as fr,
        running(router.run),
        world.client("FR", fr.port) as cfr,
    ):
        sent = [await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM) for _ in range(n)]
        await wait_until(lambda: router.routed >= n, 60, "every message routed to JP")
        yield router, cfr, sent


@pytest.fixture
def world(tmp_path: Path, unique_name: Callable[[str], str]) -> World:
    return make_world(tmp_path, unique_name("t"))


async def test_two_gateways_round_trip(world: World, kafka_conn: KafkaConnection) -> None:
    await make_topics(kafka_conn, world.prefix)
    boot = kafka_conn.bootstrap
    router = FakeRouter(world, kafka_conn, ("FR", "JP"))
    async with (
        Gateway(world.settings("FR", boot)) as fr,
        Gateway(world.settings("JP", boot)) as jp,
        running(router.run),
        world.client("FR", fr.port) as cfr,
        world.client("JP", jp.port) as cjp,
    ):
        mid = await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM, precedence="FLASH")
        got = await cjp.inbox(wait=20)
        assert [m["message_id"] for m in got["messages"]] == [mid]
        m = await cjp.fetch(mid)
        assert m["payload"]["subject_line"] == "stolen car"
        assert m["sender"] == "FR" and m["decision"] == "SCREEN_PASSED"
        assert await cjp.ack([mid]) == 1
        assert (await cjp.inbox(unacked=True))["messages"] == []

        observed: list[str] = []

        async def receipted() -> bool:
            since = observed[-1] if observed else None
            observed.append((await cfr.status(mid, wait=2, since=since))["status"])
            return observed[-1] == "RECEIPTED"

        await wait_until(receipted, 30, "receipt at FR")
        assert_forward_only(observed)  # as the integrator sees it, while it changes
        st = await cfr.status(mid)
        seen = [e["status"] for e in st["events"]]
        for s in ("ACCEPTED", "SENT", "ROUTED", "DELIVERED", "RECEIPTED"):
            assert s in seen, (s, seen)
        assert not router.refused
        assert st["stations"][0]["station"] == "JP"
        assert st["stations"][0]["delivered_ms"] and st["stations"][0]["receipted_ms"]
        # idempotency key: same request, same id; another body, 409
        a = await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM, idempotency_key="k1")
        b = await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM, idempotency_key="k1")
        assert a == b
        with pytest.raises(Exception) as ei:
            await cfr.send("POLICE_MESSAGE", to=["BR"], payload=PM, idempotency_key="k1")
        assert getattr(ei.value, "code", None) == "idempotency_conflict"
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{fr.port}", headers=world.headers("FR")
        ) as h:
            assert (await h.get("/openapi.json")).json()["paths"]["/v1/messages"]
            assert (await h.get("/docs")).status_code == 200
            assert (await h.get("/readyz")).status_code == 200
            metrics = (await h.get("/metrics")).text
            assert "i24net_gateway_messages_sent_total" in metrics
            assert "i24net_build_info" in metrics


async def test_round_trip_over_mutual_tls(world: World, kafka_conn: KafkaConnection) -> None:
    """Both APIs over TLS with certificates from the project's development CA: FR's
    integrator holds a bearer token, JP's is a client certificate bound by its CN; a
    scope-limited integrator at JP sees nothing of the kind it may not read."""
    from i24net.kafka.security import issue_certificate, write_dev_pki

    await make_topics(kafka_conn, world.prefix)
    pki_dir = world.dir / "api-pki"
    pki = write_dev_pki(pki_dir, broker_names=())
    ca = CertificateAuthority(pki.ca_file.read_bytes(), pki.ca_key_file.read_bytes())

    def pem(name: str, **kw: Any) -> tuple[Path, Path]:
        issued = issue_certificate(ca, name, **kw)
        cert, key = pki_dir / f"{name}.pem", pki_dir / f"{name}.key"
        cert.write_bytes(issued.cert_pem)
        key.write_bytes(issued.key_pem)
        key.chmod(0o600)
        return cert, key

    def tls(code: str) -> dict[str, Any]:
        cert, key = pem(f"gateway-{code}")
        return {"tls": {"cert_file": str(cert), "key_file": str(key),
                        "client_ca_file": str(pki.ca_file)}}  # fmt: skip

    ws_cert, ws_key = pem("jp-analyst-ws", dns_names=(), ip_addresses=())
    jp_settings = world.settings("JP", kafka_conn.bootstrap, api=tls("JP"))
    create_integrator(
        jp_settings.integrators_path,
        "analyst",
        ["inbox:read"],
        token=False,
        cert_cn="jp-analyst-ws",
    )
    border = create_integrator(jp_settings.integrators_path, "border", ["inbox:read:DB_RESPONSE"])
    router = FakeRouter(world, kafka_conn, ("FR", "JP"))
    async with (
        Gateway(world.settings("FR", kafka_conn.bootstrap, api=tls("FR"))) as fr,
        Gateway(jp_settings) as jp,
        running(router.run),
        AsyncGatewayClient(
            f"https://127.0.0.1:{fr.port}", token=world.token("FR"), ca_file=pki.ca_file
        ) as cfr,
        AsyncGatewayClient(
            f"https://localhost:{jp.port}", cert_file=ws_cert, key_file=ws_key, ca_file=pki.ca_file
        ) as cjp,
        AsyncGatewayClient(
            f"https://127.0.0.1:{jp.port}", token=border, ca_file=pki.ca_file
        ) as cborder,
    ):
        mid = await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM)
        got = await cjp.inbox(wait=30)
        assert [m["message_id"] for m in got["messages"]] == [mid]
        assert (await cjp.fetch(mid))["payload"]["subject_line"] == "stolen car"
        assert (await cborder.inbox())["messages"] == []
        with pytest.raises(IntakeRefusedError) as err:
            await cborder.fetch(mid)
        assert err.value.http_status == 403
        st = await cfr.status(mid)
        assert st["integrator"] == "tester"


def assert_forward_only(statuses: list[str]) -> None:
    """Successive statuses of one message never move backwards (docs/gateway.md). Events
    may be recorded out of lifecycle order (a notice can be read before the drain marks
    the message SENT); the status itself may not go back."""
    ranks = [STATUS_ORDER[s] for s in statuses]
    assert ranks == sorted(ranks), statuses


def _sender_hint(rec: Any) -> str | None:
    """The record's ``i24-sender`` header (the drain's routing hint, docs/topics.md)."""
    for k, v in rec.headers or ():
        if k == "i24-sender" and v is not None:
            return bytes(v).decode()
    return None


async def count_keys(
    conn: KafkaConnection, topic: str, *, committed: bool = True, sender: str | None = None
) -> collections.Counter[str]:
    """Records per key (the message id) in every partition of ``topic``, start to end,
    read ``read_committed``: what the broker actually holds, not what an inbox shows.
    ``sender``: only the records this station's gateway wrote (on the shared ingress
    topic, by their ``i24-sender`` hint)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from i24net.audit.topic import prime

    c = AIOKafkaConsumer(
        **conn.client_kwargs(),
        isolation_level="read_committed" if committed else "read_uncommitted",
        enable_auto_commit=False,
    )
    await c.start()
    try:
        await prime(c, [topic])
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        assert tps, f"no partitions for {topic}"
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        end = await c.end_offsets(tps)
        seen: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + 60
        while any([await c.position(tp) < end[tp] for tp in tps]):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for recs in (await c.getmany(timeout_ms=500)).values():
                for r in recs:
                    if sender is None or _sender_hint(r) == sender:
                        seen[bytes(r.key or b"").decode()] += 1
        return seen
    finally:
        await c.stop()


async def committed_total(conn: KafkaConnection, s: Settings) -> int:
    """Sum of the offsets the gateway's consumer group committed on its in topic."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from i24net.audit.topic import prime

    c = AIOKafkaConsumer(**conn.client_kwargs(), group_id=s.group_id, enable_auto_commit=False)
    await c.start()
    try:
        await prime(c, [s.in_topic])
        parts = sorted(c.partitions_for_topic(s.in_topic) or ())
        return sum([(await c.committed(TopicPartition(s.in_topic, p))) or 0 for p in parts])
    finally:
        await c.stop()


async def inbox_rows(gw: Gateway) -> collections.Counter[str]:
    """Rows per message id of the integrator messages a running gateway stored."""

    def read(c: Any) -> collections.Counter[str]:
        rows = c.execute("SELECT message_id FROM inbox WHERE visible = 1").fetchall()
        return collections.Counter(r[0] for r in rows)

    return await gw.db.read(read)


async def stored_rows(gw_db: Path) -> collections.Counter[str]:
    """Rows per message id in a stopped gateway's inbox table, read from its file."""
    import sqlite3

    def read() -> collections.Counter[str]:
        with contextlib.closing(sqlite3.connect(f"file:{gw_db}?mode=ro", uri=True)) as c:
            rows = c.execute("SELECT message_id FROM inbox WHERE visible = 1").fetchall()
        return collections.Counter(r[0] for r in rows)

    return await asyncio.to_thread(read)


def delivery(w: World, router: Router, to: str = "JP", text: str = "x") -> tuple[str, bytes]:
    """A genuine FR -> ``to`` delivery envelope, as the router would produce it."""
    now = system_clock()
    h = Header(
        message_id=new_message_id(now),
        sender="FR",
        sender_key_id=w.secrets["FR"].signing_key_id,
        recipients=Recipients.to(to),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + 3_600_000,
        language=Language.EN,
        payload_fingerprint=STORE.fingerprint("net.i24.PoliceMessage"),
    )
    payload = STORE.encode_single(
        "net.i24.PoliceMessage", {**PM, "text": text, "in_reply_to": None, "case_reference": None}
    )
    gs_key = w.directory.current_encryption_key("GS", now)
    env = Sender(w.secrets["FR"], gs_key, store=STORE).seal(h, payload)
    return h.message_id, router.deliver(router.open(env), [to])[to]


async def test_bad_input_and_forged_envelopes(world: World, kafka_conn: KafkaConnection) -> None:
    from aiokafka import AIOKafkaProducer

    await make_topics(kafka_conn, world.prefix)
    s = world.settings("JP", kafka_conn.bootstrap, api={"max_request_bytes": 64 << 10})
    async with (
        Gateway(s) as jp,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{jp.port}", headers=world.headers("JP")) as h,
    ):

        async def refused(body: dict[str, Any]) -> tuple[int, str]:
            r = await h.post("/v1/messages", json=body)
            return r.status_code, r.json().get("error", r.text)

        ok = {"kind": "POLICE_MESSAGE", "to": ["FR"], "payload": PM}
        assert (await h.post("/v1/messages", json=ok)).status_code == 202
        assert await refused({**ok, "kind": "NOPE"}) == (422, "unknown_kind")
        assert await refused({**ok, "kind": "STATUS_NOTICE"}) == (422, "unknown_kind")
        assert await refused({**ok, "payload": {"text": "no subject"}}) == (422, "schema_mismatch")
        assert await refused(
            {**ok, "payload_avro": base64.b64encode(b"xx").decode(), "payload": None}
        ) == (422, "schema_mismatch")
        assert await refused({**ok, "to": ["XK"]}) == (422, "unknown_recipient")
        assert await refused({**ok, "to": []}) == (422, "unknown_recipient")
        assert await refused({**ok, "expires_ms": system_clock() - 1000}) == (422, "expired")
        assert await refused({**ok, "handling": [{"code": "NOPE"}]}) == (422, "bad_handling_code")
        assert await refused({**ok, "handling": [{"code": "OTHER"}]}) == (422, "bad_handling_code")
        assert await refused({**ok, "precedence": "URGENT"}) == (422, "bad_precedence")
        big = {**ok, "payload": {**PM, "text": "x" * (100 << 10)}}
        assert await refused(big) == (413, "oversized")
        # raw Avro: kind implied by the fingerprint
        avro = STORE.encode_single(
            "net.i24.PoliceMessage", {**PM, "in_reply_to": None, "case_reference": None}
        )
        r = await h.post(
            "/v1/messages/avro",
            params={"to": "FR", "precedence": "FLASH"},
            content=avro,
            headers={"content-type": "application/vnd.apache.avro.binary"},
        )
        assert r.status_code == 202, r.text
        metrics = (await h.get("/metrics")).text
        assert 'i24net_gateway_intake_refusals_total{reason="unknown_kind"} 2.0' in metrics

        # forged and tampered envelopes straight into the in topic, between good ones
        router = Router(
            world.secrets["GS"], world.directory, ReplayWindow(clock=system_clock), store=STORE
        )
        good1, env1 = delivery(world, router, text="first")
        good2, env2 = delivery(world, router, text="second")
        _, for_br = delivery(world, router, to="BR")
        _, env3 = delivery(world, router, text="never delivered intact")
        tampered = bytearray(env3)
        tampered[-100] ^= 1
        bad = [
            (b"garbage", "bad_version"),
            (bytes(tampered), None),
            (for_br, "wrong_recipient"),
        ]
        producer = AIOKafkaProducer(**kafka_conn.client_kwargs(), max_request_size=2 << 20)
        await producer.start()
        try:
            topic = s.in_topic
            await producer.send_and_wait(topic, env1)
            for data, _ in bad:
                await producer.send_and_wait(topic, data)
            await producer.send_and_wait(topic, env1)  # replay at another offset
            await producer.send_and_wait(topic, env2)
        finally:
            await producer.stop()

        async def both() -> bool:
            got = (await h.get("/v1/inbox", params={"wait": 2})).json()["messages"]
            return len(got) == 2

        await wait_until(both, 30, "the two genuine messages")

        async def rejected() -> list[str]:
            return [r["reason"] for r in (await h.get("/v1/rejected")).json()["rejected"]]

        await wait_until(lambda: _len_at_least(rejected(), 4), 30, "four rejections")
        reasons = await rejected()
        assert reasons[0] == "bad_version"
        # byte -100 lies in the attestation's message digest: its signature no longer verifies
        assert reasons[1] == "bad_attestation", reasons
        assert reasons[2] == "wrong_recipient"
        assert reasons[3] == "replayed"
        ids = [m["message_id"] for m in (await h.get("/v1/inbox")).json()["messages"]]
        assert ids == [good1, good2]
        metrics = (await h.get("/metrics")).text
        assert 'i24net_gateway_verification_failures_total{reason="replayed"} 1.0' in metrics
        assert 'i24net_gateway_verification_failures_total{reason="bad_version"} 1.0' in metrics


async def _len_at_least(coro: Any, n: int) -> bool:
    return len(await coro) >= n


async def inbox_ids(c: AsyncGatewayClient) -> list[str]:
    ids: list[str] = []
    cursor = 0
    while True:
        res = await c.inbox(after=cursor, limit=1000)
        ids += [m["message_id"] for m in res["messages"]]
        if not res["messages"]:
            return ids
        cursor = res["cursor"]


async def submit_many(
    c: AsyncGatewayClient, keys: list[str], accepted: dict[str, str], *, concurrency: int = 16
) -> None:
    """Submit one message per idempotency key; record 202s; stop quietly on failures."""
    sem = asyncio.Semaphore(concurrency)

    async def one(k: str) -> None:
        async with sem:
            with contextlib.suppress(Exception):  # no 202: the integrator retries later
                accepted[k] = await c.send(
                    "POLICE_MESSAGE", to=["JP"], payload=PM, idempotency_key=k
                )

    await asyncio.gather(*(one(k) for k in keys))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    code = "import sys; from i24net.cli import main; sys.exit(main())"
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, "gateway", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_http(url: str, seconds: float = 30) -> None:
    async with httpx.AsyncClient() as h:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await h.get(url + "/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not come up")


@pytest.mark.slow
async def test_kill_9_mid_stream_then_restart(world: World, kafka_conn: KafkaConnection) -> None:
    await make_topics(kafka_conn, world.prefix)
    port = free_port()
    cfg = world.toml("FR", kafka_conn.bootstrap, port)
    url = f"http://127.0.0.1:{port}"
    router = FakeRouter(world, kafka_conn, ("FR", "JP"))
    router.notices = False
    keys = [f"k{i:04d}" for i in range(1000)]
    accepted: dict[str, str] = {}
    proc = spawn_gateway(cfg, world.dir / "fr.log")
    try:
        async with (
            Gateway(world.settings("JP", kafka_conn.bootstrap)) as jp,
            running(router.run),
            world.client("FR", port) as cfr,
            world.client("JP", jp.port) as cjp,
        ):
            await wait_http(url)
            sender = asyncio.create_task(submit_many(cfr, keys, accepted))
            await wait_until(lambda: len(accepted) >= 400, 60, "400 accepted")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            await sender
            first = dict(accepted)
            assert 400 <= len(first) < 1000
            proc = spawn_gateway(cfg, world.dir / "fr.log")
            await wait_http(url)
            # integrators retry what got no 202, with the same idempotency keys
            await submit_many(cfr, [k for k in keys if k not in accepted], accepted)
            assert len(accepted) == 1000
            for k, mid in first.items():  # a retry of an accepted key returns the same id
                assert accepted[k] == mid

            async def all_there() -> bool:
                return len(await inbox_ids(cjp)) >= 1000

            await wait_until(all_there, 90, "1000 messages at JP")
            await wait_until(
                lambda: jp.inbound.processed >= len(accepted), 30, "JP's inbound at rest"
            )
            want = collections.Counter(set(accepted.values()))
            # What reached JP: one committed record per accepted message, none other (a
            # request committed just before the kill whose 202 was lost is delivered too,
            # and its retry with the same key returned its id, so nothing is extra) ...
            assert await count_keys(kafka_conn, jp.settings.in_topic) == want
            # ... each stored once, and nothing refused at JP.
            assert await inbox_rows(jp) == want
            assert (await jp.db.read(inbox.counts))["rejected"] == 0
            # FR's drain is at least once: what it sent twice around the kill, the router
            # refused as replays, and it refused nothing else.
            out_fr = await count_keys(kafka_conn, world.settings("FR", "x").out_topic, sender="FR")
            resent = sum(out_fr.values()) - len(out_fr)
            assert set(out_fr) == set(want)
            assert router.refused == collections.Counter({"replayed": resent} if resent else {})
            print(f"kill -9: {resent} envelopes sent twice by FR's drain, refused as replays")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            proc.wait(30)
            assert time.monotonic() - t0 < 15, "SIGTERM stop took too long"
            assert proc.returncode == 0


@pytest.mark.slow
async def test_broker_down_30s_intake_keeps_accepting(
    world: World, broker_factory: Callable[..., Any]
) -> None:
    broker = broker_factory()
    conn = KafkaConnection(bootstrap=broker.bootstrap)
    await make_topics(conn, world.prefix)
    accepted: list[str] = []
    async with (
        Gateway(world.settings("FR", broker.bootstrap)) as fr,
        Gateway(world.settings("JP", broker.bootstrap)) as jp,
        world.client("FR", fr.port) as cfr,
        world.client("JP", jp.port) as cjp,
    ):
        router = FakeRouter(world, conn, ("FR", "JP"))
        async with running(router.run):
            for _ in range(5):
                accepted.append(await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM))
            await wait_until(lambda: router.routed >= 5, 30, "first five routed")
        await asyncio.to_thread(broker.stop)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            accepted.append(
                await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM, precedence="FLASH")
            )
            await asyncio.sleep(0.5)
        assert (await cfr.summary())["outbox"]["pending_messages"] > 0
        await asyncio.to_thread(broker.start)
        first = router
        router = FakeRouter(world, conn, ("FR", "JP"), window=first.window)
        async with running(router.run):

            async def all_there() -> bool:
                return set(accepted) <= set(await inbox_ids(cjp))

            await wait_until(all_there, 90, "every accepted message at JP")
            await wait_until(
                lambda: jp.inbound.processed >= len(accepted), 30, "JP's inbound at rest"
            )
        want = collections.Counter(set(accepted))
        assert len(want) == len(accepted) > 30  # 5 before, one every 0.5-1 s during the outage
        assert await count_keys(conn, jp.settings.in_topic) == want
        assert await inbox_rows(jp) == want
        assert (await jp.db.read(inbox.counts))["rejected"] == 0
        assert set(first.refused + router.refused) <= {"replayed"}


@pytest.mark.slow
async def test_receiving_gateway_killed_mid_batch(
    world: World, kafka_conn: KafkaConnection
) -> None:
    """docs/gateway.md: the inbound stream stores a batch, then commits its offsets. JP
    exits like kill -9 between the two (``[testing] exit_after_stored_batches``); after
    the restart the batch is read again and recognised as the same records: every message
    stored once, none refused, one delivery receipt each, every message RECEIPTED at FR."""
    await make_topics(kafka_conn, world.prefix)
    n = 120
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with fr_sending_to_jp(world, kafka_conn, n) as (router, cfr, sent):
        # batches of 20: two committed, the third stored and its offsets never committed
        crashing = world.toml(
            "JP",
            kafka_conn.bootstrap,
            port,
            "[inbound]\nbatch = 20\ncommit_interval_ms = 0\n"
            "[testing]\nexit_after_stored_batches = 2\n",
        )
        proc = spawn_gateway(crashing, world.dir / "jp.log")
        try:
            assert await asyncio.to_thread(proc.wait, 60) == 137
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        db = world.dir / "gw-JP" / "gateway.sqlite3"
        before = await stored_rows(db)
        committed = await committed_total(kafka_conn, world.settings("JP", "x"))
        assert 0 < committed < len(before) < n  # stored rows whose offsets were not committed
        proc = spawn_gateway(world.toml("JP", kafka_conn.bootstrap, port), world.dir / "jp.log")
        try:
            await wait_http(url)
            async with world.client("JP", port) as cjp:

                async def all_stored() -> bool:
                    return len(await inbox_ids(cjp)) >= n

                await wait_until(all_stored, 60, "every message stored at JP")
                assert (await cjp.summary())["inbox"]["rejected"] == 0

            async def all_receipted() -> bool:
                counts = (await cfr.summary())["outbox"]["by_status"]
                return bool(counts.get("RECEIPTED", 0) >= n)

            await wait_until(all_receipted, 60, "every message RECEIPTED at FR")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0
        want = collections.Counter(sent)
        assert await count_keys(kafka_conn, world.settings("JP", "x").in_topic) == want
        assert await stored_rows(db) == want
        # one receipt per message: the batch read again queued none a second time
        receipts = await count_keys(kafka_conn, world.settings("JP", "x").out_topic, sender="JP")
        assert len(receipts) == n
        assert set(router.refused) <= {"replayed"}
        for mid in sent[:3]:
            st = await cfr.status(mid)
            assert st["status"] == "RECEIPTED"
            assert [s["station"] for s in st["stations"] if s["receipted_ms"]] == ["JP"]


async def test_inbound_offsets_wait_for_the_commit_interval_and_are_committed_at_stop(
    world: World, kafka_conn: KafkaConnection
) -> None:
    """``[inbound] commit_interval_ms``: the stream stores every batch at once but commits
    its Kafka offsets at most that often. With a minute, nothing is committed while JP
    stores every message; a graceful stop commits them all, so a restarted JP reads only
    what came after (one more message: one record read, not n + 1)."""
    await make_topics(kafka_conn, world.prefix)
    n = 30
    jp_settings = world.settings("JP", kafka_conn.bootstrap, inbound={"commit_interval_ms": 60_000})
    async with fr_sending_to_jp(world, kafka_conn, n) as (router, cfr, sent):
        async with Gateway(jp_settings) as jp, world.client("JP", jp.port) as cjp:

            async def all_stored() -> bool:
                return len(await inbox_ids(cjp)) >= n

            await wait_until(all_stored, 60, "every message stored at JP")
            assert jp.inbound.processed == n
            assert await committed_total(kafka_conn, jp_settings) == 0  # within the interval
        assert await committed_total(kafka_conn, jp_settings) == n  # the stop committed them
        sent.append(await cfr.send("POLICE_MESSAGE", to=["JP"], payload=PM))
        await wait_until(lambda: router.routed >= n + 1, 60, "the last message routed to JP")
        async with Gateway(jp_settings) as jp, world.client("JP", jp.port) as cjp:

            async def last_stored() -> bool:
                return len(await inbox_ids(cjp)) >= n + 1

            await wait_until(last_stored, 60, "the last message stored at JP")
            assert jp.inbound.processed == 1  # the n before were not read again
            assert sorted(await inbox_ids(cjp)) == sorted(sent)
            assert (await cjp.summary())["inbox"]["rejected"] == 0
