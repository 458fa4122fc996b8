"""Human review of held messages: the quarantine store, decisions, four-eyes, the HTTP API.

The store is rebuilt from Kafka (read_committed): every record of
``i24.quarantine`` is a hold; an ``APPROVED``, ``REJECTED`` or ``EXPIRED``
record of ``i24.audit`` for the same message id closes it. So any instance
can serve reviews after a restart.

Coordination between instances goes through ``i24.review`` (one partition,
JSON records keyed by message id, read from the beginning by every instance):

* **claim**: a decision first appends a claim and reads the partition back up
  to it; the first live claim of a message in log order wins, every other
  claimant answers :class:`~i24net.errors.ReviewConflict` (409) and commits
  nothing. Two reviewers deciding the same hold on two instances at once can
  therefore no longer both deliver. A claim whose instance died between claim
  and commit stops blocking the hold after ``[review] claim_timeout_ms``; a
  commit that fails releases its claim at once.
* **proposal** / **withdrawal**: with four-eyes (``four_eyes_refusals``, and
  ``four_eyes_red_notice_approvals`` for held Red Notice requests) a decision
  is only proposed; it takes effect when a *different* reviewer confirms it
  (the proposer confirming is :class:`~i24net.errors.ReviewForbidden`, 403).
  Proposals live on the topic, so every instance shows them and they survive
  restarts. The audit entry of the decision names the confirming reviewer as
  actor and the proposer in its reasons (``proposed:<who>``).

The topic carries reviewer names, grounds and explanations, never message
content. ``i24net provision`` creates it; the service creates it itself when
its principal may (a development broker).

Reviewer identity for the JSON API: with ``[review] tokens_file`` each request
carries ``Authorization: Bearer <token>``, and the file maps BLAKE2b-256(token)
hex to the reviewer's identity; without it, the identity is taken from the
``X-I24-Reviewer`` header set by an authenticating reverse proxy, and only when
the request comes from this machine (loopback): ``[http]`` also serves /metrics
and may be reachable from elsewhere, where anyone could send the header. The web
console (``router/console``) signs reviewers in with a password or a token and
keeps a session.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ipaddress
import json
import logging
import re
import tomllib
import typing
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from pydantic import BaseModel, Field

from i24net.audit import Action, Entry, digest, encode_reason
from i24net.audit.topic import prime
from i24net.errors import (
    ConfigError,
    I24Error,
    NotHeld,
    ReviewConflict,
    ReviewForbidden,
    ServiceError,
    VerificationError,
)
from i24net.grounds import GROUNDS, Grounds
from i24net.policy import Facts
from i24net.router.app import RouterApp
from i24net.router.deadlines import PRECEDENCES, Backlog, backlog, deadline_ms
from i24net.router.pipeline import Decided
from i24net.router.settings import RouterSettings, Topics
from i24net.schemas import KIND_SCHEMAS

if typing.TYPE_CHECKING:
    from i24net.router.console import Console

log = logging.getLogger(__name__)

__all__ = [
    "GROUNDS",
    "Held",
    "KafkaReviewLog",
    "NotHeld",
    "Proposal",
    "ReviewLog",
    "ReviewService",
    "review_router",
    "review_topic",
]

CLOSING = {"APPROVED", "REJECTED", "EXPIRED"}
Verdict = Literal["approve", "reject"]
OTHER_MIN_CHARS = 20
"""A refusal on ``OTHER`` grounds must say why in at least this many characters: the
organisation is criticised for refusals filed under "other" without a reason."""
TRAILS_KEPT = 20_000
"""Messages whose audit trail the store keeps (the oldest are forgotten first)."""
READ_BACK_TIMEOUT_S = 30.0


def review_topic(topics: Topics) -> str:
    """``i24.review``: claims and four-eyes proposals (see the module docstring)."""
    return f"{topics.prefix}i24.review"


class ReviewLog(Protocol):
    """Where claims and proposals are appended; the store reads them back from it."""

    async def append(self, key: bytes, value: bytes) -> int:
        """Append one record; return its offset once the broker has it."""
        ...


class KafkaReviewLog:
    """``i24.review`` through an idempotent producer (acks=all)."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def append(self, key: bytes, value: bytes) -> int:
        md = await self.producer.send_and_wait(self.topic, key=key, value=value, partition=0)
        return int(md.offset)


