"""The integrator API (FastAPI): intake, message status, inbox. OpenAPI at ``/openapi.json``.

Every refusal is JSON ``{"error": <code>, "detail": <text>}`` with a
specific code (``docs/gateway.md`` lists them). ``202`` is sent only after
the sealed envelope is committed to the SQLite outbox.

Every path but ``OPEN_PATHS`` (health, readiness, metrics, the OpenAPI
document) is authenticated by :class:`Authenticate`, an ASGI middleware
that runs **before** the body is read: a request without a valid bearer
token or client certificate gets 401 (``WWW-Authenticate: Bearer``) after
a delay that grows with its peer's recent failures, and an integrator over
its rate gets 429 with ``Retry-After``. Each route then checks the
integrator's scope (403 ``forbidden``; see ``gateway/auth.py``): the inbox
shows an integrator only the kinds its ``inbox:read`` scope names, and it
may acknowledge only those; a message's status is shown to the integrator
that sent it (and to operators).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import sqlite3
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from i24net import __version__
from i24net.envelope import Precedence
from i24net.errors import AuthenticationError, AuthFailure, IntakeRefusedError
from i24net.gateway import inbox, outbox
from i24net.gateway.auth import PEER_CERT_KEY, Integrator, Scopes
from i24net.gateway.intake import Submission, parse_stations
from i24net.schemas import KIND_SCHEMAS

if TYPE_CHECKING:
    from i24net.gateway.app import Gateway

log = logging.getLogger(__name__)

AVRO_MEDIA_TYPE = "application/vnd.apache.avro.binary"
MAX_CURSOR = (1 << 63) - 1
"""Cursors are SQLite integers (signed 64-bit)."""

MessageId = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z]{1,64}$")]
"""A message id as the API takes it (ULIDs; ASCII only, so SQLite and logs hold it)."""


class HandlingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="CRIME_PREVENTION_ONLY, NO_COURT_USE_WITHOUT_CONSENT, ...")
    text: str | None = Field(None, description="required for OTHER, absent otherwise")


class SubmitRequest(BaseModel):
    """A message to send. Give ``payload`` (JSON shaped like the kind's Avro schema; bytes
    as base64) or ``payload_avro`` (base64 of Avro single-object encoding)."""

    model_config = ConfigDict(extra="forbid")
    kind: str | None = Field(None, description="a MessageKind symbol; implied by payload_avro")
    to: list[str] = Field(default_factory=list, description="recipient station codes")
    to_all: bool = Field(False, description="every station")
    region: str | None = Field(None, description="a regional group, e.g. EUROPE")
    excluded: list[str] = Field(default_factory=list, description="stations left out")
    precedence: str = Field("ROUTINE", description="FLASH, IMMEDIATE, PRIORITY, ROUTINE, DEFERRED")
    language: str = Field("en", description="ar, en, es or fr")
    expires_in_s: int | None = Field(None, description="lifetime from now (default: settings)")
    expires_ms: int | None = Field(None, description="absolute expiry, ms since the epoch")
    handling: list[HandlingIn] = Field(default_factory=list)
    source_reliability: str | None = Field(None, description="A, B, C or X")
    source_accuracy: int | None = Field(None, description="1 to 4")
    offence_categories: list[str] = Field(default_factory=list)
    payload: dict[str, Any] | None = None
    payload_avro: str | None = Field(None, description="base64 Avro single-object encoding")


class Accepted(BaseModel):
    message_id: str
    status: str = "ACCEPTED"
    duplicate: bool = Field(False, description="an earlier request with this Idempotency-Key")


class ErrorBody(BaseModel):
    error: str
    detail: str


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_ids: list[MessageId] = Field(max_length=10_000)


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad_request: not JSON, bad base64"},
    403: {"model": ErrorBody, "description": "forbidden: a kind outside the send scope"},
    409: {"model": ErrorBody, "description": "idempotency_conflict"},
    413: {"model": ErrorBody, "description": "oversized"},
    422: {
        "model": ErrorBody,
        "description": "unknown_kind, schema_mismatch, unknown_recipient, expired, "
        "bad_handling_code, bad_precedence, bad_language, bad_header, bad_request",
    },
    503: {"model": ErrorBody, "description": "outbox_full (Retry-After), stopping"},
}


def error(
    code: str, detail: str, status: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"})
"""Served without credentials: the platform's probes and scrapes, and the API's description.
None of them shows message content."""

INTEGRATOR_KEY = "i24net.integrator"
"""Where :class:`Authenticate` puts the authenticated :class:`Integrator` in the scope."""


class Authenticate:
    """ASGI middleware: authenticate and rate-limit every request outside ``OPEN_PATHS``.

    Runs before the body is read (an unauthenticated client cannot make the
    gateway read, parse or validate anything) and before FastAPI's routing
    (an unknown path is 401 too: no probing without credentials). The reason
    of a failure goes to the log (without the credential) and to
    ``i24net_gateway_auth_failures_total{reason}``; the client is told only
    that it is not authenticated.
    """

    def __init__(self, app: Any, gw: Gateway) -> None:
        self.app = app
        self.gw = gw

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = [v for k, v in scope.get("headers", []) if k == b"authorization"]
        # Authorization is one field (RFC 9110): with two, whatever reads one of them (a
        # proxy, a log) and this gateway could disagree on who is asking
        if len(given) > 1:
            await self._refuse(AuthFailure.MALFORMED, scope, receive, send)
            return
        authorization = given[0].decode("latin-1") if given else None
        cert = (scope.get("extensions") or {}).get(PEER_CERT_KEY)
        auth = self.gw.auth
        try:
            who = auth.authenticate(authorization, cert)
        except AuthenticationError as exc:
            await self._refuse(exc.reason, scope, receive, send)
            return
        wait = auth.admit(who)
        if wait is not None:
            self.gw.metrics.integrator_refusals.labels(who.name, "rate_limited").inc()
            retry = max(1, math.ceil(wait))
            await error(
                "rate_limited",
                f"integrator {who.name} is over its request rate; retry in {retry} s",
                429,
                {"Retry-After": str(retry)},
            )(scope, receive, send)
            return
        scope[INTEGRATOR_KEY] = who
        await self.app(scope, receive, send)

    async def _refuse(self, reason: AuthFailure, scope: Any, receive: Any, send: Any) -> None:
        self.gw.metrics.auth_failures.labels(reason.value).inc()
        client = scope.get("client") or ("unknown", 0)
        peer = str(client[0])
        delay = self.gw.auth.throttle.fail(peer)
        log.info("authentication failed (%s) from %s on %s", reason.value, peer, _route(scope))
        if delay > 0:
            await asyncio.sleep(delay)
        challenge = 'Bearer realm="i24net"'
        if reason is not AuthFailure.MISSING:
            challenge += ', error="invalid_token"'
        await error(
            "unauthenticated",
            "a valid bearer token or client certificate is required",
            401,
            {"WWW-Authenticate": challenge},
        )(scope, receive, send)


class Forbidden(Exception):
    """A request outside the integrator's scopes (answered 403 ``forbidden``)."""

    def __init__(self, who: Integrator, detail: str) -> None:
        super().__init__(detail)
        self.who = who
        self.detail = detail


