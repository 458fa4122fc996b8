"""The gateway's door, tried as an intruder would (issue 16): authentication, scopes,
accountability, rate limits, and the integrator store managed while the gateway runs.

A running gateway over real HTTP (no broker); the client certificate binding
through the ASGI app with the certificate the TLS layer would hand it
(``tests/unit/test_gateway_tls.py`` does it over real TLS sockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from i24net.cli import main as cli
from i24net.clock import FixedClock
from i24net.directory import Directory, StationRecord
from i24net.errors import AuthenticationError, AuthFailure, ConfigError
from i24net.gateway import Gateway, Settings, inbox, parse_settings
from i24net.gateway.auth import (
    PEER_CERT_KEY,
    FailureThrottle,
    PeerCert,
    Scopes,
    create_integrator,
    list_integrators,
    open_store,
    revoke_integrator,
)
from i24net.gateway.intake import from_json
from i24net.keys import RootSecrets, StationSecrets
from i24net.schemas import KIND_SCHEMAS, SchemaStore
from i24net.stations import station

STORE = SchemaStore.default()
PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}
MESSAGE = {"kind": "POLICE_MESSAGE", "to": ["JP"], "payload": PM}
PROTECTED = [
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/avro"),
    ("GET", "/v1/messages/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("GET", "/v1/inbox"),
    ("GET", "/v1/inbox/01HZZZZZZZZZZZZZZZZZZZZZZZ"),
    ("POST", "/v1/inbox/ack"),
    ("GET", "/v1/rejected"),
    ("GET", "/v1/status"),
    ("GET", "/v1/nowhere"),
]


@pytest.fixture(scope="module")
def world() -> tuple[dict[str, StationSecrets], Directory, RootSecrets]:
    t = int(time.time() * 1000) - 60_000
    root = RootSecrets.generate(now_ms=t)
    secrets = {c: StationSecrets.generate(c, now_ms=t) for c in ("FR", "GS", "JP")}
    d = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=t, issued_ms=t)
        for c, s in secrets.items()
    )
    return secrets, d, root


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(time.time_ns() // 1_000_000)


@pytest.fixture
def settings(world: Any, gateway_settings: Any) -> Settings:
    return gateway_settings(  # type: ignore[no-any-return]
        world, STORE, shutdown_grace_s=2, auth={"failure_delay_s": 0.01}
    )


@pytest.fixture
async def gw(settings: Settings, clock: FixedClock) -> AsyncIterator[Gateway]:
    async with Gateway(settings, store=STORE, clock=clock) as g:
        yield g


def add(settings: Settings, name: str, scopes: Any, **kw: Any) -> dict[str, str]:
    kw.setdefault("rate_per_s", 10_000.0)
    kw.setdefault("burst", 10_000)
    token = create_integrator(settings.integrators_path, name, scopes, **kw)
    assert token is not None
    return {"Authorization": f"Bearer {token}"}


def http(gw: Gateway, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gw.port}", timeout=20, headers=headers or {}
    )


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.json()["error"] == code and set(r.json()) == {"error", "detail"}


def failures(gw: Gateway, reason: str) -> float:
    v = gw.registry.get_sample_value("i24net_gateway_auth_failures_total", {"reason": reason})
    return v or 0.0


def outbox_rows(gw: Gateway) -> int:
    return int(gw.db.write_sync(lambda c: c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]))


def store_inbound(gw: Gateway, message_id: str, kind: str, seq: int) -> None:
    def fn(c: Any) -> Any:
        return inbox.store(
            c,
            message_id=message_id,
            visible=True,
            sender="JP",
            kind=kind,
            precedence="ROUTINE",
            created_ms=1,
            expires_ms=2**40,
            received_ms=1,
            header={"kind": kind},
            payload=b"\xc3\x01payload",
            envelope_digest=b"d" * 32,
            decision="DELIVER",
            topic="t",
            partition=0,
            offset=seq,
        )

    gw.db.write_sync(fn)


# --- no credentials, bad credentials ----------------------------------------------------


async def test_no_credentials_is_401_everywhere_and_nothing_is_read(gw: Gateway) -> None:
    async with http(gw) as c:
        for method, path in PROTECTED:
            r = await c.request(method, path, json=MESSAGE if method == "POST" else None)
            refused(r, 401, "unauthenticated")
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        # the platform's endpoints stay open, and show no message content
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200
        assert (await c.get("/readyz")).status_code in (200, 503)
        assert (await c.get("/openapi.json")).status_code == 200
    assert failures(gw, "missing") == len(PROTECTED)
    assert outbox_rows(gw) == 0 and gw.backlog.messages == 0


async def test_an_unauthenticated_body_is_never_read(gw: Gateway) -> None:
    """401 comes before the body: the gateway answers a request whose announced body was
    never sent (reading it first would wait for it until the client gave up)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 401 ")
    assert b"www-authenticate: Bearer" in head


