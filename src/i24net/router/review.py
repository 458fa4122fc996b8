"""Human review of held messages: the quarantine store, decisions, and the HTTP API.

The store is rebuilt from Kafka (read_committed): every record of
``i24.quarantine`` is a hold; an ``APPROVED``, ``REJECTED`` or ``EXPIRED``
record of ``i24.audit`` for the same message id closes it. So any instance
can serve reviews after a restart (run the API on one instance: two
reviewers approving the same message on two instances at once would both
deliver; recipients deduplicate, the audit shows both).

Reviewer identity: with ``[review] tokens_file`` each request carries
``Authorization: Bearer <token>``, and the file maps BLAKE2b-256(token) hex
to the reviewer's identity; without it, the identity is taken from the
``X-I24-Reviewer`` header set by an authenticating reverse proxy (bind the
API to loopback then).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tomllib
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, Field

from i24net.audit import Action, Entry, digest, encode_reason
from i24net.audit.topic import prime
from i24net.errors import ConfigError, I24Error, NotHeld, VerificationError
from i24net.router.app import RouterApp
from i24net.router.pipeline import Decided
from i24net.router.settings import RouterSettings
from i24net.schemas import KIND_SCHEMAS

log = logging.getLogger(__name__)

__all__ = ["NotHeld", "ReviewService", "review_router"]

CLOSING = {"APPROVED", "REJECTED", "EXPIRED"}
Grounds = Literal[
    "POLITICAL",
    "MILITARY",
    "RELIGIOUS",
    "RACIAL",
    "HUMAN_RIGHTS",
    "REFUGEE_PROTECTION",
    "INSUFFICIENT_DATA",
    "OTHER",
]


@dataclass(slots=True)
class Held:
    message_id: str
    envelope: bytes
    headers: dict[str, str]
    offset: str

    def summary(self) -> dict[str, Any]:
        h = self.headers
        return {
            "message_id": self.message_id,
            "sender": h.get("i24-sender"),
            "kind": h.get("i24-kind"),
            "precedence": h.get("i24-precedence"),
            "reason": h.get("i24-reason"),
            "rule": h.get("i24-rule"),
            "screen": _json(h.get("i24-screen")),
            "held_ms": int(h.get("i24-held-ms", "0") or 0),
            "origin": h.get("i24-origin"),
        }


def _json(s: str | None) -> Any:
    import json

    try:
        return json.loads(s) if s else None
    except ValueError:
        return None


def _plain(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


class ReviewService:
    """The quarantine store and the two decisions (see the module docstring)."""

    def __init__(self, app: RouterApp, settings: RouterSettings) -> None:
        self.app = app
        self.settings = settings
        self.held: dict[str, Held] = {}
        self.closed: set[str] = set()
        self.tokens = _load_tokens(settings)
        self.loaded = asyncio.Event()

    # --- store ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        t = self.settings.topics
        c = AIOKafkaConsumer(
            **self.app.conn.client_kwargs(),
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await c.start()
        try:
            await prime(c, [t.quarantine, t.audit])
            tps = [
                TopicPartition(topic, p)
                for topic in (t.quarantine, t.audit)
                for p in sorted(c.partitions_for_topic(topic) or ())
            ]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            while not stop.is_set():
                batch = await c.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        self._apply(r)
                self._gauges()
                if not batch:
                    self.loaded.set()
        finally:
            await c.stop()

    def _apply(self, r: Any) -> None:
        t = self.settings.topics
        if r.topic == t.quarantine and r.key and r.value:
            mid = r.key.decode()
            if mid not in self.closed:
                hs = {k: bytes(v).decode("utf-8", "replace") for k, v in r.headers}
                self.held[mid] = Held(mid, r.value, hs, f"{r.topic}:{r.partition}:{r.offset}")
        elif r.topic == t.audit and r.value:
            try:
                _, rec = self.app.store.decode_single(r.value, expected="net.i24.AuditRecord")
            except I24Error:
                return
            if rec["action"] in CLOSING and rec["message_id"]:
                self.closed.add(rec["message_id"])
                self.held.pop(rec["message_id"], None)

    def _gauges(self) -> None:
        m = self.app.metrics
        m.quarantine_size.set(len(self.held))
        oldest = min((h.summary()["held_ms"] for h in self.held.values()), default=0)
        m.quarantine_oldest.set(oldest / 1000)

    def held_list(self) -> list[dict[str, Any]]:
        return sorted((h.summary() for h in self.held.values()), key=lambda s: s["held_ms"])

    def _get(self, message_id: str) -> Held:
        h = self.held.get(message_id)
        if h is None:
            raise NotHeld(f"no undecided hold for message {message_id}")
        return h

    def show(self, message_id: str) -> dict[str, Any]:
        """The hold, decrypted with the GS key (never logged)."""
        h = self._get(message_id)
        out = h.summary()
        try:
            inbound = self.app.pipeline.reopen.open(h.envelope, record=False)
        except VerificationError as exc:
            out["openable"] = False
            out["problem"] = exc.reason.value
            return out
        hd = inbound.header
        out.update(
            openable=True,
            header=_plain(hd.to_avro()),
            payload=_plain(
                self.app.store.decode_single(inbound.payload, expected=KIND_SCHEMAS[hd.kind])[1]
            ),
        )
        return out

    # --- decisions ---------------------------------------------------------------

    async def approve(self, message_id: str, reviewer: str, explanation: str) -> dict[str, Any]:
        h = self._get(message_id)
        review_id = f"R-{uuid.uuid4().hex[:16]}"
        p = self.app.pipeline
        try:
            inbound = p.reopen.open(h.envelope, record=False)
        except VerificationError as exc:
            d = self._close(h, Action.EXPIRED, reviewer, [exc.reason.value, f"review:{review_id}"])
            n = p.notice(
                h.headers.get("i24-sender", ""),
                message_id,
                "EXPIRED",
                exc.reason.value,
                "could not be delivered after review",
            )
            if n:
                d.outputs.append(n)
            await self.app.execute([d])
            self._done(message_id, "expired")
            return {"review_id": review_id, "status": "expired", "reason": exc.reason.value}
        d = p.deliver(inbound, digest(h.envelope), review_id=review_id, reviewer=reviewer)
        d.audit[-1] = _with_reason(
            d.audit[-1], ["review:" + review_id, "reviewer:" + reviewer, "note:" + explanation]
        )
        await self.app.execute([d])
        self._done(message_id, "approved")
        return {"review_id": review_id, "status": d.status}

    async def reject(
        self, message_id: str, reviewer: str, grounds: str, explanation: str
    ) -> dict[str, Any]:
        h = self._get(message_id)
        review_id = f"R-{uuid.uuid4().hex[:16]}"
        d = self._close(
            h,
            Action.REJECTED,
            reviewer,
            [f"grounds:{grounds}", f"review:{review_id}", "note:" + explanation],
        )
        n = self.app.pipeline.notice(
            h.headers.get("i24-sender", ""), message_id, "REJECTED", grounds, explanation
        )
        if n:
            d.outputs.append(n)
        await self.app.execute([d])
        self._done(message_id, "rejected")
        return {"review_id": review_id, "status": "rejected"}

    def _close(self, h: Held, action: Action, reviewer: str, reasons: list[str]) -> Decided:
        d = Decided(action.value.lower())
        d.audit.append(
            Entry(
                action,
                reviewer,
                message_id=h.message_id,
                kind=h.headers.get("i24-kind"),
                sender=h.headers.get("i24-sender"),
                reason=encode_reason("REVIEW", reasons),
                envelope_digest=digest(h.envelope),
            )
        )
        return d

    def _done(self, message_id: str, verdict: str) -> None:
        self.closed.add(message_id)
        self.held.pop(message_id, None)
        self.app.metrics.review_decisions.labels(verdict).inc()
        self._gauges()

    def identify(self, authorization: str | None, proxy_user: str | None) -> str:
        if self.tokens is not None:
            if not authorization or not authorization.startswith("Bearer "):
                raise HTTPException(401, "Authorization: Bearer <token> required")
            token = authorization.removeprefix("Bearer ").strip().encode()
            who = self.tokens.get(hashlib.blake2b(token, digest_size=32).hexdigest())
            if who is None:
                raise HTTPException(401, "unknown reviewer token")
            return who
        if not proxy_user:
            raise HTTPException(401, "X-I24-Reviewer header required (set by the proxy)")
        return proxy_user


def _with_reason(e: Entry, reasons: list[str]) -> Entry:
    from dataclasses import replace

    return replace(e, reason=encode_reason("REVIEW", reasons))


def _load_tokens(settings: RouterSettings) -> dict[str, str] | None:
    path = settings.review.tokens_file
    if path is None:
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"reviewer tokens file {path}: {exc}") from exc
    tokens = raw.get("tokens")
    if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
        raise ConfigError(f'{path}: expected a [tokens] table of hash = "identity"')
    return {str(k).lower(): str(v) for k, v in tokens.items()}


class Approve(BaseModel):
    explanation: Annotated[str, Field(max_length=4000)] = ""


class Reject(BaseModel):
    grounds: Grounds
    explanation: Annotated[str, Field(min_length=1, max_length=4000)]


def review_router(svc: ReviewService) -> APIRouter:
    """``/review/held`` (list), ``/review/held/{id}`` (show), ``.../approve``, ``.../reject``."""
    r = APIRouter(prefix="/review", tags=["review"])

    def reviewer(
        authorization: Annotated[str | None, Header()] = None,
        x_i24_reviewer: Annotated[str | None, Header()] = None,
    ) -> str:
        return svc.identify(authorization, x_i24_reviewer)

    # Not an Annotated alias: with postponed annotations FastAPI resolves names in the
    # module's globals, and a local alias would silently turn into a query parameter.
    who_dep = Depends(reviewer)

    @r.get("/held")
    async def list_held(who: str = who_dep) -> list[dict[str, Any]]:
        return svc.held_list()

    @r.get("/held/{message_id}")
    async def show(message_id: str, who: str = who_dep) -> dict[str, Any]:
        try:
            return svc.show(message_id)
        except NotHeld as exc:
            raise HTTPException(404, str(exc)) from exc

    @r.post("/held/{message_id}/approve")
    async def approve(message_id: str, body: Approve, who: str = who_dep) -> dict[str, Any]:
        try:
            return await svc.approve(message_id, who, body.explanation)
        except NotHeld as exc:
            raise HTTPException(404, str(exc)) from exc

    @r.post("/held/{message_id}/reject")
    async def reject(message_id: str, body: Reject, who: str = who_dep) -> dict[str, Any]:
        try:
            return await svc.reject(message_id, who, body.grounds, body.explanation)
        except NotHeld as exc:
            raise HTTPException(404, str(exc)) from exc

    return r