def integrator(request: Request) -> Integrator:
    """The integrator :class:`Authenticate` proved (a route it did not guard is a bug)."""
    who = request.scope.get(INTEGRATOR_KEY)
    if not isinstance(who, Integrator):
        raise RuntimeError("route reached without authentication")
    return who


def _scope_check(check: Callable[[Scopes], bool], what: str) -> Callable[[Request], Integrator]:
    def dependency(request: Request) -> Integrator:
        who = integrator(request)
        if not check(who.scopes):
            raise Forbidden(who, f"integrator {who.name} lacks the {what} scope")
        return who

    return dependency


_SEND = Depends(_scope_check(lambda s: s.send, "send"))
_INBOX = Depends(_scope_check(lambda s: s.inbox, "inbox:read"))
_STATUS = Depends(_scope_check(lambda s: s.status or s.operator, "status:read"))
_OPERATOR = Depends(_scope_check(lambda s: s.operator, "operator"))

SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "i24t.<id>.<secret> (i24net gateway integrators add)",
    },
    "mutualTLS": {
        "type": "mutualTLS",
        "description": "a client certificate from [api.tls] client_ca_file, bound to an "
        "integrator by subject CN or SHA-256 fingerprint",
    },
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "unauthenticated (WWW-Authenticate: Bearer)"},
    403: {"model": ErrorBody, "description": "forbidden: outside the integrator's scopes"},
    429: {"model": ErrorBody, "description": "rate_limited (Retry-After)"},
}


