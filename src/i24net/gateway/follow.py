"""Following the GS-signed ``i24.directory`` topic (``[directory] follow_topic = true``).

At start the topic is read from the beginning to its end and merged into the
directory loaded from the ``<STATION>.entry`` files; then it is tailed while
the gateway runs. Every value is checked against the pinned GS root key and
against the current record of its station before use:

- ``applied``: verified, and its serial is not lower than the current one;
- ``unchanged``: the very entry already loaded (same serial, same bytes);
- ``rollback``: verified but older than the current record, refused (a
  replayed record could still trust a revoked key);
- ``bad_signature``: not signed by the pinned root key (or unreadable under
  its signature), refused;
- ``malformed``: not a ``net.i24.DirectoryEntry`` at all, refused;
- ``tombstone``: a null value, ignored (a station leaves by a REVOKED
  record, never by deletion).

Each is counted in ``i24net_gateway_directory_updates_total{outcome}``;
refusals are logged and never stop the gateway. Changes are applied
copy-on-write: the gateway's directory is replaced by a new ``Directory``
once per fetched batch, so the intake and the inbound stream (which look it
up per message, ``Gateway.directory()``) see a revocation from their next
message on, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from i24net.audit.topic import prime
from i24net.directory import Directory, verify_entry
from i24net.errors import CodecError, DirectoryError
from i24net.gateway.metrics import GatewayMetrics
from i24net.kafka import KafkaConnection
from i24net.keys import RootPublic
from i24net.schemas import SchemaStore

log = logging.getLogger(__name__)

POLL_MS = 500
MAX_BACKOFF_S = 30.0


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    ROLLBACK = "rollback"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    TOMBSTONE = "tombstone"


def copy_directory(d: Directory) -> Directory:
    """An independent copy of ``d`` (records and their signed entries)."""
    return Directory(list(d), d.entries)


class DirectoryFollower:
    """Reads, then tails, the directory topic into the gateway's directory.

    ``get`` returns the directory in use; ``replace`` installs a new one (and
    updates the gauges). ``caught_up`` is set once the topic has been read up
    to its end offsets of the first successful connection.
    """

    def __init__(
        self,
        topic: str,
        conn: KafkaConnection,
        metrics: GatewayMetrics,
        root: RootPublic,
        store: SchemaStore,
        *,
        get: Callable[[], Directory],
        replace: Callable[[Directory], None],
    ) -> None:
        self.topic = topic
        self.conn = conn
        self.metrics = metrics
        self.root = root
        self.store = store
        self._get = get
        self._replace = replace
        self.caught_up = asyncio.Event()
        self.connected = False
        self._positions: dict[int, int] = {}  # partition -> next offset to read
        for o in Outcome:
            metrics.directory_updates.labels(o.value)

    # --- applying ------------------------------------------------------------------

    def classify(self, entry: bytes | None, current: Directory) -> tuple[Outcome, str]:
        """What applying ``entry`` to ``current`` would do, and a line for the log."""
        if entry is None:
            return Outcome.TOMBSTONE, "null value"
        try:
            self.store.decode_single(entry, expected="net.i24.DirectoryEntry")
        except CodecError as exc:
            return Outcome.MALFORMED, str(exc)
        try:
            record = verify_entry(entry, self.root, self.store)
        except DirectoryError as exc:
            return Outcome.BAD_SIGNATURE, str(exc)
        what = f"{record.station} serial {record.serial}"
        if record.station in current:
            cur = current.record(record.station)
            if record.serial < cur.serial:
                return Outcome.ROLLBACK, f"{what} is older than the current serial {cur.serial}"
            if record.serial == cur.serial and current.entries.get(record.station) == entry:
                return Outcome.UNCHANGED, what
        return Outcome.APPLIED, what

    def apply(self, records: Iterable[Any]) -> list[Outcome]:
        """Apply consumer records (``.value``, ``.partition``, ``.offset``) in order.

        The directory in use is replaced once, at the end, if anything changed.
        """
        base = self._get()
        work: Directory | None = None
        applied: list[bytes] = []
        outcomes: list[Outcome] = []
        for rec in records:
            entry: bytes | None = rec.value
            outcome, detail = self.classify(entry, work if work is not None else base)
            if outcome is Outcome.APPLIED:
                assert entry is not None
                if work is None:
                    work = copy_directory(base)
                try:
                    work.apply(entry, self.root, self.store)
                    applied.append(entry)
                except Exception as exc:  # verified, yet unusable (a bad public key)
                    outcome, detail = Outcome.MALFORMED, f"{detail}: {exc}"
                    work = copy_directory(base)  # drop a half-applied record
                    for e in applied:
                        work.apply(e, self.root, self.store)
            outcomes.append(outcome)
            self.metrics.directory_updates.labels(outcome.value).inc()
            where = f"{self.topic}:{rec.partition}:{rec.offset}"
            if outcome is Outcome.APPLIED:
                log.info("directory: %s applied (%s)", detail, where)
            elif outcome is Outcome.ROLLBACK:
                log.warning("directory: %s refused, rollback: %s", where, detail)
            elif outcome in (Outcome.BAD_SIGNATURE, Outcome.MALFORMED):
                log.error("directory: %s refused (%s): %s", where, outcome.value, detail)
        if work is not None and applied:
            self._replace(work)
        return outcomes

    # --- the topic -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Read the topic to its end, then tail it until ``stop``; reconnects on errors."""
        from aiokafka import AIOKafkaConsumer

        backoff = 1.0
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                **self.conn.client_kwargs(),
                enable_auto_commit=False,
                isolation_level="read_committed",
                auto_offset_reset="earliest",
            )
            try:
                await consumer.start()
                tps = await self._assign(consumer)
                self.connected = True
                if not self.caught_up.is_set():
                    await self._catch_up(consumer, tps, stop)
                    if stop.is_set():
                        break
                    self.caught_up.set()
                    log.info(
                        "directory: %s read, %d stations, serial %d",
                        self.topic,
                        len(self._get()),
                        max((r.serial for r in self._get()), default=0),
                    )
                backoff = 1.0
                while not stop.is_set():
                    batch = await consumer.getmany(timeout_ms=POLL_MS)
                    self._take(batch)
            except Exception as exc:  # keep serving on the directory we have
                self.connected = False
                log.warning(
                    "directory: reading %s failed (%r); retrying in %.0fs", self.topic, exc, backoff
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 10)

    async def _assign(self, consumer: Any) -> Sequence[Any]:
        from aiokafka import TopicPartition

        await prime(consumer, [self.topic])
        parts = consumer.partitions_for_topic(self.topic)
        if not parts:
            raise DirectoryError(f"directory topic {self.topic} does not exist")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        for tp in tps:
            pos = self._positions.get(tp.partition)
            if pos is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, pos)  # after a reconnect: where we left off
        return tps

    async def _catch_up(self, consumer: Any, tps: Sequence[Any], stop: asyncio.Event) -> None:
        end = await consumer.end_offsets(list(tps))
        while not stop.is_set():
            pending = [tp for tp in tps if await consumer.position(tp) < end[tp]]
            if not pending:
                return
            self._take(await consumer.getmany(*pending, timeout_ms=POLL_MS))

    def _take(self, batch: dict[Any, list[Any]]) -> None:
        records = [rec for recs in batch.values() for rec in recs]
        if not records:
            return
        self.apply(records)
        for tp, recs in batch.items():
            if recs:
                self._positions[tp.partition] = recs[-1].offset + 1
