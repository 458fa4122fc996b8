"""The inbound stream: ``i24.in.<station>`` -> verify -> store exactly once -> receipt.

Consumer group ``<prefix>.gw.<station>``, ``read_committed``, no auto
commit. Each ``getmany`` batch is verified record by record
(``Receiver.open``: sender signature, router attestation, recipient,
expiry, replay, decryption), then stored in **one** SQLite transaction that
also queues the delivery receipts; only after that commit are the Kafka
offsets committed (at most every ``[inbound] commit_interval_ms``, at stop, and
for a partition a rebalance takes away: ``_Offsets``). A crash in between
re-reads the batch, and the inbox's UNIQUE message id makes the second store a
no-op: exactly-once storage.

A record that fails anything is kept in the ``rejected`` table with its
reason, counted in ``i24net_gateway_verification_failures_total{reason}``,
and the stream goes on.

After a rotation the stream also opens deliveries wrapped to the station's
previous encryption keys (``keys.previous``), until their grace period ends
and :class:`~i24net.gateway.keyring.PreviousKeys` destroys them (checked
before each batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from i24net.clock import Clock
from i24net.directory import Directory
from i24net.envelope import Opened, Receiver
from i24net.errors import CodecError, Reason, VerificationError
from i24net.gateway import inbox, outbox
from i24net.gateway.db import Database
from i24net.gateway.intake import EnvelopeVersionMetrics, Intake, Prepared
from i24net.gateway.keyring import PreviousKeys
from i24net.gateway.metrics import GatewayMetrics
from i24net.gateway.settings import Settings
from i24net.kafka import KafkaConnection
from i24net.kafka.clients import TAIL_FETCH_MAX_WAIT_MS
from i24net.keys import StationSecrets
from i24net.replay import ReplayWindow
from i24net.schemas import KIND_SCHEMAS, SchemaStore

log = logging.getLogger(__name__)

INTERNAL_KINDS = frozenset({"DELIVERY_RECEIPT", "STATUS_NOTICE"})
RECEIPT_LIFETIME_MS = 7 * 24 * 3_600_000 - 60_000


@dataclass
class _Item:
    topic: str
    partition: int
    offset: int
    size: int
    raw: bytes | None = field(repr=False)
    opened: Opened | None = None
    record: dict[str, Any] | None = None
    reason: str | None = None
    detail: str = ""
    replayed_id: str | None = None
    receipt: Prepared | None = None
    outcome: str = ""


class InboundStream:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        conn: KafkaConnection,
        metrics: GatewayMetrics,
        secrets: StationSecrets,
        directory: Callable[[], Directory],
        intake: Intake,
        backlog: outbox.Backlog,
        *,
        clock: Clock,
        store: SchemaStore,
        on_stored: Callable[[], None],
        on_queued: Callable[[], None],
        previous: PreviousKeys | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.conn = conn
        self.metrics = metrics
        self.secrets = secrets
        self._directory = directory
        self.intake = intake
        self.backlog = backlog
        self.clock = clock
        self.store = store
        self.on_stored = on_stored
        self.on_queued = on_queued
        self.window = ReplayWindow(clock=clock)
        self.connected = False
        self.processed = 0
        self.batches = 0
        self.previous = previous
        self._receiver: Receiver | None = None
        self._receiver_dir: Directory | None = None
        self._receiver_keys = -1
        # Opened envelopes are counted beside the sealed ones (the app gives the intake
        # its counters on the gateway's registry; a bare intake in a test gets its own).
        if intake.metrics is None:
            intake.metrics = EnvelopeVersionMetrics.create(CollectorRegistry())
        self.versions = intake.metrics

    async def seed_window(self) -> None:
        """Remember the ids already stored, so that a restarted gateway refuses replays."""
        now = self.clock()
        for mid, exp in await self.db.read(lambda c: inbox.live_ids(c, now)):
            self.window.record(mid, exp)

    def _receiver_now(self) -> Receiver:
        d = self._directory()
        keys = self.previous.generation if self.previous is not None else 0
        if self._receiver is None or self._receiver_dir is not d or self._receiver_keys != keys:
            self._receiver = Receiver(
                self.secrets,
                d,
                self.window,
                router=self.settings.router,
                previous=self.previous.secrets if self.previous is not None else (),
                store=self.store,
            )
            self._receiver_dir, self._receiver_keys = d, keys
        return self._receiver

    def retire_keys(self) -> list[str]:
        """Destroy previous encryption keys whose grace period is over (gateway/keyring.py);
        checked before every batch, so no batch is opened with a key past its grace."""
        if self.previous is None:
            return []
        return self.previous.retire(self._directory(), self.clock())

    async def run(self, stop: asyncio.Event) -> None:
        from aiokafka import AIOKafkaConsumer

        backoff = 1.0
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                **self.conn.client_kwargs(),
                group_id=self.settings.group_id,
                isolation_level="read_committed",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=2 << 20,
                fetch_max_bytes=16 << 20,
                request_timeout_ms=max(self.settings.kafka.request_timeout_ms, 40_000),
                fetch_max_wait_ms=TAIL_FETCH_MAX_WAIT_MS,  # idle most of its life
            )
            offsets = _Offsets(consumer, self.settings.inbound.commit_interval_ms / 1000)
            try:
                await consumer.start()
                consumer.subscribe([self.settings.in_topic], listener=offsets.listener())
                self.connected = True
                backoff = 1.0
                while not stop.is_set():
                    self.retire_keys()
                    batch = await consumer.getmany(
                        timeout_ms=500, max_records=self.settings.inbound.batch
                    )
                    if batch:
                        offsets.add(await self._process(batch))
                    await offsets.commit_if_due()
                    await self._lag(consumer)
            except Exception as exc:
                self.connected = False
                log.warning("inbound: consumer failed (%r); retrying in %.0fs", exc, backoff)
                await _sleep_unless(stop, backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                with contextlib.suppress(Exception):  # stored already: at worst read again
                    await asyncio.wait_for(offsets.commit(), 10)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 10)
                self.connected = False

    async def _lag(self, consumer: Any) -> None:
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            pos = await consumer.position(tp)
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, hw - pos))

    async def _process(self, batch: dict[Any, list[Any]]) -> dict[Any, Any]:
        """Verify and store one batch; returns its offsets, to commit (``_Offsets``)."""
        from aiokafka import TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        items: list[_Item] = []
        for tp, records in batch.items():
            for rec in records:
                items.append(self._verify(tp.topic, tp.partition, rec.offset, rec.value))
        now = self.clock()
        results = await self.db.write(lambda c: self._store_all(c, items, now))
        # Only now is everything durable: remember ids, then commit offsets.
        stored_any = False
        for it in items:
            if it.opened is not None and it.outcome in ("stored", "duplicate"):
                h = it.opened.header
                self.window.record(h.message_id, h.expires_ms)
            kind = it.opened.header.kind if it.opened is not None else "unknown"
            self.metrics.inbound.labels(kind, it.outcome).inc()
            if it.outcome == "rejected" and it.reason is not None:
                self.metrics.verification_failures.labels(it.reason).inc()
                log.warning(
                    "inbound: %s:%d:%d refused (%s): %s",
                    it.topic,
                    it.partition,
                    it.offset,
                    it.reason,
                    it.detail,
                )
            if it.outcome == "stored":
                stored_any = True
                assert it.opened is not None
                h = it.opened.header
                if h.kind not in INTERNAL_KINDS:
                    self.metrics.stage_seconds.labels("routed_to_stored").observe(
                        max(0, now - it.opened.attestation.decided_ms) / 1000
                    )
                    self.metrics.stage_seconds.labels("end_to_end").observe(
                        max(0, now - h.created_ms) / 1000
                    )
        for status in results["notices"]:
            self.metrics.status_notices.labels(status).inc()
        for outcome in results["receipts"]:
            self.metrics.receipts_received.labels(outcome).inc()
        for reason in results["receipts_refused"]:
            self.metrics.receipts_refused.labels(reason).inc()
        for seconds in results["routed_s"]:
            self.metrics.stage_seconds.labels("sent_to_routed").observe(seconds)
        for it in items:
            if it.receipt is not None and it.outcome == "stored":
                self.backlog.add(len(it.receipt.envelope), it.receipt.header.created_ms)
        self._fault()
        offsets = {
            TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(records[-1].offset + 1, "")
            for tp, records in batch.items()
            if records
        }
        self.batches += 1
        self.processed += len(items)
        if stored_any:
            self.on_stored()
        if any(it.receipt is not None and it.outcome == "stored" for it in items):
            self.on_queued()
        return offsets

    def _fault(self) -> None:
        """Fault injection (``[testing]``): exit like kill -9 between the SQLite commit of
        a batch and the commit of its offsets, the window a crash must survive."""
        after = self.settings.testing.exit_after_stored_batches
        if after and self.batches >= after:
            log.warning("testing: exiting with a batch stored and its offsets not committed")
            os._exit(137)

    def _verify(self, topic: str, partition: int, offset: int, value: bytes | None) -> _Item:
        raw = value or b""
        keep = raw if len(raw) <= self.settings.inbound.keep_rejected_bytes else None
        it = _Item(topic, partition, offset, len(raw), keep)
        try:
            opened = self._receiver_now().open(raw, record=False)
        except VerificationError as exc:
            if exc.reason is Reason.REPLAYED:
                it.replayed_id = exc.message_id
            it.reason, it.detail = exc.reason.value, exc.detail
            return it
        except Exception as exc:  # never let one record stop the stream
            it.reason, it.detail = Reason.MALFORMED.value, f"unexpected {exc!r}"
            return it
        self.versions.opened.labels(str(opened.version)).inc()
        h = opened.header
        schema = KIND_SCHEMAS.get(h.kind)
        try:
            if schema is None or self.store.fingerprint(schema) != h.payload_fingerprint:
                raise CodecError(f"payload fingerprint does not match kind {h.kind}")
            _, record = self.store.decode_single(opened.payload, expected=schema)
        except CodecError as exc:
            it.reason, it.detail = Reason.MALFORMED.value, f"payload: {exc}"
            return it
        if h.kind == "STATUS_NOTICE" and h.sender != self.settings.router:
            it.reason, it.detail = Reason.UNAUTHORISED.value, f"status notice from {h.sender}"
            return it
        it.opened, it.record = opened, record
        if h.kind not in INTERNAL_KINDS:
            it.receipt = self._receipt(opened, raw)
        return it

    def _receipt(self, opened: Opened, raw: bytes) -> Prepared:
        now = self.clock()
        h = opened.header
        header = self.intake.system_header(
            "DELIVERY_RECEIPT", h.sender, h.precedence, now, RECEIPT_LIFETIME_MS
        )
        payload = self.store.encode_single(
            "net.i24.DeliveryReceipt",
            {
                "message_id": h.message_id,
                "envelope_digest": hashlib.blake2b(raw, digest_size=32).digest(),
                "outcome": "STORED",
                "received_at_ms": now,
                "reason": None,
            },
        )
        return self.intake.seal(header, payload, now)

    def _store_all(
        self, c: sqlite3.Connection, items: list[_Item], now: int
    ) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {
            "notices": [],
            "receipts": [],
            "receipts_refused": [],
            "routed_s": [],
        }
        for it in items:
            if it.opened is None:
                if it.replayed_id is not None and _same_record(c, it):
                    it.outcome = "duplicate"
                    continue
                it.outcome = "rejected"
                inbox.reject(
                    c,
                    topic=it.topic,
                    partition=it.partition,
                    offset=it.offset,
                    at_ms=now,
                    reason=it.reason or "malformed",
                    detail=it.detail[:1000],
                    data=it.raw,
                    size=it.size,
                )
                continue
            o = it.opened
            h = o.header
            res = inbox.store(
                c,
                message_id=h.message_id,
                visible=h.kind not in INTERNAL_KINDS,
                sender=h.sender,
                kind=h.kind,
                precedence=h.precedence.value,
                created_ms=h.created_ms,
                expires_ms=h.expires_ms,
                received_ms=now,
                header=h.to_avro(),
                payload=o.payload,
                envelope_digest=o.message_digest,
                decision=o.attestation.decision.value,
                topic=it.topic,
                partition=it.partition,
                offset=it.offset,
            )
            if res.duplicate:
                if res.same_record:
                    it.outcome = "duplicate"
                else:
                    it.outcome = "rejected"
                    it.reason, it.detail = Reason.REPLAYED.value, f"{h.message_id} stored before"
                    inbox.reject(
                        c,
                        topic=it.topic,
                        partition=it.partition,
                        offset=it.offset,
                        at_ms=now,
                        reason=it.reason,
                        detail=it.detail,
                        data=it.raw,
                        size=it.size,
                    )
                continue
            it.outcome = "stored"
            rec = it.record or {}
            if h.kind == "STATUS_NOTICE":
                if rec["status"] == "ACCEPTED":  # the router's decision to route it
                    sent = outbox.sent_ms(c, rec["message_id"])
                    if sent is not None:
                        out["routed_s"].append(max(0, rec["at_ms"] - sent) / 1000)
                settled = outbox.apply_notice(
                    c,
                    rec["message_id"],
                    rec["status"],
                    list(rec["stations"]),
                    rec["reason"],
                    rec["explanation"],
                    rec["at_ms"],
                )
                out["notices"].append(rec["status"])
                if settled is not None:
                    out["receipts"] += settled.receipts
                    out["receipts_refused"] += [outbox.ReceiptOutcome.NOT_DELIVERED.value] * (
                        settled.refused
                    )
            elif h.kind == "DELIVERY_RECEIPT":
                got = outbox.apply_receipt(c, rec["message_id"], h.sender, rec["outcome"], now)
                if got is outbox.ReceiptOutcome.APPLIED:
                    out["receipts"].append(rec["outcome"])
                elif got in (
                    outbox.ReceiptOutcome.NOT_DELIVERED,
                    outbox.ReceiptOutcome.PENDING_FULL,
                ):
                    out["receipts_refused"].append(got.value)
                    log.warning(
                        "inbound: receipt from %s for %r refused (%s)",
                        h.sender,
                        rec["message_id"],
                        got.value,
                    )
            elif it.receipt is not None:
                outbox.insert(c, it.receipt, now, internal=True)
        return out


def _same_record(c: sqlite3.Connection, it: _Item) -> bool:
    row = c.execute(
        'SELECT topic, partition, "offset" FROM inbox WHERE message_id = ?', (it.replayed_id,)
    ).fetchone()
    return row is not None and tuple(row) == (it.topic, it.partition, it.offset)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class _Offsets:
    """The stream's offsets, stored in SQLite and not yet committed to Kafka.

    Committed at most every ``interval_s`` (0: at once), when the gateway stops, and for
    the partitions a rebalance takes away (``on_partitions_revoked``). Nothing is lost by
    waiting: a batch's records are stored before its offsets get here, and a record read
    again is recognised by its message id (inbox ``UNIQUE``; ``rejected`` by topic,
    partition and offset). At a trickle this saves an OffsetCommit request per batch.
    """

    def __init__(self, consumer: Any, interval_s: float) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self.pending: dict[Any, Any] = {}
        self.due = 0.0

    def add(self, offsets: dict[Any, Any]) -> None:
        if not self.pending:
            self.due = asyncio.get_running_loop().time() + self.interval_s
        self.pending.update(offsets)

    async def commit_if_due(self) -> None:
        if self.pending and asyncio.get_running_loop().time() >= self.due:
            await self.commit()

    async def commit(self, only: Any = None) -> None:
        todo = {tp: o for tp, o in self.pending.items() if only is None or tp in only}
        if not todo:
            return
        await self.consumer.commit(todo)
        for tp in todo:
            if self.pending.get(tp) is todo[tp]:
                del self.pending[tp]

    async def revoked(self, partitions: Any) -> None:
        try:
            await self.commit(set(partitions))
        except Exception as exc:  # the next owner reads them again: stored once anyway
            log.warning("inbound: offsets of revoked partitions not committed (%r)", exc)
        for tp in partitions:
            self.pending.pop(tp, None)

    def listener(self) -> Any:
        """An aiokafka ``ConsumerRebalanceListener`` that commits before a partition goes."""
        from aiokafka import ConsumerRebalanceListener

        offsets = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await offsets.revoked(revoked)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                return None

        return Listener()