def _secured(scope: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Route keywords declaring the security schemes and the scope it needs."""
    return {
        "description": f"Scope: `{scope}`. Authenticate with a bearer token, a client "
        "certificate (mutual TLS), or both when the integrator has both.",
        "openapi_extra": {"security": [{"bearer": []}, {"mutualTLS": []}], **(extra or {})},
    }


class BodyLimit:
    """ASGI middleware: read the body (at most ``limit`` bytes) before the application does.

    A ``Content-Length`` over the limit is refused at once; a chunked body is
    read up to the limit and refused 413 ``oversized`` as soon as it passes it
    (the rest is never read). Reading it here, rather than counting inside the
    application's ``receive``, matters: FastAPI turns any exception raised
    while it reads a body into its own 400 "error parsing the body".
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                await self._refuse(scope, receive, send)
                return
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away
                return
            chunk = msg.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body: bytes | None = b"".join(chunks)
        del chunks

        async def replay() -> Any:
            nonlocal body
            if body is not None:
                msg = {"type": "http.request", "body": body, "more_body": False}
                body = None
                return msg
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        await error("oversized", f"request over {self.limit} bytes", 413, {"Connection": "close"})(
            scope, receive, send
        )


class Guard:
    """ASGI middleware, outermost: an exception no handler expected answers 500
    ``{"error": "internal_error", ...}`` (the documented body, never a bare
    traceback) and is logged by type and place only: an exception's message may
    quote the request (a pydantic error quotes its input), and requests carry
    police data."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(msg: Any) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = " <- ".join(f"{f.name}:{f.lineno}" for f in reversed(tb[-4:]))
            log.error(
                "%s %s failed: %s at %s",
                scope.get("method"),
                _route(scope),
                type(exc).__name__,
                where,
            )
            if not started:
                await error("internal_error", "the gateway failed on this request", 500)(
                    scope, receive, send
                )


def _route(scope: Any) -> str:
    """The request's path without its variable part (a message id is not logged)."""
    path = str(scope.get("path", ""))
    parts = path.split("/")
    return "/".join(parts[:3]) + ("/..." if len(parts) > 3 else "")


_PRECEDENCES = frozenset(p.value for p in Precedence)

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "oversized",
    415: "unsupported_media_type",
}


_LIST_QUERY = Query(default_factory=list, description="station codes (repeat or comma-separate)")
_HANDLING_QUERY = Query(default_factory=list, description="CODE or OTHER:text")


def _validation_code(exc: RequestValidationError) -> str:
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        if "handling" in loc:
            return "bad_handling_code"
        if "payload" in loc or "payload_avro" in loc:
            return "schema_mismatch"
    return "bad_request"