async def test_malformed_unknown_and_wrong_tokens_are_401(gw: Gateway, settings: Settings) -> None:
    good = add(settings, "cms", ["send"])["Authorization"]
    token_id = good.split(".")[1]
    wrong_secret = f"Bearer i24t.{token_id}.{'A' * 43}"
    unknown_id = f"Bearer i24t.000000000000.{good.split('.')[2]}"
    cases = [
        ("Bearer nonsense", "malformed"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        (good.replace("Bearer ", ""), "malformed"),
        (unknown_id, "unknown"),
        (wrong_secret, "bad_token"),
    ]
    async with http(gw) as c:
        for header, reason in cases:
            before = failures(gw, reason)
            r = await c.post("/v1/messages", json=MESSAGE, headers={"Authorization": header})
            refused(r, 401, "unauthenticated")
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            assert failures(gw, reason) == before + 1, reason
        r = await c.post("/v1/messages", json=MESSAGE, headers={"Authorization": good})
        assert r.status_code == 202
    assert outbox_rows(gw) == 1


async def test_two_authorization_headers_are_refused_whichever_comes_first(
    gw: Gateway, settings: Settings
) -> None:
    """Authorization is a single field (RFC 9110): with two, a proxy or log that reads one
    and the gateway that reads the other disagree on who is asking. Until this test, the
    gateway used the first and ignored the second (an integrator's token in front of a
    header a proxy vetted was accepted). Both orders are 401 ``malformed``, nothing sent."""
    cms = add(settings, "cms", ["send"])["Authorization"]
    other = add(settings, "other", ["send"])["Authorization"]
    async with http(gw) as c:
        for pair in ((cms, other), (cms, "Basic dXNlcjpwYXNz"), ("Bearer junk", cms), (cms, cms)):
            before = failures(gw, "malformed")
            headers = httpx.Headers([("Authorization", pair[0]), ("Authorization", pair[1])])
            r = await c.post("/v1/messages", json=MESSAGE, headers=headers)
            refused(r, 401, "unauthenticated")
            assert failures(gw, "malformed") == before + 1
        # the scheme is case-insensitive (RFC 9110 11.1) and spaces around the token are
        # not part of it
        for header in (cms.replace("Bearer", "bearer"), cms.replace(" ", "   ")):
            r = await c.post("/v1/messages", json=MESSAGE, headers={"Authorization": header})
            assert r.status_code == 202, r.text
    assert outbox_rows(gw) == 2


async def test_expired_token_is_401(gw: Gateway, settings: Settings, clock: FixedClock) -> None:
    headers = add(settings, "short-lived", ["status:read"], expires_s=60, clock=clock)
    async with http(gw, headers) as c:
        assert (await c.get("/v1/status")).status_code == 200
        clock.advance(60_000)
        refused(await c.get("/v1/status"), 401, "unauthenticated")
    assert failures(gw, "expired") == 1


async def test_cli_add_list_revoke_while_the_gateway_runs(
    gw: Gateway, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_toml(settings, tmp_path / "gateway.toml")
    assert cli(["gateway", "integrators", "add", "border", "--config", str(config),
                "--scope", "send:DB_QUERY", "--scope", "status:read"]) == 0  # fmt: skip
    token = capsys.readouterr().out.strip()
    assert token.startswith("i24t.")
    headers = {"Authorization": f"Bearer {token}"}
    async with http(gw, headers) as c:
        assert (await c.get("/v1/status")).status_code == 200
        assert cli(["gateway", "integrators", "list", "--config", str(config), "--json"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(i["name"], i["state"], i["scopes"]) for i in listed] == [
            ("border", "active", ["send:DB_QUERY", "status:read"])
        ]
        assert token not in json.dumps(listed) and token.split(".")[2] not in json.dumps(listed)
        # --config after the sub-command or before it
        assert cli(["gateway", "--config", str(config), "integrators", "revoke", "border"]) == 0
        r = await c.get("/v1/status")  # the very next request: no restart, no polling delay
        refused(r, 401, "unauthenticated")
    assert failures(gw, "revoked") == 1
    assert cli(["gateway", "integrators", "list", "--config", str(config)]) == 0
    assert "revoked" in capsys.readouterr().out
    gw._integrator_gauge()
    for state, n in (("active", 0), ("revoked", 1), ("expired", 0)):
        assert gw.registry.get_sample_value("i24net_gateway_integrators", {"state": state}) == n


async def test_cli_token_file_is_private_and_names_are_never_reused(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_toml(settings, tmp_path / "gateway.toml")
    token_file = tmp_path / "secrets" / "cms.token"
    args = ["gateway", "integrators", "add", "cms", "--config", str(config), "--scope", "send"]
    assert cli([*args, "--token-file", str(token_file)]) == 0
    assert token_file.read_text().startswith("i24t.")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.integrators_path.stat().st_mode) == 0o600
    assert token_file.read_text().strip() not in capsys.readouterr().out
    revoke_integrator(settings.integrators_path, "cms")
    assert cli(args) == 2  # an error: the name stays taken
    assert "exists" in capsys.readouterr().err
    assert cli([*args[:5], "cms2", "--config", str(config), "--scope", "sendd"]) == 2
    assert cli(["gateway", "integrators", "add", "x", "--config", str(config),
                "--scope", "send", "--expires", "never"]) == 2  # fmt: skip


def write_toml(settings: Settings, path: Path) -> Path:
    path.write_text(
        f'station = "{settings.station}"\n'
        f'data_dir = "{settings.data_dir}"\n'
        f'[keys]\nsecret = "{settings.keys.secret}"\n'
        f'root_public = "{settings.keys.root_public}"\n'
        f'[directory]\nentries = "{settings.directory.entries}"\n'
        f'[kafka]\nbootstrap = "{settings.kafka.bootstrap}"\n'
    )
    return path


# --- scopes --------------------------------------------------------------------------


async def test_a_kind_outside_the_send_scope_is_403_and_nothing_is_sent(
    gw: Gateway, settings: Settings
) -> None:
    border = add(settings, "border", ["send:DB_QUERY"])
    police = add(settings, "cms", ["send:POLICE_MESSAGE"])
    name = KIND_SCHEMAS["POLICE_MESSAGE"]
    avro = STORE.encode_single(name, from_json(STORE.schema(name), PM))
    async with http(gw, border) as c:
        refused(await c.post("/v1/messages", json=MESSAGE), 403, "forbidden")
        # the kind implied by the Avro fingerprint is checked too
        r = await c.post(
            "/v1/messages/avro",
            params={"to": "JP"},
            content=avro,
            headers={"content-type": "application/vnd.apache.avro.binary"},
        )
        refused(r, 403, "forbidden")
    assert outbox_rows(gw) == 0 and gw.backlog.messages == 0
    async with http(gw, police) as c:
        assert (await c.post("/v1/messages", json=MESSAGE)).status_code == 202
    assert outbox_rows(gw) == 1
    refusals = gw.registry.get_sample_value(
        "i24net_gateway_integrator_refusals_total", {"integrator": "border", "reason": "forbidden"}
    )
    assert refusals == 2


async def test_inbox_operator_and_status_scopes(gw: Gateway, settings: Settings) -> None:
    sender = add(settings, "sender", ["send"])
    store_inbound(gw, "M1", "POLICE_MESSAGE", 1)
    async with http(gw, sender) as c:
        for r in (
            await c.get("/v1/inbox"),
            await c.get("/v1/inbox/M1"),
            await c.post("/v1/inbox/ack", json={"message_ids": ["M1"]}),
            await c.get("/v1/rejected"),
            await c.get("/v1/status"),
        ):
            refused(r, 403, "forbidden")
            assert "PLATE" not in r.text and "M1" not in r.text
    assert gw.db.write_sync(inbox.counts)["unacked"] == 1


async def test_inbox_shows_and_acks_only_the_kinds_of_the_scope(
    gw: Gateway, settings: Settings
) -> None:
    border = add(settings, "border", ["inbox:read:DB_RESPONSE"])
    everyone = add(settings, "cms", ["inbox:read"])
    for i, kind in enumerate(["RED_NOTICE_REQUEST", "DB_RESPONSE", "POLICE_MESSAGE"]):
        store_inbound(gw, f"M{i}", kind, i)
    async with http(gw, border) as c:
        listed = (await c.get("/v1/inbox")).json()
        assert [m["message_id"] for m in listed["messages"]] == ["M1"]
        refused(await c.get("/v1/inbox/M0"), 403, "forbidden")
        assert (await c.get("/v1/inbox/M1")).status_code == 200
        r = await c.post("/v1/inbox/ack", json={"message_ids": ["M0", "M1", "M2"]})
        assert r.json() == {"acked": 1}
    async with http(gw, everyone) as c:
        listed = (await c.get("/v1/inbox", params={"unacked": True})).json()
        assert [m["message_id"] for m in listed["messages"]] == ["M0", "M2"]


async def test_the_integrator_is_recorded_shown_and_counted(
    gw: Gateway, settings: Settings
) -> None:
    a = add(settings, "cms", ["send", "status:read"])
    b = add(settings, "analyst", ["send", "status:read"])
    operator = add(settings, "ops", ["operator"])
    async with http(gw, a) as c:
        r = await c.post("/v1/messages", json=MESSAGE, headers={"Idempotency-Key": "k1"})
        mid = r.json()["message_id"]
        st = (await c.get(f"/v1/messages/{mid}")).json()
        assert st["integrator"] == "cms"
    async with http(gw, b) as c:
        # another integrator's message is unknown to it, and its keys are its own
        refused(await c.get(f"/v1/messages/{mid}"), 404, "not_found")
        r = await c.post("/v1/messages", json=MESSAGE, headers={"Idempotency-Key": "k1"})
        assert r.status_code == 202 and r.json()["message_id"] != mid
        assert r.json()["duplicate"] is False
    async with http(gw, operator) as c:
        assert (await c.get(f"/v1/messages/{mid}")).json()["integrator"] == "cms"
    integrators = gw.db.write_sync(
        lambda c: sorted(r[0] for r in c.execute("SELECT integrator FROM outbox"))
    )
    assert integrators == ["analyst", "cms"]
    get = gw.registry.get_sample_value
    assert get("i24net_gateway_integrator_messages_total", {"integrator": "cms"}) == 1
    assert get("i24net_gateway_integrator_messages_total", {"integrator": "analyst"}) == 1


# --- abuse --------------------------------------------------------------------------


async def test_a_flood_from_one_integrator_is_429_and_does_not_slow_another(
    gw: Gateway, settings: Settings
) -> None:
    flood = add(settings, "flood", ["status:read"], rate_per_s=0.01, burst=3)
    calm = add(settings, "calm", ["status:read"])
    async with http(gw, flood) as f, http(gw, calm) as c:
        codes = [(await f.get("/v1/status")).status_code for _ in range(10)]
        assert codes == [200] * 3 + [429] * 7
        r = await f.get("/v1/status")
        refused(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        t0 = time.monotonic()
        assert [(await c.get("/v1/status")).status_code for _ in range(20)] == [200] * 20
        assert time.monotonic() - t0 < 10
    limited = gw.registry.get_sample_value(
        "i24net_gateway_integrator_refusals_total",
        {"integrator": "flood", "reason": "rate_limited"},
    )
    assert limited == 8


def test_failed_authentication_is_slowed_per_peer_in_bounded_memory() -> None:
    now = [0.0]
    t = FailureThrottle(step_s=0.1, max_s=0.35, forget_s=60, max_peers=3, monotonic=lambda: now[0])
    assert [t.fail("10.0.0.1") for _ in range(6)] == pytest.approx([0, 0.1, 0.2, 0.3, 0.35, 0.35])
    assert t.fail("10.0.0.2") == 0  # another peer is not slowed by the first
    now[0] += 61  # quiet for longer than forget_s: forgotten
    assert t.fail("10.0.0.1") == 0
    for i in range(100):
        t.fail(f"192.0.2.{i}")
    assert len(t) == 3


async def test_failures_are_answered_later_and_later(gw: Gateway) -> None:
    """The delay is really applied: the 6th failure from one peer takes longer."""
    bad = {"Authorization": "Bearer i24t.000000000000." + "A" * 43}
    gw.auth.throttle.step_s = 0.2
    async with http(gw, bad) as c:
        t0 = time.monotonic()
        refused(await c.get("/v1/status"), 401, "unauthenticated")
        first = time.monotonic() - t0
        for _ in range(4):
            await c.get("/v1/status")
        t0 = time.monotonic()
        refused(await c.get("/v1/status"), 401, "unauthenticated")
        sixth = time.monotonic() - t0
    assert sixth >= 1.0 > first


async def test_tokens_never_appear_in_logs_or_errors(
    gw: Gateway, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    header = add(settings, "cms", ["send"])["Authorization"]
    token = header.removeprefix("Bearer ")
    secret = token.split(".")[2]
    token_id = token.split(".")[1]
    variants = [
        header,
        f"Bearer i24t.{token_id}.{secret[::-1]}",
        f"Bearer {secret}",
        f"Token {token}",
        f"Bearer {token}x",
    ]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with http(gw) as c:
            for v in variants:
                r = await c.post("/v1/messages", json=MESSAGE, headers={"Authorization": v})
                texts.append(r.text + str(dict(r.headers)))
                r = await c.get("/v1/nowhere", headers={"Authorization": v})
                texts.append(r.text + str(dict(r.headers)))
    assert "authentication failed" in caplog.text  # failures are logged, without the token
    for text in [
        caplog.text,
        *texts,
        *(repr(i) for i in list_integrators(settings.integrators_path)),
    ]:
        assert secret not in text and secret[::-1] not in text
    assert secret not in str(AuthenticationError(AuthFailure.BAD_TOKEN))


# --- client certificates (the binding; the handshake is in test_gateway_tls.py) --------


async def test_certificate_bindings(gw: Gateway, settings: Settings) -> None:
    cert = PeerCert("ab" * 32, "border-ws-1")
    other = PeerCert("cd" * 32, "intruder")
    create_integrator(
        settings.integrators_path, "by-cert", ["status:read"], token=False, cert_sha256=cert.sha256
    )
    both = add(settings, "both", ["status:read"], cert_cn="border-ws-1")

    def with_cert(peer: PeerCert | None) -> Any:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            if peer is not None:
                scope = {**scope, "extensions": {PEER_CERT_KEY: peer}}
            await gw.app(scope, receive, send)

        return app

    async def status(peer: PeerCert | None, headers: dict[str, str] | None = None) -> int:
        transport = httpx.ASGITransport(app=with_cert(peer))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            return (await c.get("/v1/status", headers=headers or {})).status_code

    assert await status(cert) == 200  # certificate only
    assert await status(other) == 401  # a certificate no integrator is bound to
    assert await status(None) == 401
    assert await status(cert, both) == 200  # token and certificate of "both"
    assert await status(None, both) == 401  # its token without its certificate
    assert await status(other, both) == 401
    assert failures(gw, "cert_mismatch") == 2
    assert failures(gw, "unknown") == 1


# --- the store, scopes and settings ----------------------------------------------------


def test_scopes_parse_and_encode() -> None:
    s = Scopes.parse(["send:DB_QUERY", "inbox:read:DB_RESPONSE", "status:read"], KIND_SCHEMAS)
    assert s.may_send("DB_QUERY") and not s.may_send("RED_NOTICE_REQUEST")
    assert s.may_read("DB_RESPONSE") and not s.may_read("RED_NOTICE_REQUEST")
    assert s.inbox_filter == {"DB_RESPONSE"} and not s.operator
    assert Scopes.parse(s.encode(), KIND_SCHEMAS) == s
    wide = Scopes.parse(["send", "send:DB_QUERY", "inbox:read"], KIND_SCHEMAS)
    assert wide.may_send("RED_NOTICE_REQUEST") and wide.inbox_filter is None
    for bad in (["sendd"], ["send:NOT_A_KIND"], ["inbox:read:"], ["admin"]):
        with pytest.raises(ConfigError):
            Scopes.parse(bad, KIND_SCHEMAS)


def test_store_is_private_and_holds_no_token(tmp_path: Path) -> None:
    path = tmp_path / "integrators.sqlite3"
    token = create_integrator(path, "cms", ["send"])
    assert token is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    with contextlib.closing(open_store(path)) as conn:
        dump = "\n".join(conn.iterdump())
    assert token.split(".")[2] not in dump
    with pytest.raises(ConfigError):
        create_integrator(path, "certless", ["send"], token=False)
    with pytest.raises(ConfigError):
        create_integrator(path, "Bad Name", ["send"])
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="accessible to others"):
        open_store(path)


def test_plain_http_off_the_machine_refuses_to_start(settings: Settings) -> None:
    raw = settings.model_dump(mode="json")
    for host in ("0.0.0.0", "192.0.2.10", "gw.bureau.example"):
        raw["api"]["host"] = host
        with pytest.raises(ConfigError, match="allow_plain_http"):
            parse_settings(raw)
    raw["api"]["allow_plain_http"] = True
    assert parse_settings(raw).api.host == "gw.bureau.example"
    raw["api"] = {"host": "0.0.0.0", "tls": {"cert_file": "c.pem", "key_file": "k.pem"}}
    assert parse_settings(raw).api.tls is not None
    raw["api"] = {"host": "::1"}
    assert parse_settings(raw).api.host == "::1"
    raw["api"] = {"tls": {"cert_file": "c", "key_file": "k", "client_cert": "required"}}
    with pytest.raises(ConfigError, match="client_ca_file"):
        parse_settings(raw)


async def test_openapi_declares_the_security_schemes_and_scopes(gw: Gateway) -> None:
    async with http(gw) as c:
        doc = (await c.get("/openapi.json")).json()
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "mutualTLS"}
    assert doc["components"]["securitySchemes"]["mutualTLS"]["type"] == "mutualTLS"
    ops = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]
    v1 = [(p, m, op) for p, m, op in ops if p.startswith("/v1/")]
    assert len(v1) == 8
    for p, m, op in v1:
        assert op["security"] == [{"bearer": []}, {"mutualTLS": []}], (p, m)
        assert "Scope:" in op["description"] and "401" in op["responses"], (p, m)


async def test_cli_send_and_inbox_authenticate(
    gw: Gateway,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = create_integrator(settings.integrators_path, "cli", ["send", "status:read"])
    assert token is not None
    token_file = tmp_path / "cli.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    url = f"http://127.0.0.1:{gw.port}"
    send = [
        "send",
        "--url",
        url,
        "--to",
        "JP",
        "--kind",
        "POLICE_MESSAGE",
        "--json",
        json.dumps(PM),
    ]
    monkeypatch.delenv("I24NET_TOKEN_FILE", raising=False)
    # without credentials: refused, and the CLI says why
    assert await asyncio.to_thread(cli, send) == 2
    assert "unauthenticated" in capsys.readouterr().err
    # --token-file, or $I24NET_TOKEN_FILE
    assert await asyncio.to_thread(cli, [*send, "--token-file", str(token_file)]) == 0
    monkeypatch.setenv("I24NET_TOKEN_FILE", str(token_file))
    assert await asyncio.to_thread(cli, send) == 0
    ids = capsys.readouterr().out.split()
    assert len(ids) == 2 and outbox_rows(gw) == 2
    # its scope has no inbox:read
    assert await asyncio.to_thread(cli, ["inbox", "--url", url]) == 2
    assert "forbidden" in capsys.readouterr().err


async def test_renew_replaces_the_token_and_keeps_the_name(
    gw: Gateway,
    settings: Settings,
    tmp_path: Path,
    clock: FixedClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = add(settings, "cms", ["status:read"], expires_s=60, clock=clock)
    config = write_toml(settings, tmp_path / "gateway.toml")
    new_file = tmp_path / "new.token"
    assert cli(["gateway", "integrators", "renew", "cms", "--config", str(config),
                "--expires", "30d", "--token-file", str(new_file)]) == 0  # fmt: skip
    new = {"Authorization": f"Bearer {new_file.read_text().strip()}"}
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    clock.advance(120_000)  # past the old expiry, within the new one
    async with http(gw) as c:
        refused(await c.get("/v1/status", headers=old), 401, "unauthenticated")
        assert (await c.get("/v1/status", headers=new)).status_code == 200
    assert failures(gw, "unknown") == 1  # the old token's id is gone
    [cms] = list_integrators(settings.integrators_path)
    assert cms.name == "cms" and cms.expires_ms is not None
    revoke_integrator(settings.integrators_path, "cms")
    assert cli(["gateway", "integrators", "renew", "cms", "--config", str(config)]) == 2
    assert "revoked" in capsys.readouterr().err
