"""The outbox drain: sealed envelopes to the ingress topic, FLASH first.

All of a station's records go to one partition, :func:`sender_partition` (the
shared ``i24.out`` is partitioned by sender, so one station's flood stays in its
partition: docs/topics.md). One idempotent producer (``acks=all``). Each round takes the highest
precedence envelopes in intake order, sends them, waits for every ack, then
marks them SENT in one transaction. A failed round (broker down, timeout)
retries the same envelopes after a backoff with the same producer (which
reconnects by itself); any other error replaces the producer. Kafka may
then hold a copy twice, which the router and the recipients deduplicate
by message id. The broker being away never blocks the intake.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

from i24net.clock import Clock
from i24net.gateway import outbox
from i24net.gateway.db import Database
from i24net.gateway.metrics import GatewayMetrics
from i24net.gateway.settings import Settings
from i24net.kafka import KafkaConnection

log = logging.getLogger(__name__)

MAX_REQUEST_SIZE = (1 << 20) + (64 << 10)
"""Largest produce request: one envelope at its bound (docs/envelope.md §5) plus framing."""


def record_headers(p: outbox.Pending, sender: str) -> list[tuple[str, bytes]]:
    """The untrusted routing hints of docs/topics.md."""
    return [
        ("i24-msgid", p.message_id.encode()),
        ("i24-sender", sender.encode()),
        ("i24-kind", p.kind.encode()),
        ("i24-precedence", p.precedence.encode()),
    ]


def sender_partition(station: str, partitions: Iterable[int]) -> int:
    """The partition of ``station``'s records: ``murmur2(code) mod N`` over the sorted
    partitions, the one Kafka's default partitioner gives the key ``code`` (the record
    key stays the message id)."""
    from aiokafka.partitioner import murmur2

    parts = sorted(partitions)
    return parts[int(murmur2(station.encode()) & 0x7FFFFFFF) % len(parts)]


class Drainer:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        conn: KafkaConnection,
        metrics: GatewayMetrics,
        backlog: outbox.Backlog,
        *,
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.db = db
        self.conn = conn
        self.metrics = metrics
        self.backlog = backlog
        self.clock = clock
        self.wake = asyncio.Event()
        self.connected = False
        self.sent_total = 0
        self._producer: Any = None
        self._last_progress = time.monotonic()
        self._sent_since_progress = 0

    async def _ensure_producer(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            p = AIOKafkaProducer(
                **self.conn.client_kwargs(),
                enable_idempotence=True,
                acks="all",
                linger_ms=2,
                max_batch_size=1 << 20,
                max_request_size=MAX_REQUEST_SIZE,
                request_timeout_ms=self.settings.kafka.request_timeout_ms,
                retry_backoff_ms=200,
            )
            try:
                await p.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await p.stop()
                raise
            self._producer = p
        return self._producer

    async def _drop_producer(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.stop(), 5)

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set; the round in flight is finished first."""
        backoff = self.settings.outbox.retry_backoff_s
        try:
            while not stop.is_set():
                self._progress()
                batch = await self.db.read(
                    lambda c: outbox.next_batch(c, self.settings.outbox.batch)
                )
                if not batch:
                    self.wake.clear()
                    await _wait_any(stop, self.wake, seconds=1.0)
                    continue
                try:
                    producer = await self._ensure_producer()
                    await self._send(producer, batch)
                except Exception as exc:
                    self.connected = False
                    self.metrics.broker_up.set(0)
                    self.metrics.produce_errors.inc()
                    log.warning(
                        "outbox: sending %d envelopes failed (%s); %d waiting, retrying in %.1fs",
                        len(batch),
                        exc.__class__.__name__,
                        self.backlog.messages,
                        backoff,
                    )
                    if not _transient(exc):
                        await self._drop_producer()
                    await _wait_any(stop, seconds=backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = self.settings.outbox.retry_backoff_s
                now = self.clock()
                ids = [p.message_id for p in batch]
                await self.db.write(functools.partial(outbox.mark_sent, ids=ids, now=now))
                self.backlog.remove(len(batch), sum(len(p.envelope) for p in batch))
                self.sent_total += len(batch)
                self._sent_since_progress += len(batch)
                for p in batch:
                    self.metrics.sent.labels(p.kind, p.precedence).inc()
                    if not p.internal:
                        self.metrics.stage_seconds.labels("intake_to_sent").observe(
                            max(0, now - p.created_ms) / 1000
                        )
                if not self.connected:
                    log.info("outbox: broker reachable, sending")
                self.connected = True
                self.metrics.broker_up.set(1)
        finally:
            await self._drop_producer()

    async def _send(self, producer: Any, batch: list[outbox.Pending]) -> None:
        topic = self.settings.out_topic
        station = self.settings.station
        partition = sender_partition(station, await producer.partitions_for(topic))
        futures = [
            await producer.send(
                topic,
                value=p.envelope,
                key=p.message_id.encode(),
                headers=record_headers(p, station),
                partition=partition,
            )
            for p in batch
        ]
        timeout = self.settings.kafka.request_timeout_ms / 1000 * 2
        await asyncio.wait_for(asyncio.gather(*futures), timeout)

    def _progress(self) -> None:
        now = time.monotonic()
        elapsed = now - self._last_progress
        if elapsed < self.settings.outbox.progress_log_s:
            return
        if self.backlog.messages or self._sent_since_progress:
            oldest = self.backlog.oldest_ms
            age = 0.0 if oldest is None else max(0, self.clock() - oldest) / 1000
            log.info(
                "outbox: %d waiting (%.1f MiB, oldest %.0fs), sent %d in %.0fs (%.0f/s)%s",
                self.backlog.messages,
                self.backlog.bytes / (1 << 20),
                age,
                self._sent_since_progress,
                elapsed,
                self._sent_since_progress / elapsed,
                "" if self.connected else ", broker unreachable",
            )
        self._last_progress = now
        self._sent_since_progress = 0


def _transient(exc: BaseException) -> bool:
    """A broker that is away (aiokafka reconnects by itself): keep the producer.

    Stopping a producer while its sender is reconnecting leaks the connection
    it is opening (aiokafka), and a new producer per retry would only add to it.
    """
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, RequestTimedOutError

    return isinstance(
        exc, TimeoutError | KafkaConnectionError | KafkaTimeoutError | RequestTimedOutError
    )


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