def create_app(gw: Gateway) -> FastAPI:
    s = gw.settings
    app = FastAPI(
        title=f"i24net gateway {s.station}",
        version=__version__,
        description="Submit police messages, follow their status, read the verified inbox. "
        "See docs/gateway.md.",
    )

    app.add_middleware(BodyLimit, limit=s.api.max_request_bytes)
    app.add_middleware(Authenticate, gw=gw)
    app.add_middleware(Guard)

    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        doc = plain_openapi()
        doc.setdefault("components", {}).setdefault("securitySchemes", SECURITY_SCHEMES)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        gw.metrics.integrator_refusals.labels(exc.who.name, "forbidden").inc()
        if request.method == "POST":
            gw.metrics.intake_refusals.labels("forbidden").inc()
        return error("forbidden", exc.detail, 403)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI's own refusals (a body it cannot parse: invalid UTF-8 or JSON, nesting
        too deep; an unknown path) in the documented body, not ``{"detail": ...}``."""
        code = _HTTP_CODES.get(exc.status_code, "bad_request")
        if request.method == "POST":
            gw.metrics.intake_refusals.labels(code).inc()
        return error(code, str(exc.detail)[:200], exc.status_code, dict(exc.headers or {}) or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        code = _validation_code(exc)
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()
        )
        gw.metrics.intake_refusals.labels(code).inc()
        return error(code, detail[:2000], 422 if code != "bad_request" else 400)

    async def accept(
        build: Callable[[], Submission], idem_key: str | None, who: Integrator
    ) -> JSONResponse:
        t0 = time.perf_counter()
        kind = precedence = "unknown"
        try:
            sub = build()
            # label values are the client's words: only known ones (bounded label sets)
            kind = sub.kind if sub.kind in KIND_SCHEMAS else "unknown"
            precedence = sub.precedence if sub.precedence in _PRECEDENCES else "unknown"
            accepted = await gw.submit(sub, idem_key, who)
        except IntakeRefusedError as exc:
            gw.metrics.intake_refusals.labels(exc.code).inc()
            if exc.code == "forbidden":
                gw.metrics.integrator_refusals.labels(who.name, "forbidden").inc()
            gw.metrics.intake.labels(kind, precedence, "refused").inc()
            headers = {"Retry-After": "5"} if exc.http_status == 503 else None
            return error(exc.code, exc.detail, exc.http_status, headers)
        if accepted.conflict:
            gw.metrics.intake_refusals.labels("idempotency_conflict").inc()
            return error(
                "idempotency_conflict",
                f"Idempotency-Key {idem_key!r} was used for another request "
                f"(message {accepted.message_id})",
                409,
            )
        gw.metrics.intake_seconds.observe(time.perf_counter() - t0)
        return JSONResponse(
            Accepted(message_id=accepted.message_id, duplicate=accepted.duplicate).model_dump(),
            status_code=202,
        )

    @app.post(
        "/v1/messages",
        status_code=202,
        response_model=Accepted,
        responses={**_ERRORS, **_AUTH_ERRORS},
        summary="Submit a message (JSON, or base64 Avro in payload_avro)",
        tags=["messages"],
        **_secured("send (or send:<KIND>)"),
    )
    async def submit_json(
        req: SubmitRequest,
        idempotency_key: str | None = Header(None, max_length=200),
        who: Integrator = _SEND,
    ) -> JSONResponse:
        avro = None
        if req.payload_avro is not None:
            try:
                avro = base64.b64decode(req.payload_avro, validate=True)
            except (binascii.Error, ValueError):
                return error("bad_request", "payload_avro is not valid base64", 400)

        def build() -> Submission:
            return Submission(
                kind=req.kind,
                to=parse_stations(req.to),
                to_all=req.to_all,
                region=req.region,
                excluded=parse_stations(req.excluded),
                precedence=req.precedence,
                language=req.language,
                expires_in_s=req.expires_in_s,
                expires_ms=req.expires_ms,
                handling=tuple((h.code, h.text) for h in req.handling),
                source_reliability=req.source_reliability,
                source_accuracy=req.source_accuracy,
                offence_categories=tuple(req.offence_categories),
                payload=req.payload,
                payload_avro=avro,
            )

        return await accept(build, idempotency_key, who)

    @app.post(
        "/v1/messages/avro",
        status_code=202,
        response_model=Accepted,
        responses={**_ERRORS, **_AUTH_ERRORS},
        summary="Submit a message as raw Avro single-object encoding; the kind is implied "
        "by the schema fingerprint, the header fields are query parameters",
        tags=["messages"],
        **_secured(
            "send (or send:<KIND>)",
            {
                "requestBody": {
                    "required": True,
                    "content": {
                        AVRO_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}
                    },
                }
            },
        ),
    )
    async def submit_avro(
        request: Request,
        to: list[str] = _LIST_QUERY,
        to_all: bool = False,
        region: str | None = None,
        excluded: list[str] = _LIST_QUERY,
        precedence: str = "ROUTINE",
        language: str = "en",
        expires_in_s: int | None = None,
        handling: list[str] = _HANDLING_QUERY,
        idempotency_key: str | None = Header(None, max_length=200),
        who: Integrator = _SEND,
    ) -> JSONResponse:
        body = await request.body()
        hs = []
        for h in handling:
            code, _, text = h.partition(":")
            hs.append((code, text or None))

        def build() -> Submission:
            return Submission(
                kind=None,
                to=parse_stations([x for t in to for x in t.split(",")]),
                to_all=to_all,
                region=region,
                excluded=parse_stations([x for t in excluded for x in t.split(",")]),
                precedence=precedence,
                language=language,
                expires_in_s=expires_in_s,
                handling=tuple(hs),
                payload_avro=body,
            )

        return await accept(build, idempotency_key, who)

    @app.get(
        "/v1/messages/{message_id}",
        summary="Status of a message this station sent, with per-station delivery and receipts",
        tags=["messages"],
        responses={404: {"model": ErrorBody}, **_AUTH_ERRORS},
        **_secured("status:read (the integrator's own messages) or operator (every message)"),
    )
    async def message_status(
        message_id: str,
        wait: float = Query(0, ge=0, le=s.api.max_wait_s, description="long-poll seconds"),
        since: str | None = Query(None, description="with wait: return once status != since"),
        who: Integrator = _STATUS,
    ) -> JSONResponse:
        deadline = time.monotonic() + wait
        while True:
            seen = gw.status_changed.version
            st = await gw.db.read(lambda c: _status(c, message_id))
            if st is None or not (who.scopes.operator or st["integrator"] == who.name):
                # another integrator's message is as unknown as a message never sent
                return error("not_found", f"no message {message_id} sent from here", 404)
            left = deadline - time.monotonic()
            if since is None or st["status"] != since or left <= 0 or gw.stopping:
                return JSONResponse(st)
            await gw.status_changed.wait(seen, left)

    @app.get(
        "/v1/inbox",
        summary="Stored inbound messages after a cursor (only the kinds of the scope)",
        tags=["inbox"],
        responses=_AUTH_ERRORS,
        **_secured("inbox:read (or inbox:read:<KIND>)"),
    )
    async def inbox_list(
        after: int = Query(
            0, ge=0, le=MAX_CURSOR, description="cursor: the last message's cursor seen"
        ),
        limit: int = Query(100, ge=1, le=1000),
        unacked: bool = Query(False, description="only messages not yet acknowledged"),
        wait: float = Query(0, ge=0, le=s.api.max_wait_s, description="long-poll seconds"),
        who: Integrator = _INBOX,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        kinds = who.scopes.inbox_filter
        while True:
            seen = gw.inbox_changed.version
            msgs = await gw.db.read(lambda c: _listing(c, after, limit, unacked, kinds))
            left = deadline - time.monotonic()
            if msgs or left <= 0 or gw.stopping:
                cursor = msgs[-1]["cursor"] if msgs else after
                return {"messages": msgs, "cursor": cursor}
            await gw.inbox_changed.wait(seen, left)

    @app.get(
        "/v1/inbox/{message_id}",
        summary="One stored message with its payload (JSON and base64 Avro)",
        tags=["inbox"],
        responses={404: {"model": ErrorBody}, **_AUTH_ERRORS},
        **_secured("inbox:read (or inbox:read:<KIND> for a message of that kind)"),
    )
    async def inbox_fetch(message_id: str, who: Integrator = _INBOX) -> JSONResponse:
        m = await gw.db.read(lambda c: inbox.fetch(c, message_id))
        if m is None:
            return error("not_found", f"no stored message {message_id}", 404)
        if not who.scopes.may_read(str(m["kind"])):
            raise Forbidden(who, f"integrator {who.name} may not read {m['kind']} messages")
        m["payload"] = gw.payload_json(base64.b64decode(m["payload_avro"]))
        return JSONResponse(m)

    @app.post(
        "/v1/inbox/ack",
        summary="Acknowledge messages the integrator has taken (only kinds it may read)",
        tags=["inbox"],
        responses=_AUTH_ERRORS,
        **_secured("inbox:read (or inbox:read:<KIND>: other kinds are not acknowledged)"),
    )
    async def inbox_ack(req: AckRequest, who: Integrator = _INBOX) -> dict[str, int]:
        now = gw.clock()
        kinds = who.scopes.inbox_filter
        n = await gw.db.write(lambda c: _ack(c, req.message_ids, now, kinds))
        return {"acked": n}

    @app.get(
        "/v1/rejected",
        summary="Inbound records refused by verification",
        tags=["operators"],
        responses=_AUTH_ERRORS,
        **_secured("operator"),
    )
    async def rejected(
        after: int = Query(0, ge=0, le=MAX_CURSOR),
        limit: int = Query(100, ge=1, le=1000),
        who: Integrator = _OPERATOR,
    ) -> dict[str, Any]:
        rows = await gw.db.read(lambda c: inbox.rejected_list(c, after, limit))
        return {"rejected": rows, "cursor": rows[-1]["seq"] if rows else after}

    @app.get(
        "/v1/status",
        summary="Gateway summary: outbox, inbox, broker (counts, no content)",
        tags=["operators"],
        responses=_AUTH_ERRORS,
        **_secured("status:read or operator"),
    )
    async def summary(who: Integrator = _STATUS) -> dict[str, Any]:
        counts = await gw.db.read(outbox.status_counts)
        ib = await gw.db.read(inbox.counts)
        return {
            "station": s.station,
            "version": __version__,
            "accepting": not gw.stopping,
            "broker_connected": gw.drainer.connected,
            "inbound_connected": gw.inbound.connected,
            "outbox": {
                "pending_messages": gw.backlog.messages,
                "pending_bytes": gw.backlog.bytes,
                "by_status": counts,
            },
            "inbox": ib,
            "directory_stations": len(gw.directory()),
        }

    return app


def _status(conn: sqlite3.Connection, message_id: str) -> dict[str, Any] | None:
    """A sent message's status, with the integrator that submitted it."""
    st = outbox.status(conn, message_id)
    if st is not None:
        row = conn.execute("SELECT integrator FROM outbox WHERE id = ?", (message_id,)).fetchone()
        st["integrator"] = None if row is None else row[0]
    return st


