"""One input record in, everything to produce out: verify, expand, screen, deliver/hold/refuse.

Pure with respect to Kafka: :meth:`Pipeline.process` returns the records to
produce (deliveries, quarantine, DLQ, status notice) and the audit entries;
the app writes them all in one transaction with the consumer offsets, and
records the message id in the replay window only after the commit.

Every record gets a decision: whatever goes wrong while deciding one record
(a hostile header, a bug, a fault in the codec, the screen or the directory)
dead-letters that record with a reason (``internal_error`` when nothing more
specific fits) and the stream goes on. Only the app's Kafka calls can stop
the service. Everything produced is bounded: a dead-letter record keeps the
original bytes only up to ``DLQ_MAX_VALUE`` (beyond it a prefix, with the
original's size and digest in headers), and a decision whose records would
not fit ``max_record_bytes`` is dead-lettered as ``oversized`` instead.

Envelope versions (issue 17): the router opens v1 and v2 and delivers in the
version the message came in (``Router.deliver`` follows ``Inbound.version``);
the sending gateway chose it so that every recipient can open it. A recipient
without a usable key of that version (its v2 key withdrawn from the directory
between the gateway's choice and the routing) is not delivered to, with the
reason ``no_v<N>_key`` in the sender's status notice; when no recipient is
left the message is dead-lettered ``unknown_recipient`` with that explanation.
The router's own status notices are sealed in the highest version the
recipient supports (``originate(version=None)``). Opened and delivered
envelopes are counted by version (``i24net_router_envelopes_total``).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from i24net.audit import Action, Entry, digest, encode_reason
from i24net.clock import Clock
from i24net.directory import Directory, Status
from i24net.envelope import (
    Decision,
    Header,
    Inbound,
    Language,
    Precedence,
    Recipients,
    Router,
    addressed,
    envelope_version,
    new_message_id,
)
from i24net.errors import CodecError, I24Error, Reason, VerificationError
from i24net.keys import StationSecrets
from i24net.policy import Engine, Facts, Outcome, Verdict
from i24net.replay import ReplayWindow
from i24net.router.metrics import RouterMetrics
from i24net.router.settings import Topics
from i24net.schemas import KIND_SCHEMAS, SchemaStore

log = logging.getLogger(__name__)

NOTICE = "net.i24.StatusNotice"
HINTS = {"i24-msgid", "i24-sender", "i24-kind", "i24-precedence"}
MAX_RECORD_BYTES = (2 << 20) - (64 << 10)
"""Default bound on one produced record (key + value + headers): the router's topics are
created with ``max.message.bytes`` of 2 MiB (docs/topics.md); 64 KiB is left for the
record batch framing."""
DLQ_MAX_VALUE = (1 << 20) + (64 << 10)
"""A dead-letter record keeps at most this much of the original value (every valid
envelope fits: ``max_envelope`` is 1 MiB + 16 KiB); longer input keeps this prefix."""
DLQ_MAX_KEY = 256
"""A longer (hostile) record key is not copied to the dead-letter record."""


@dataclass(frozen=True, slots=True)
class Out:
    """One record to produce."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def size(self) -> int:
        """Key, value and header bytes (what counts against ``max.message.bytes``)."""
        return (
            len(self.key or b"") + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)
        )


@dataclass(slots=True)
class Decided:
    """The result of one input record."""

    status: str  # delivered | held | refused
    outputs: list[Out] = field(default_factory=list)
    audit: list[Entry] = field(default_factory=list)
    record: tuple[str, int] | None = None  # (message id, expires_ms) once committed
    header: Header | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class VersionMetrics:
    """Envelopes by envelope version: opened at the router, delivery envelopes made."""

    envelopes: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> VersionMetrics:
        return cls(
            Counter(
                "i24net_router_envelopes",
                "Envelopes by envelope version (1, 2) and stage: opened (verified input), "
                "delivered (one per recipient, in the inbound's version), originated (the "
                "GS's own status notices)",
                ["version", "stage"],
                registry=registry,
            )
        )


