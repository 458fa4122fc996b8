"""The integrator API (FastAPI): intake, message status, inbox. OpenAPI at ``/openapi.json``.

Every refusal is JSON ``{"error": <code>, "detail": <text>}`` with a
specific code (``docs/gateway.md`` lists them). ``202`` is sent only after
the sealed envelope is committed to the SQLite outbox.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from i24net import __version__
from i24net.envelope import Precedence
from i24net.errors import IntakeRefusedError
from i24net.gateway import inbox, outbox
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
    app.add_middleware(Guard)

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

    async def accept(build: Callable[[], Submission], idem_key: str | None) -> JSONResponse:
        t0 = time.perf_counter()
        kind = precedence = "unknown"
        try:
            sub = build()
            # label values are the client's words: only known ones (bounded label sets)
            kind = sub.kind if sub.kind in KIND_SCHEMAS else "unknown"
            precedence = sub.precedence if sub.precedence in _PRECEDENCES else "unknown"
            accepted = await gw.submit(sub, idem_key)
        except IntakeRefusedError as exc:
            gw.metrics.intake_refusals.labels(exc.code).inc()
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
        responses=_ERRORS,
        summary="Submit a message (JSON, or base64 Avro in payload_avro)",
        tags=["messages"],
    )
    async def submit_json(
        req: SubmitRequest,
        idempotency_key: str | None = Header(None, max_length=200),
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

        return await accept(build, idempotency_key)

    @app.post(
        "/v1/messages/avro",
        status_code=202,
        response_model=Accepted,
        responses=_ERRORS,
        summary="Submit a message as raw Avro single-object encoding; the kind is implied "
        "by the schema fingerprint, the header fields are query parameters",
        tags=["messages"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {AVRO_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
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

        return await accept(build, idempotency_key)

    @app.get(
        "/v1/messages/{message_id}",
        summary="Status of a message this station sent, with per-station delivery and receipts",
        tags=["messages"],
        responses={404: {"model": ErrorBody}},
    )
    async def message_status(
        message_id: str,
        wait: float = Query(0, ge=0, le=s.api.max_wait_s, description="long-poll seconds"),
        since: str | None = Query(None, description="with wait: return once status != since"),
    ) -> JSONResponse:
        deadline = time.monotonic() + wait
        while True:
            seen = gw.status_changed.version
            st = await gw.db.read(lambda c: outbox.status(c, message_id))
            if st is None:
                return error("not_found", f"no message {message_id} sent from here", 404)
            left = deadline - time.monotonic()
            if since is None or st["status"] != since or left <= 0 or gw.stopping:
                return JSONResponse(st)
            await gw.status_changed.wait(seen, left)

    @app.get("/v1/inbox", summary="Stored inbound messages after a cursor", tags=["inbox"])
    async def inbox_list(
        after: int = Query(
            0, ge=0, le=MAX_CURSOR, description="cursor: the last message's cursor seen"
        ),
        limit: int = Query(100, ge=1, le=1000),
        unacked: bool = Query(False, description="only messages not yet acknowledged"),
        wait: float = Query(0, ge=0, le=s.api.max_wait_s, description="long-poll seconds"),
    ) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while True:
            seen = gw.inbox_changed.version
            msgs = await gw.db.read(lambda c: inbox.listing(c, after, limit, unacked_only=unacked))
            left = deadline - time.monotonic()
            if msgs or left <= 0 or gw.stopping:
                cursor = msgs[-1]["cursor"] if msgs else after
                return {"messages": msgs, "cursor": cursor}
            await gw.inbox_changed.wait(seen, left)

    @app.get(
        "/v1/inbox/{message_id}",
        summary="One stored message with its payload (JSON and base64 Avro)",
        tags=["inbox"],
        responses={404: {"model": ErrorBody}},
    )
    async def inbox_fetch(message_id: str) -> JSONResponse:
        m = await gw.db.read(lambda c: inbox.fetch(c, message_id))
        if m is None:
            return error("not_found", f"no stored message {message_id}", 404)
        m["payload"] = gw.payload_json(base64.b64decode(m["payload_avro"]))
        return JSONResponse(m)

    @app.post(
        "/v1/inbox/ack", summary="Acknowledge messages the integrator has taken", tags=["inbox"]
    )
    async def inbox_ack(req: AckRequest) -> dict[str, int]:
        now = gw.clock()
        n = await gw.db.write(lambda c: inbox.ack(c, req.message_ids, now))
        return {"acked": n}

    @app.get("/v1/rejected", summary="Inbound records refused by verification", tags=["operators"])
    async def rejected(
        after: int = Query(0, ge=0, le=MAX_CURSOR), limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        rows = await gw.db.read(lambda c: inbox.rejected_list(c, after, limit))
        return {"rejected": rows, "cursor": rows[-1]["seq"] if rows else after}

    @app.get("/v1/status", summary="Gateway summary: outbox, inbox, broker", tags=["operators"])
    async def summary() -> dict[str, Any]:
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