@dataclass(slots=True)
class Held:
    message_id: str
    envelope: bytes
    headers: dict[str, str]
    offset: str
    language: str | None = None
    """The message's declared language, read from its header on first need (cached)."""

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
            "held_ms": _int(h.get("i24-held-ms")),
            "origin": h.get("i24-origin"),
        }


@dataclass(frozen=True, slots=True)
class Proposal:
    """A four-eyes decision waiting for a second reviewer."""

    proposal_id: str
    message_id: str
    reviewer: str
    verdict: Verdict
    grounds: str | None
    explanation: str
    at_ms: int

    def public(self) -> dict[str, Any]:
        return {
            "proposal_id": self.proposal_id,
            "reviewer": self.reviewer,
            "verdict": self.verdict,
            "grounds": self.grounds,
            "explanation": self.explanation,
            "at_ms": self.at_ms,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    claim_id: str
    reviewer: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class TrailItem:
    """One line of a message's audit trail in the console."""

    at_ms: int
    action: str
    actor: str
    detail: str
    source: Literal["audit", "review"]


@dataclass(slots=True)
class SenderRecord:
    """What this instance has seen of a sender's held messages."""

    held: int = 0
    approved: int = 0
    refused: int = 0
    expired: int = 0


@dataclass(slots=True)
class _Progress:
    """How far the store has read ``i24.review``; decisions wait on it."""

    next_offset: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    def advance(self, offset: int) -> None:
        self.next_offset = max(self.next_offset, offset + 1)
        ev, self.moved = self.moved, asyncio.Event()
        ev.set()


def _json(s: str | None) -> Any:
    try:
        return json.loads(s) if s else None
    except ValueError:
        return None


def _int(s: str | None) -> int:
    try:
        return int(s or 0)
    except ValueError:
        return 0


def _plain(x: Any) -> Any:
    if isinstance(x, bytes):
        return x.hex()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def _rank(precedence: str | None) -> int:
    try:
        return PRECEDENCES.index(precedence or "")
    except ValueError:
        return len(PRECEDENCES)


class ReviewService:
    """The quarantine store, claims, proposals and decisions (see the module docstring)."""

    def __init__(
        self, app: RouterApp, settings: RouterSettings, *, log: ReviewLog | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self.held: dict[str, Held] = {}
        self.closed: set[str] = set()
        self.proposals: dict[str, Proposal] = {}
        self.claims: dict[str, Claim] = {}
        self.senders: dict[str, SenderRecord] = collections.defaultdict(SenderRecord)
        self.trails: collections.OrderedDict[str, list[TrailItem]] = collections.OrderedDict()
        self.tokens = _load_tokens(settings)
        self.loaded = asyncio.Event()
        self.review_log = log
        self.topic = review_topic(settings.topics)
        self._progress = _Progress()

    def now(self) -> int:
        return self.app.pipeline.clock()

    # --- store ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read the three topics from the beginning, for ever; append with a producer."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

        from i24net.kafka import TopicSpec, ensure_topics

        t = self.settings.topics
        # kept as the audit is: a proposal may wait longer than the broker's default week
        await ensure_topics(
            self.app.conn, [TopicSpec(self.topic, 1, config={"retention.ms": "-1"})]
        )
        producer = None
        if self.review_log is None:
            producer = AIOKafkaProducer(
                **self.app.conn.client_kwargs(), enable_idempotence=True, acks="all"
            )
            await producer.start()
            self.review_log = KafkaReviewLog(producer, self.topic)
        c = AIOKafkaConsumer(
            **self.app.conn.client_kwargs(),
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await c.start()
        try:
            topics = [t.quarantine, t.audit, self.topic]
            await prime(c, topics)
            tps = [
                TopicPartition(topic, p)
                for topic in topics
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
            if producer is not None:
                await producer.stop()

    def _apply(self, r: Any) -> None:
        t = self.settings.topics
        if r.topic == self.topic:
            self._apply_review(r)
            self._progress.advance(r.offset)
        elif r.topic == t.quarantine and r.key and r.value:
            mid = r.key.decode("utf-8", "replace")
            if mid not in self.closed:
                hs = {k: bytes(v).decode("utf-8", "replace") for k, v in r.headers}
                if mid not in self.held:
                    self.senders[hs.get("i24-sender", "")].held += 1
                self.held[mid] = Held(mid, r.value, hs, f"{r.topic}:{r.partition}:{r.offset}")
        elif r.topic == t.audit and r.value:
            try:
                _, rec = self.app.store.decode_single(r.value, expected="net.i24.AuditRecord")
            except I24Error:
                return
            mid = rec["message_id"]
            if not mid:
                return
            action = rec["action"]
            if action == "HELD" or mid in self.trails or mid in self.held:
                reasons = _json(rec.get("reason")) or {}
                detail = " ".join(str(x) for x in reasons.get("reasons") or ())
                self._trail(mid, TrailItem(rec["at_ms"], action, rec["actor"], detail, "audit"))
            if action in CLOSING:
                if mid not in self.closed:
                    s = self.senders[rec.get("sender") or ""]
                    if action == "APPROVED":
                        s.approved += 1
                    elif action == "REJECTED":
                        s.refused += 1
                    else:
                        s.expired += 1
                self.closed.add(mid)
                self.held.pop(mid, None)
                self.proposals.pop(mid, None)

    def _apply_review(self, r: Any) -> None:
        """One ``i24.review`` record; malformed ones are ignored (logged)."""
        rec = _json(bytes(r.value).decode("utf-8", "replace")) if r.value else None
        if not isinstance(rec, dict):
            log.warning("ignored a malformed i24.review record at offset %s", r.offset)
            return
        try:
            kind, mid = str(rec["type"]), str(rec["message_id"])
            who, at = str(rec["reviewer"]), int(rec["at_ms"])
            if kind == "claim":
                cur = self.claims.get(mid)
                if cur is None or at - cur.at_ms >= self.settings.review.claim_timeout_ms:
                    self.claims[mid] = Claim(str(rec["claim_id"]), who, at)
            elif kind == "release":
                cur = self.claims.get(mid)
                if cur is not None and cur.claim_id == rec["claim_id"]:
                    del self.claims[mid]
            elif kind == "proposal":
                verdict = rec["verdict"]
                if verdict not in ("approve", "reject"):
                    raise ValueError(verdict)
                if mid not in self.proposals and mid not in self.closed:
                    self.proposals[mid] = Proposal(
                        str(rec["proposal_id"]),
                        mid,
                        who,
                        verdict,
                        rec.get("grounds"),
                        str(rec.get("explanation") or ""),
                        at,
                    )
                grounds = f" {rec.get('grounds')}" if rec.get("grounds") else ""
                self._trail(mid, TrailItem(at, f"PROPOSED {verdict}{grounds}", who, "", "review"))
            elif kind == "withdrawal":
                p = self.proposals.get(mid)
                if p is not None and p.proposal_id == rec["proposal_id"]:
                    del self.proposals[mid]
                    self._trail(mid, TrailItem(at, "WITHDRAWN", who, "", "review"))
            else:
                raise ValueError(kind)
        except (KeyError, TypeError, ValueError):
            log.warning("ignored a malformed i24.review record at offset %s", r.offset)

    def _trail(self, mid: str, item: TrailItem) -> None:
        items = self.trails.get(mid)
        if items is None:
            items = self.trails[mid] = []
            while len(self.trails) > TRAILS_KEPT:
                self.trails.popitem(last=False)
        items.append(item)

    def _gauges(self) -> None:
        m = self.app.metrics
        m.quarantine_size.set(len(self.held))
        oldest = min((_int(h.headers.get("i24-held-ms")) for h in self.held.values()), default=0)
        m.quarantine_oldest.set(oldest / 1000)
        m.review_overdue.set(self.backlog().overdue)

    def backlog(self) -> Backlog:
        """Depth, overdue count, oldest hold, at the router's clock."""
        return backlog(
            (
                (h.headers.get("i24-kind"), h.headers.get("i24-precedence"), _held_ms(h))
                for h in self.held.values()
            ),
            self.settings.review.deadlines,
            self.now(),
        )

    def deadline(self, h: Held) -> int:
        hs = h.headers
        return deadline_ms(
            self.settings.review.deadlines,
            hs.get("i24-kind"),
            hs.get("i24-precedence"),
            _held_ms(h),
        )

    def held_list(self) -> list[dict[str, Any]]:
        """Every hold: overdue first, then by precedence (most urgent first), then age."""
        now = self.now()
        out = []
        for h in self.held.values():
            s = h.summary()
            s["deadline_ms"] = self.deadline(h)
            s["overdue"] = s["deadline_ms"] <= now
            p = self.proposals.get(h.message_id)
            s["proposal"] = p.public() if p else None
            out.append(s)
        out.sort(key=lambda s: (not s["overdue"], _rank(s["precedence"]), s["held_ms"]))
        return out

    def language(self, h: Held) -> str | None:
        """The declared language of a hold (decrypts its header once)."""
        if h.language is None:
            try:
                inbound = self.app.pipeline.reopen.open(h.envelope, record=False)
            except VerificationError:
                return None
            h.language = inbound.header.language.value
        return h.language

    def _get(self, message_id: str) -> Held:
        h = self.held.get(message_id)
        if h is None:
            if message_id in self.closed:
                raise ReviewConflict(f"message {message_id} is already decided")
            raise NotHeld(f"no undecided hold for message {message_id}")
        return h

    def show(self, message_id: str) -> dict[str, Any]:
        """The hold, decrypted with the GS key (never logged), with the words to highlight."""
        h = self._get(message_id)
        out = h.summary()
        out["deadline_ms"] = self.deadline(h)
        p = self.proposals.get(message_id)
        out["proposal"] = p.public() if p else None
        try:
            inbound = self.app.pipeline.reopen.open(h.envelope, record=False)
        except VerificationError as exc:
            out["openable"] = False
            out["problem"] = exc.reason.value
            return out
        hd = inbound.header
        h.language = hd.language.value
        payload = self.app.store.decode_single(inbound.payload, expected=KIND_SCHEMAS[hd.kind])[1]
        out.update(
            openable=True,
            header=_plain(hd.to_avro()),
            payload=_plain(payload),
            hits=self._hits(out.get("screen"), hd, payload),
        )
        return out

    def _hits(self, screen: Any, hd: Any, payload: Any) -> list[dict[str, Any]]:
        """The screen's hits as recorded when held (``words``: the surface words); for
        holds recorded without them, the current policy's indicators on the same text."""
        recorded = screen.get("hits") if isinstance(screen, dict) else None
        if isinstance(recorded, list) and recorded:
            out = []
            for hit in recorded:
                if not isinstance(hit, dict):
                    continue
                words = hit.get("words") or hit.get("terms") or []
                out.append(
                    {
                        "indicator": str(hit.get("indicator", "")),
                        "category": str(hit.get("category", "")),
                        "lang": hit.get("lang"),
                        "words": [str(w) for w in words if isinstance(w, str) and w],
                    }
                )
            return out
        facts = Facts.from_message(
            kind=hd.kind,
            sender=hd.sender,
            language=hd.language.value,
            header_offences=hd.offence_categories,
            handling=[(c.code.value, c.text) for c in hd.handling],
            payload=payload,
        )
        return [
            {
                "indicator": x.indicator,
                "category": x.category,
                "lang": x.lang or None,
                "words": list(x.words or x.terms),
            }
            for x in self.app.pipeline.engine.indicators(facts.texts)
        ]

    # --- coordination on i24.review -------------------------------------------------

    async def _append(self, rec: dict[str, Any]) -> int:
        if self.review_log is None:
            raise ServiceError("the review service is not running yet (no i24.review writer)")
        value = json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode()
        return await self.review_log.append(str(rec["message_id"]).encode(), value)

    async def _read_back(self, offset: int) -> None:
        """Wait until the store has applied ``i24.review`` up to ``offset``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_BACK_TIMEOUT_S
        while self._progress.next_offset <= offset:
            moved = self._progress.moved
            left = deadline - loop.time()
            if left <= 0:
                raise ServiceError("i24.review was not read back in time; try again")
            try:
                await asyncio.wait_for(moved.wait(), left)
            except TimeoutError:
                continue

    def _live_claim(self, mid: str, now: int) -> Claim | None:
        c = self.claims.get(mid)
        if c is None or now - c.at_ms >= self.settings.review.claim_timeout_ms:
            return None
        return c

    async def _claim(self, mid: str, reviewer: str) -> str:
        """Win the right to decide ``mid`` across instances, or raise ReviewConflict."""
        live = self._live_claim(mid, self.now())
        if live is not None:
            raise ReviewConflict(f"message {mid} is being decided by {live.reviewer}")
        claim_id = f"C-{uuid.uuid4().hex[:16]}"
        off = await self._append(
            {
                "type": "claim",
                "message_id": mid,
                "claim_id": claim_id,
                "reviewer": reviewer,
                "instance": self.settings.router.instance,
                "at_ms": self.now(),
            }
        )
        await self._read_back(off)
        if mid in self.closed:
            raise ReviewConflict(f"message {mid} is already decided")
        won = self.claims.get(mid)
        if won is None or won.claim_id != claim_id:
            who = won.reviewer if won else "another reviewer"
            raise ReviewConflict(f"message {mid} is already being decided by {who}")
        return claim_id

    async def _release(self, mid: str, claim_id: str, reviewer: str) -> None:
        try:
            await self._append(
                {
                    "type": "release",
                    "message_id": mid,
                    "claim_id": claim_id,
                    "reviewer": reviewer,
                    "at_ms": self.now(),
                }
            )
        except Exception:  # the claim then times out instead
            log.exception("could not release the claim on %s", mid)

    async def _claimed(
        self,
        mid: str,
        reviewer: str,
        commit: Callable[[], Awaitable[dict[str, Any]]],
        proposal: Proposal | None = None,
    ) -> dict[str, Any]:
        claim_id = await self._claim(mid, reviewer)
        try:
            if proposal is not None:  # confirming: still pending once our claim is read back
                self._pending(mid, proposal.proposal_id)
            return await commit()
        except BaseException:
            await self._release(mid, claim_id, reviewer)
            raise

    # --- four-eyes --------------------------------------------------------------------

    def needs_second(self, h: Held, verdict: Verdict) -> bool:
        rs = self.settings.review
        if verdict == "reject":
            return rs.four_eyes_refusals
        return rs.four_eyes_red_notice_approvals and h.headers.get("i24-kind") == (
            "RED_NOTICE_REQUEST"
        )

    async def decide(
        self,
        message_id: str,
        reviewer: str,
        verdict: Verdict,
        grounds: str | None = None,
        explanation: str = "",
    ) -> dict[str, Any]:
        """A reviewer's decision under the four-eyes policy: proposed or taken."""
        h = self._get(message_id)
        check_explanation(explanation)
        if verdict == "reject":
            _check_grounds(grounds, explanation)
        pending = self.proposals.get(message_id)
        if pending is not None:
            raise ReviewConflict(
                f"message {message_id} has a pending proposal by {pending.reviewer}: "
                "confirm or withdraw it first"
            )
        if self.needs_second(h, verdict):
            return await self.propose(message_id, reviewer, verdict, grounds, explanation)
        if verdict == "approve":
            return await self.approve(message_id, reviewer, explanation)
        assert grounds is not None
        return await self.reject(message_id, reviewer, grounds, explanation)

    async def propose(
        self,
        message_id: str,
        reviewer: str,
        verdict: Verdict,
        grounds: str | None,
        explanation: str,
    ) -> dict[str, Any]:
        self._get(message_id)
        proposal_id = f"P-{uuid.uuid4().hex[:16]}"
        off = await self._append(
            {
                "type": "proposal",
                "message_id": message_id,
                "proposal_id": proposal_id,
                "reviewer": reviewer,
                "verdict": verdict,
                "grounds": grounds,
                "explanation": explanation,
                "at_ms": self.now(),
            }
        )
        await self._read_back(off)
        p = self.proposals.get(message_id)
        if p is None or p.proposal_id != proposal_id:
            raise ReviewConflict(f"message {message_id} already has a proposal or a decision")
        return {"status": "proposed", "proposal_id": proposal_id}

    def _pending(self, message_id: str, proposal_id: str) -> Proposal:
        self._get(message_id)
        p = self.proposals.get(message_id)
        if p is None or p.proposal_id != proposal_id:
            raise ReviewConflict(f"proposal {proposal_id} is no longer pending")
        return p

    async def confirm(self, message_id: str, reviewer: str, proposal_id: str) -> dict[str, Any]:
        """The second pair of eyes: the proposal takes effect in ``reviewer``'s name."""
        p = self._pending(message_id, proposal_id)
        if p.reviewer == reviewer:
            raise ReviewForbidden("four-eyes: a proposal must be confirmed by a different reviewer")
        if p.verdict == "approve":
            return await self.approve(message_id, reviewer, p.explanation, proposal=p)
        return await self.reject(
            message_id, reviewer, p.grounds or "OTHER", p.explanation, proposal=p
        )

    async def withdraw(self, message_id: str, reviewer: str, proposal_id: str) -> dict[str, Any]:
        """Drop a pending proposal (its author changed their mind, or the second reviewer
        disagrees and will decide otherwise); recorded on ``i24.review``.

        It claims the hold like a decision: a confirmation racing it on another instance
        and this withdrawal are then one before the other in the log, and only the first
        stands (unclaimed, both were told they succeeded while the refusal went out)."""
        self._pending(message_id, proposal_id)
        claim_id = await self._claim(message_id, reviewer)
        try:
            self._pending(message_id, proposal_id)  # still pending at our claim
            off = await self._append(
                {
                    "type": "withdrawal",
                    "message_id": message_id,
                    "proposal_id": proposal_id,
                    "reviewer": reviewer,
                    "at_ms": self.now(),
                }
            )
            await self._read_back(off)
        finally:
            await self._release(message_id, claim_id, reviewer)
        return {"status": "withdrawn", "proposal_id": proposal_id}

    # --- decisions that take effect -------------------------------------------------

    async def approve(
        self,
        message_id: str,
        reviewer: str,
        explanation: str,
        *,
        proposal: Proposal | None = None,
    ) -> dict[str, Any]:
        """Deliver now (after winning the claim); four-eyes is :meth:`decide`'s business."""
        h = self._get(message_id)

        async def commit() -> dict[str, Any]:
            review_id = f"R-{uuid.uuid4().hex[:16]}"
            p = self.app.pipeline
            try:
                inbound = p.reopen.open(h.envelope, record=False)
            except VerificationError as exc:
                d = self._close(
                    h,
                    Action.EXPIRED,
                    reviewer,
                    [exc.reason.value, f"review:{review_id}", *_by(proposal)],
                )
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
                d.audit[-1],
                [
                    "review:" + review_id,
                    "reviewer:" + reviewer,
                    "note:" + explanation,
                    *_by(proposal),
                ],
            )
            await self.app.execute([d])
            self._done(message_id, "approved")
            return {"review_id": review_id, "status": d.status}

        return await self._claimed(message_id, reviewer, commit, proposal)

    async def reject(
        self,
        message_id: str,
        reviewer: str,
        grounds: str,
        explanation: str,
        *,
        proposal: Proposal | None = None,
    ) -> dict[str, Any]:
        """Refuse now (after winning the claim); the sender gets grounds and explanation."""
        h = self._get(message_id)

        async def commit() -> dict[str, Any]:
            review_id = f"R-{uuid.uuid4().hex[:16]}"
            d = self._close(
                h,
                Action.REJECTED,
                reviewer,
                [
                    f"grounds:{grounds}",
                    f"review:{review_id}",
                    "note:" + explanation,
                    *_by(proposal),
                ],
            )
            n = self.app.pipeline.notice(
                h.headers.get("i24-sender", ""), message_id, "REJECTED", grounds, explanation
            )
            if n:
                d.outputs.append(n)
            await self.app.execute([d])
            self._done(message_id, "rejected")
            return {"review_id": review_id, "status": "rejected"}

        return await self._claimed(message_id, reviewer, commit, proposal)

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
        h = self.held.get(message_id)
        if h is not None and message_id not in self.closed:
            s = self.senders[h.headers.get("i24-sender", "")]
            if verdict == "approved":
                s.approved += 1
            elif verdict == "rejected":
                s.refused += 1
            else:
                s.expired += 1
        self.closed.add(message_id)
        self.held.pop(message_id, None)
        self.proposals.pop(message_id, None)
        self.app.metrics.review_decisions.labels(verdict).inc()
        self._gauges()

    # --- identity --------------------------------------------------------------------

    def token_identity(self, token: str) -> str | None:
        """The reviewer a bearer token names (tokens file), or None."""
        if self.tokens is None:
            return None
        return self.tokens.get(hashlib.blake2b(token.encode(), digest_size=32).hexdigest())

    def identify(self, authorization: str | None, proxy_user: str | None, peer: str | None) -> str:
        """The reviewer a request speaks for: its bearer token's (with ``tokens_file``), or
        the ``X-I24-Reviewer`` header of a proxy **on this machine** (``peer`` loopback).
        ``[http]`` also serves /metrics and is often bound where Prometheus reaches it: from
        there anyone could send the header, name themselves and confirm their own refusal
        under a second name."""
        if self.tokens is not None:
            if not authorization or not authorization.startswith("Bearer "):
                raise HTTPException(401, "Authorization: Bearer <token> required")
            who = self.token_identity(authorization.removeprefix("Bearer ").strip())
            if who is None:
                raise HTTPException(401, "unknown reviewer token")
            return who
        if not proxy_user:
            raise HTTPException(401, "X-I24-Reviewer header required (set by the proxy)")
        if not _loopback(peer):
            raise HTTPException(
                401,
                "X-I24-Reviewer is an identity only from a proxy on this machine; "
                "from elsewhere, configure [review] tokens_file and send a bearer token",
            )
        return proxy_user


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _held_ms(h: Held) -> int:
    return _int(h.headers.get("i24-held-ms"))


def _by(p: Proposal | None) -> list[str]:
    """Audit reasons naming the four-eyes proposal a decision confirms."""
    return [] if p is None else [f"proposal:{p.proposal_id}", f"proposed:{p.reviewer}"]


_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""Characters an explanation may not hold: C0/C1 controls but tab and line feed (terminal
escapes, NUL) and the bidi embeddings, overrides and isolates (text shown reversed)."""


def check_explanation(explanation: str) -> None:
    """An explanation goes to the sender (the status notice, then its systems and
    terminals) and into the audit: refuse what could rewrite how it, or the screen it is
    shown on, reads. Arabic needs none of these (its direction is the letters' own)."""
    m = _UNSAFE.search(explanation)
    if m is not None:
        raise ValueError(
            f"the explanation holds a control character (U+{ord(m.group()):04X} at "
            f"{m.start()}): write plain text, line breaks allowed"
        )


def _check_grounds(grounds: str | None, explanation: str) -> None:
    if grounds not in GROUNDS:
        raise ValueError(f"grounds must be one of {', '.join(GROUNDS)}")
    if not explanation.strip():
        raise ValueError("a refusal needs an explanation for the sender")
    if grounds == "OTHER" and len(explanation.strip()) < OTHER_MIN_CHARS:
        raise ValueError(
            f"a refusal on OTHER grounds must say why (at least {OTHER_MIN_CHARS} characters)"
        )


def _with_reason(e: Entry, reasons: list[str]) -> Entry:
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


class Confirm(BaseModel):
    proposal_id: Annotated[str, Field(min_length=1, max_length=64)]


def _http(exc: Exception) -> HTTPException:
    if isinstance(exc, NotHeld):
        return HTTPException(404, str(exc))
    if isinstance(exc, ReviewConflict):
        return HTTPException(409, str(exc))
    if isinstance(exc, ReviewForbidden):
        return HTTPException(403, str(exc))
    if isinstance(exc, ValueError):
        return HTTPException(422, str(exc))
    raise exc


def review_router(svc: ReviewService, console: Console | None = None) -> APIRouter:
    """``/review/held`` (list), ``/review/held/{id}`` (show), ``.../approve``,
    ``.../reject``, ``.../confirm``, ``.../withdraw``; and the web console under
    ``/console/`` when ``[review] console`` is on (``console``: one built by the caller,
    e.g. with a test's clock-free sleep)."""
    r = APIRouter()

    def reviewer(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_i24_reviewer: Annotated[str | None, Header()] = None,
    ) -> str:
        peer = request.client.host if request.client else None
        return svc.identify(authorization, x_i24_reviewer, peer)

    # Not an Annotated alias: with postponed annotations FastAPI resolves names in the
    # module's globals, and a local alias would silently turn into a query parameter.
    who_dep = Depends(reviewer)

    @r.get("/review/held", tags=["review"])
    async def list_held(who: str = who_dep) -> list[dict[str, Any]]:
        return svc.held_list()

    @r.get("/review/held/{message_id}", tags=["review"])
    async def show(message_id: str, who: str = who_dep) -> dict[str, Any]:
        try:
            return svc.show(message_id)
        except (NotHeld, ReviewConflict) as exc:
            raise HTTPException(404, str(exc)) from exc

    @r.post("/review/held/{message_id}/approve", tags=["review"])
    async def approve(message_id: str, body: Approve, who: str = who_dep) -> dict[str, Any]:
        try:
            return await svc.decide(message_id, who, "approve", None, body.explanation)
        except (NotHeld, ReviewConflict, ReviewForbidden, ValueError) as exc:
            raise _http(exc) from exc

    @r.post("/review/held/{message_id}/reject", tags=["review"])
    async def reject(message_id: str, body: Reject, who: str = who_dep) -> dict[str, Any]:
        try:
            return await svc.decide(message_id, who, "reject", body.grounds, body.explanation)
        except (NotHeld, ReviewConflict, ReviewForbidden, ValueError) as exc:
            raise _http(exc) from exc

    @r.post("/review/held/{message_id}/confirm", tags=["review"])
    async def confirm(message_id: str, body: Confirm, who: str = who_dep) -> dict[str, Any]:
        try:
            return await svc.confirm(message_id, who, body.proposal_id)
        except (NotHeld, ReviewConflict, ReviewForbidden) as exc:
            raise _http(exc) from exc

    @r.post("/review/held/{message_id}/withdraw", tags=["review"])
    async def withdraw(message_id: str, body: Confirm, who: str = who_dep) -> dict[str, Any]:
        try:
            return await svc.withdraw(message_id, who, body.proposal_id)
        except (NotHeld, ReviewConflict) as exc:
            raise _http(exc) from exc

    if svc.settings.review.console:
        from i24net.router.console import console_router

        r.include_router(console_router(svc, console))
    return r