def _listing(
    conn: sqlite3.Connection, after: int, limit: int, unacked: bool, kinds: frozenset[str] | None
) -> list[dict[str, Any]]:
    """``inbox.listing``, limited to ``kinds`` when the integrator's scope names some."""
    if kinds is None:
        return inbox.listing(conn, after, limit, unacked_only=unacked)
    marks = ", ".join("?" * len(kinds))
    cond = " AND acked_ms IS NULL" if unacked else ""
    rows = conn.execute(
        f"SELECT {inbox._COLUMNS} FROM inbox WHERE visible = 1 AND seq > ?{cond}"
        f" AND kind IN ({marks}) ORDER BY seq LIMIT ?",
        (after, *sorted(kinds), limit),
    ).fetchall()
    return [inbox._message(r, False) for r in rows]


def _ack(conn: sqlite3.Connection, ids: list[str], now: int, kinds: frozenset[str] | None) -> int:
    """``inbox.ack`` of the ids whose kind the integrator may read (others are not touched)."""
    if kinds is not None:
        allowed: list[str] = []
        km = ", ".join("?" * len(kinds))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            allowed += [
                str(r[0])
                for r in conn.execute(
                    f"SELECT message_id FROM inbox WHERE message_id IN ({marks})"
                    f" AND kind IN ({km})",
                    (*chunk, *sorted(kinds)),
                )
            ]
        ids = allowed
    return inbox.ack(conn, ids, now)


class Changed:
    """A version counter with waiters: long-polls wait until it moves past what they saw."""

    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seen: int, seconds: float) -> None:
        if self.version != seen:
            return
        ev = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ev.wait(), seconds)


Handler = Callable[..., Awaitable[Any]]