def _hints(header: Header) -> tuple[tuple[str, bytes], ...]:
    return (
        ("i24-msgid", header.message_id.encode()),
        ("i24-sender", header.sender.encode()),
        ("i24-kind", header.kind.encode()),
        ("i24-precedence", header.precedence.value.encode()),
    )


class Pipeline:
    """The router's decision logic for one record (see the module docstring)."""

    def __init__(
        self,
        *,
        secrets: StationSecrets,
        directory: Directory,
        replay: ReplayWindow,
        engine: Engine,
        topics: Topics,
        store: SchemaStore,
        actor: str,
        metrics: RouterMetrics,
        previous: Sequence[StationSecrets] = (),
        notice_lifetime_ms: int = 3 * 24 * 3_600_000,
        max_record_bytes: int = MAX_RECORD_BYTES,
        versions: VersionMetrics | None = None,
    ) -> None:
        self.secrets = secrets
        self.directory = directory
        self.replay = replay
        self.clock: Clock = replay.clock
        self.engine = engine
        self.policy_digest: str | None = None
        """Digest of the policy file behind ``engine`` (set by the app; in the audit)."""
        self.topics = topics
        self.store = store
        self.actor = actor
        self.metrics = metrics
        self.notice_lifetime_ms = notice_lifetime_ms
        self.max_record_bytes = max_record_bytes
        self.versions = versions or VersionMetrics.create(CollectorRegistry())
        self.router = Router(secrets, directory, replay, previous=previous, store=store)
        # Opens what the GS itself sealed (status notices) or held earlier (review):
        # never records in, nor checks against, the router's own seen-id window.
        self._self_window = ReplayWindow(clock=self.clock)
        self.reopen = Router(secrets, directory, self._self_window, previous=previous, store=store)

    def use_previous(self, previous: Sequence[StationSecrets]) -> None:
        """Open with these previous GS key sets from now on (router/keyring.py drops the
        destroyed ones): both routers are rebuilt, the replay windows kept."""
        self.router = Router(
            self.secrets, self.directory, self.replay, previous=previous, store=self.store
        )
        self.reopen = Router(
            self.secrets, self.directory, self._self_window, previous=previous, store=self.store
        )

    # --- entry point --------------------------------------------------------

    def process(
        self,
        topic: str,
        origin: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        batch_ids: set[str],
        appended_ms: int | None = None,
    ) -> Decided:
        """Decide one record; never raises (see the module docstring).

        ``appended_ms`` is the broker's append time of the record (``LogAppendTime`` on
        the ingress topics), a time the sender does not choose: a key revoked by then is
        refused ``revoked_key`` whatever ``created_ms`` says. None: the router's clock."""
        station = self.writer(topic)
        data = value or b""
        try:
            d = self._decide(station, origin, key, data, headers, batch_ids, appended_ms)
        except Exception as exc:  # one record's failure is that record's decision
            log.error(
                "internal error deciding record %s: %s\n%s",
                origin,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),  # no message: it may quote input
            )
            try:
                return self.dead_letter(
                    station, origin, key, data, Reason.INTERNAL_ERROR, hints=headers
                )
            except Exception:  # even the refusal failed: the bare dead-letter record
                log.error("record %s: dead-lettered without audit entry or notice", origin)
                self.metrics.refusals.labels(Reason.INTERNAL_ERROR.value).inc()
                reason = Reason.INTERNAL_ERROR.encode()
                return Decided(
                    "refused",
                    [
                        self._dlq(
                            key, data, (("i24-reason", reason), ("i24-origin", origin.encode()))
                        )
                    ],
                    reason=Reason.INTERNAL_ERROR.value,
                )
        too_big = [o for o in d.outputs if o.size > self.max_record_bytes]
        if too_big:
            log.warning(
                "record %s: decision would produce %d bytes to %s (limit %d): dead-lettered",
                origin,
                too_big[0].size,
                too_big[0].topic,
                self.max_record_bytes,
            )
            return self.dead_letter(station, origin, key, data, Reason.OVERSIZED, header=d.header)
        return d

    def writer(self, topic: str) -> str | None:
        """The station the broker vouches wrote a record of ``topic``: the owner of a
        per-station ``i24.out.<station>`` topic (only it may write there, by ACL), or None
        on the shared ingress topic, where every station may write and the sender of the
        signed header is the only origin (docs/security.md)."""
        if topic == self.topics.ingress:
            return None
        return topic.removeprefix(self.topics.out_prefix)

    def _decide(
        self,
        station: str | None,
        origin: str,
        key: bytes | None,
        data: bytes,
        headers: Sequence[tuple[str, bytes | None]],
        batch_ids: set[str],
        appended_ms: int | None,
    ) -> Decided:
        try:
            at = self.clock() if appended_ms is None else appended_ms
            inbound = self.router.open(data, record=False, appended_ms=at)
            h = inbound.header
            if h.message_id in batch_ids:
                raise VerificationError(
                    Reason.REPLAYED, f"{h.message_id} twice in one batch", message_id=h.message_id
                )
            if station is not None and h.sender != station:
                raise VerificationError(
                    Reason.UNAUTHORISED, f"sender {h.sender} on the topic of {station}"
                )
            self._check_hints(h, headers)
            payload = self._payload(inbound)
            self.versions.envelopes.labels(str(inbound.version), "opened").inc()
        except VerificationError as exc:
            label = station or self._claimed(headers) or "unknown"
            self.metrics.verification_failures.labels(exc.reason.value, label).inc()
            log.info("refused record %s: %s (%s)", origin, exc.reason.value, exc.detail)
            return self._refuse_unverified(
                station, origin, key, data, exc.reason.value, hints=headers
            )
        batch_ids.add(h.message_id)
        facts = Facts.from_message(
            kind=h.kind,
            sender=h.sender,
            language=h.language.value,
            header_offences=h.offence_categories,
            handling=[(c.code.value, c.text) for c in h.handling],
            payload=payload,
        )
        verdict = self.engine.evaluate(facts)
        self.metrics.policy_decisions.labels(verdict.rule, verdict.outcome.value).inc()
        env_digest = digest(data)
        if verdict.outcome is Outcome.REFUSE:
            return self._refuse_policy(inbound, origin, data, env_digest, verdict)
        if verdict.outcome is Outcome.HOLD:
            return self._hold(inbound, origin, data, env_digest, verdict)
        return self.deliver(inbound, env_digest, verdict=verdict, data=data)

    # --- verification helpers -------------------------------------------------

    def _check_hints(self, h: Header, headers: Sequence[tuple[str, bytes | None]]) -> None:
        """Every routing hint present must equal the signed header's value (a null value,
        which Kafka allows, contradicts it too); headers that are not hints are ignored."""
        expected = dict(_hints(h))
        for k, v in headers:
            if k in HINTS and (v is None or expected[k] != bytes(v)):
                raise VerificationError(Reason.MALFORMED, f"record header {k} contradicts envelope")

    def _payload(self, inbound: Inbound) -> dict[str, object]:
        h = inbound.header
        schema = KIND_SCHEMAS.get(h.kind)
        if schema is None:
            raise VerificationError(Reason.UNKNOWN_SCHEMA, f"kind {h.kind}")
        if inbound.payload[2:10] != h.payload_fingerprint:
            raise VerificationError(Reason.MALFORMED, "payload fingerprint differs from header")
        try:
            _, rec = self.store.decode_single(inbound.payload, expected=schema)
        except CodecError as exc:
            raise VerificationError(Reason.UNKNOWN_SCHEMA, f"payload: {exc}") from None
        return rec

    # --- recipients -------------------------------------------------------------

    def expand(self, h: Header, version: int = 1) -> tuple[list[str], dict[str, str]]:
        """Deliverable stations and the undeliverable ones with why.

        ALL is every station in the directory but the sender and the GS; REGION
        every station of that regional group. Exclusions by the source are
        honoured. A suspended or revoked station is skipped with its reason
        (the policy's ``suspended_recipients = "deliver"`` keeps suspended
        stations that still have a usable key); a station with usable keys but none
        of ``version`` (the inbound's envelope version) is skipped ``no_v<N>_key``
        (``no_v1_key`` too: a v2-only station cannot open a v1 message); nothing else
        removes a station.
        """
        now = self.clock()
        ok: list[str] = []
        bad: dict[str, str] = {}
        keep_suspended = self.engine.policy.suspended_recipients == "deliver"
        for st in addressed(h, self.directory):  # the recipients' own resolution
            if st not in self.directory:
                bad[st] = Reason.UNKNOWN_RECIPIENT.value
                continue
            rec = self.directory.record(st)
            if rec.status is Status.SUSPENDED and not keep_suspended:
                bad[st] = "suspended_station"
                continue
            try:
                self.directory.current_encryption_key(
                    st, now, version=version, suspended_ok=keep_suspended
                )
            except VerificationError as exc:
                other = 2 if version == 1 else 1
                # usable keys, none of this version: say so (a directory change raced
                # the sending gateway's choice); else the key's own reason
                known = self._has_key(st, now, other, keep_suspended)
                bad[st] = f"no_v{version}_key" if known else exc.reason.value
                continue
            ok.append(st)
        return ok, bad

    def _has_key(self, st: str, now: int, version: int, suspended_ok: bool) -> bool:
        try:
            self.directory.current_encryption_key(
                st, now, version=version, suspended_ok=suspended_ok
            )
        except VerificationError:
            return False
        return True

    # --- outcomes ---------------------------------------------------------------

    def deliver(
        self,
        inbound: Inbound,
        env_digest: bytes,
        *,
        verdict: Verdict | None = None,
        review_id: str | None = None,
        reviewer: str | None = None,
        data: bytes = b"",
    ) -> Decided:
        h = inbound.header
        stations, bad = self.expand(h, inbound.version)
        if not stations:
            reason = Reason.UNKNOWN_RECIPIENT.value
            explanation = "no deliverable recipient: " + ", ".join(
                f"{k}={v}" for k, v in sorted(bad.items())
            )
            d = Decided("refused", header=h, reason=reason, record=(h.message_id, h.expires_ms))
            d.outputs.append(
                self._dlq(
                    h.message_id.encode(), data, (*_hints(h), ("i24-reason", reason.encode()))
                )
            )
            d.audit.append(self._entry(Action.REFUSED, h, (), None, [reason], env_digest))
            self._notice(d, h, "REFUSED", sorted(bad), reason, explanation)
            self.metrics.refusals.labels(reason).inc()
            return d
        decision = Decision.REVIEW_APPROVED if review_id else Decision.SCREEN_PASSED
        try:
            envelopes = self.router.deliver(
                inbound,
                stations,
                decision=decision,
                review_id=review_id,
                suspended_ok=self.engine.policy.suspended_recipients == "deliver",
            )
        except VerificationError as exc:
            # A recipient's key changed between expand and the wraps (it cannot with one
            # directory object and one clock reading, but a refusal beats internal_error).
            log.warning("message %s: no delivery made: %s", h.message_id, exc.detail)
            return self.dead_letter(
                None, "deliver", h.message_id.encode(), data, exc.reason, header=h
            )
        d = Decided("delivered", header=h, record=(h.message_id, h.expires_ms), reason=None)
        hints = _hints(h)
        for st, env in envelopes.items():
            d.outputs.append(Out(self.topics.inbox(st), h.message_id.encode(), env, hints))
            self.metrics.deliveries.labels(st).inc()
        self.versions.envelopes.labels(str(inbound.version), "delivered").inc(len(envelopes))
        rule: str | None = verdict.rule if verdict else None
        reasons = list(verdict.reasons) if verdict else []
        if review_id:
            reasons = [f"review:{review_id}", f"reviewer:{reviewer}"]
            rule = "REVIEW"
        d.audit.append(
            self._entry(
                Action.APPROVED if review_id else Action.DELIVERED,
                h,
                tuple(stations),
                rule,
                reasons,
                env_digest,
                actor=reviewer,
                screened=verdict is not None and not review_id,
                hits=verdict.hit_record() if verdict is not None and not review_id else (),
            )
        )
        if h.kind != "DELIVERY_RECEIPT":
            note: str | None = None
            if bad:
                note = "not delivered to: " + ", ".join(
                    f"{k} ({v})" for k, v in sorted(bad.items())
                )
            self._notice(d, h, "DELIVERED", stations, None, note)
        return d

    def _hold(
        self, inbound: Inbound, origin: str, data: bytes, env_digest: bytes, v: Verdict
    ) -> Decided:
        h = inbound.header
        d = Decided("held", header=h, reason=v.reason, record=(h.message_id, h.expires_ms))
        meta = json.dumps(
            {
                "rule": v.rule,
                "reasons": list(v.reasons),
                "also_matched": list(v.also_matched),
                "hits": v.hit_record(),  # what the console highlights: words, never the text
            },
            separators=(",", ":"),
        )
        d.outputs.append(
            Out(
                self.topics.quarantine,
                h.message_id.encode(),
                data,
                (
                    *_hints(h),
                    ("i24-reason", v.reason.encode()),
                    ("i24-rule", v.rule.encode()),
                    ("i24-screen", meta.encode()),
                    ("i24-origin", origin.encode()),
                    ("i24-held-ms", str(self.clock()).encode()),
                ),
            )
        )
        d.audit.append(
            self._entry(
                Action.HELD,
                h,
                (),
                v.rule,
                list(v.reasons),
                env_digest,
                screened=True,
                hits=v.hit_record(),
            )
        )
        self._notice(d, h, "HELD_FOR_REVIEW", [], v.reason, None)
        self.metrics.holds.labels(v.reason).inc()
        return d

    def _refuse_policy(
        self, inbound: Inbound, origin: str, data: bytes, env_digest: bytes, v: Verdict
    ) -> Decided:
        h = inbound.header
        d = Decided("refused", header=h, reason=v.reason, record=(h.message_id, h.expires_ms))
        d.outputs.append(
            self._dlq(
                h.message_id.encode(),
                data,
                (
                    *_hints(h),
                    ("i24-reason", v.reason.encode()),
                    ("i24-rule", v.rule.encode()),
                    ("i24-origin", origin.encode()),
                ),
            )
        )
        d.audit.append(
            self._entry(
                Action.REFUSED,
                h,
                (),
                v.rule,
                list(v.reasons),
                env_digest,
                screened=True,
                hits=v.hit_record(),
            )
        )
        self._notice(d, h, "REFUSED", [], v.reason, f"refused by rule {v.rule}")
        self.metrics.refusals.labels(v.reason).inc()
        return d

    def _claimed(self, headers: Sequence[tuple[str, bytes | None]]) -> str | None:
        """The ``i24-sender`` hint of a record if it names a directory station: a claim,
        never an identity (any station may write any hint on the ingress topic); bounded
        to the directory so that metric labels stay bounded."""
        for k, v in headers:
            if k == "i24-sender" and v is not None and len(v) <= 16:
                code = bytes(v).decode("ascii", "replace")
                try:
                    return code if code in self.directory else None
                except Exception:  # a faulty directory must not stop the refusal
                    return None
        return None

    def _refuse_unverified(
        self,
        station: str | None,
        origin: str,
        key: bytes | None,
        data: bytes,
        reason: str,
        explanation: str = "envelope failed verification at the router",
        *,
        hints: Sequence[tuple[str, bytes | None]] = (),
    ) -> Decided:
        """Refuse a record whose envelope could not be trusted (nothing in it is read).

        ``station`` is the writer the broker vouches for (the owner of a per-station
        topic): it gets a notice. On the shared ingress topic (None) nobody does: the
        ``i24-sender`` hint is only a claim, and a notice sent on a claim would let one
        station forge refusals of another's messages. The claim goes to the DLQ record
        (``i24-claimed-sender``) for operators."""
        d = Decided("refused", reason=reason)
        who: tuple[tuple[str, bytes], ...] = ()
        if station is not None:
            who = (("i24-sender", station.encode()),)
        else:
            claimed_sender = self._claimed(hints)
            if claimed_sender is not None:
                who = (("i24-claimed-sender", claimed_sender.encode()),)
        d.outputs.append(
            self._dlq(
                key,
                data,
                (("i24-reason", reason.encode()), ("i24-origin", origin.encode()), *who),
            )
        )
        claimed = key[:64].decode("utf-8", "replace")[:64] if key else None
        d.audit.append(
            Entry(
                Action.REFUSED,
                self.actor,
                message_id=claimed,
                sender=station[:64] if station else None,
                reason=encode_reason(None, [reason]),
                envelope_digest=digest(data),
            )
        )
        if station is None:
            self.metrics.refusals.labels(reason).inc()
            return d
        # The topic's station wrote the record (broker ACLs): tell it, if it can be reached.
        try:
            reachable = station in self.directory
        except Exception as exc:  # a faulty directory must not stop the refusal
            log.error("directory lookup of %s failed: %s", station, type(exc).__name__)
            reachable = False
        if reachable and reason != Reason.REPLAYED.value:
            notice = self._make_notice(
                station, claimed or "", "REFUSED", [], reason, explanation, Precedence.ROUTINE
            )
            if notice is not None:
                d.outputs.append(notice)
        self.metrics.refusals.labels(reason).inc()
        return d

    def dead_letter(
        self,
        station: str | None,
        origin: str,
        key: bytes | None,
        data: bytes,
        reason: Reason,
        *,
        header: Header | None = None,
        hints: Sequence[tuple[str, bytes | None]] = (),
    ) -> Decided:
        """Refuse one record for ``reason`` whatever its content: the bounded original to
        ``i24.dlq``, an audit entry, a notice to the writing station. With ``header`` (the
        envelope was verified) its message id is final: recorded in the replay window.

        Never raises for a record's sake: it is the decision of last resort (an internal
        error while deciding, a decision that cannot be produced)."""
        explanation = {
            Reason.INTERNAL_ERROR: "the router could not decide this record (internal error)",
            Reason.OVERSIZED: "what the router would produce for this message is too large",
            Reason.BROKER_REFUSED: "the broker refused to store what the router produced",
        }.get(reason, "refused by the router")
        if header is None:
            return self._refuse_unverified(
                station, origin, key, data, reason.value, explanation, hints=hints
            )
        h = header
        d = Decided("refused", header=h, reason=reason.value, record=(h.message_id, h.expires_ms))
        d.outputs.append(
            self._dlq(
                h.message_id.encode(),
                data,
                (*_hints(h), ("i24-reason", reason.encode()), ("i24-origin", origin.encode())),
            )
        )
        d.audit.append(self._entry(Action.REFUSED, h, (), None, [reason.value], digest(data)))
        self._notice(d, h, "REFUSED", [], reason.value, explanation)
        self.metrics.refusals.labels(reason.value).inc()
        return d

    def _dlq(self, key: bytes | None, data: bytes, headers: tuple[tuple[str, bytes], ...]) -> Out:
        """The dead-letter record of ``data``: always small enough to be produced.

        The original value up to ``DLQ_MAX_VALUE`` (a prefix beyond it, ``i24-truncated``),
        its full size (``i24-size``) and BLAKE2b-256 (``i24-digest``, hex), so an operator
        can match it to the sender's copy; a key over ``DLQ_MAX_KEY`` bytes is dropped.
        """
        extra: list[tuple[str, bytes]] = [
            ("i24-size", str(len(data)).encode()),
            ("i24-digest", digest(data).hex().encode()),
        ]
        if len(data) > DLQ_MAX_VALUE:
            extra.append(("i24-truncated", b"1"))
        if key is not None and len(key) > DLQ_MAX_KEY:
            key = None
        return Out(self.topics.dlq, key, data[:DLQ_MAX_VALUE], (*headers, *extra))

    # --- audit and notices ----------------------------------------------------------

    def _entry(
        self,
        action: Action,
        h: Header,
        recipients: tuple[str, ...],
        rule: str | None,
        reasons: list[str],
        env_digest: bytes,
        *,
        actor: str | None = None,
        screened: bool = False,
        hits: Sequence[Mapping[str, object]] = (),
    ) -> Entry:
        """An audit entry; ``screened``: the policy decided it (its digest is recorded);
        ``hits``: what the screen found (``Verdict.hit_record``)."""
        return Entry(
            action,
            actor or self.actor,
            message_id=h.message_id,
            kind=h.kind,
            sender=h.sender,
            recipients=recipients,
            reason=encode_reason(rule, reasons, self.policy_digest if screened else None, hits),
            envelope_digest=env_digest,
        )

    def _notice(
        self,
        d: Decided,
        h: Header,
        status: str,
        stations: Sequence[str],
        reason: str | None,
        explanation: str | None,
    ) -> None:
        out = self._make_notice(
            h.sender, h.message_id, status, stations, reason, explanation, h.precedence
        )
        if out is not None:
            d.outputs.append(out)

    def _make_notice(
        self,
        to: str,
        message_id: str,
        status: str,
        stations: Sequence[str],
        reason: str | None,
        explanation: str | None,
        precedence: Precedence,
    ) -> Out | None:
        """A status notice from GS to ``to``: an attested delivery made by ``Router.originate``."""
        now = self.clock()
        try:
            body = self.store.encode_single(
                NOTICE,
                {
                    "message_id": message_id,
                    "status": status,
                    "stations": sorted(stations),
                    "reason": reason,
                    "explanation": explanation,
                    "at_ms": now,
                },
            )
            header = Header(
                message_id=new_message_id(now),
                sender=self.secrets.station,
                sender_key_id=self.secrets.signing_key_id,
                recipients=Recipients.to(to),
                kind="STATUS_NOTICE",
                precedence=precedence,
                created_ms=now,
                expires_ms=now + self.notice_lifetime_ms,
                language=Language.EN,
                payload_fingerprint=body[2:10],
            )
            # the highest envelope version ``to`` can open (v2 once it has a KEM key)
            env = self.router.originate(header, body, [to], version=None)[to]
        except I24Error as exc:
            log.warning("no status notice to %s for %s: %s", to, message_id, exc)
            return None
        except Exception as exc:  # a notice never stops a decision (see dead_letter)
            log.error("no status notice to %s for %s: %s", to, message_id, type(exc).__name__)
            return None
        self.metrics.status_notices.labels(status.lower()).inc()
        version = envelope_version(env)
        if version is not None:
            self.versions.envelopes.labels(str(version), "originated").inc()
        return Out(self.topics.inbox(to), header.message_id.encode(), env, _hints(header))

    def notice(
        self,
        to: str,
        message_id: str,
        status: str,
        reason: str | None,
        explanation: str | None,
        precedence: Precedence = Precedence.ROUTINE,
        stations: Sequence[str] = (),
    ) -> Out | None:
        """A status notice outside the pipeline (the review service's decisions)."""
        return self._make_notice(to, message_id, status, stations, reason, explanation, precedence)


def headers_dict(headers: Sequence[tuple[str, bytes]]) -> Mapping[str, str]:
    return {k: bytes(v).decode("utf-8", "replace") for k, v in headers}
