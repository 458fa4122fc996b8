"""Following the GS-signed ``i24.directory`` topic (``[directory] follow_topic = true``).

At start the topic is read from the beginning to its end and merged into the
directory loaded from the ``<STATION>.entry`` files; then it is tailed while
the gateway runs. Every value goes through a
:class:`~i24net.directory.DirectoryReader` (the rules are in its module): the
pinned GS root key, the reader's high-water marks (in memory, or persisted
with ``state=DirectoryState(path)``) and the GS-signed manifest. Outcomes:

- ``applied``: verified, and newer than what the reader accepted;
- ``unchanged``: the very entry already loaded (same serial, same bytes);
- ``superseded``: at start, an entry older than one accepted in an earlier
  run and followed by the newer one (history the log still holds);
- ``rollback``: verified but older than an accepted entry, refused (a
  replayed record could still trust a revoked key); also counted once per
  station whose accepted entry is gone from the topic when the read ends;
- ``equivocation``: the accepted serial (or manifest version) with other
  bytes, refused;
- ``bad_signature``: not signed by the pinned root key (or unreadable under
  its signature), refused;
- ``malformed``: not a ``net.i24.DirectoryEntry`` at all, refused;
- ``tombstone``: a null value, ignored (a station leaves by a REVOKED
  record, never by deletion);
- ``manifest`` / ``manifest_unchanged`` / ``manifest_rollback``: a newer
  manifest accepted, the same one again, an older version refused.

Each is counted in ``i24net_gateway_directory_updates_total{outcome}``;
refusals are logged and never stop the gateway. A station whose entry is
older than the manifest names is withheld (absent from the directory:
``i24net_gateway_directory_withheld_stations``); the manifest's version and
seconds to expiry are gauges, and an expired manifest (stale directory) is
logged while the gateway keeps serving on what it has. Changes are applied
copy-on-write: the gateway's directory is replaced by a copy of the reader's
once per fetched batch, so the intake and the inbound stream (which look it
up per message, ``Gateway.directory()``) see a revocation from their next
message on, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from i24net.audit.topic import prime
from i24net.clock import Clock, system_clock
from i24net.directory import Directory, DirectoryReader, DirectoryState, Outcome
from i24net.directory.roots import Roots
from i24net.errors import DirectoryError
from i24net.gateway.metrics import GatewayMetrics
from i24net.kafka import KafkaConnection
from i24net.kafka.clients import TAIL_FETCH_MAX_WAIT_MS
from i24net.keys import RootPublic
from i24net.schemas import SchemaStore

log = logging.getLogger(__name__)

POLL_MS = 500
MAX_BACKOFF_S = 30.0

__all__ = ["DirectoryFollower", "Outcome", "copy_directory"]


def copy_directory(d: Directory) -> Directory:
    """An independent copy of ``d`` (records and their signed entries)."""
    return Directory(list(d), d.entries)


class DirectoryFollower:
    """Reads, then tails, the directory topic into the gateway's directory.

    ``get`` returns the directory in use (at construction: the one loaded from
    the entry files, offered to the reader first); ``replace`` installs a new
    one (and updates the gauges). ``caught_up`` is set once the topic has been
    read up to its end offsets of the first successful connection. ``state``
    persists the reader's marks (default: in memory).
    """

    def __init__(
        self,
        topic: str,
        conn: KafkaConnection,
        metrics: GatewayMetrics,
        root: RootPublic | Roots,
        store: SchemaStore,
        *,
        get: Callable[[], Directory],
        replace: Callable[[Directory], None],
        state: DirectoryState | None = None,
        clock: Clock = system_clock,
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
        self.reader = DirectoryReader(
            root,
            store,
            state=state,
            clock=clock,
            on_outcome=lambda o: metrics.directory_updates.labels(o.value).inc(),
        )
        self.reader.seed(get())
        self._installed = self.reader.changes
        self.gauges()

    @property
    def stale(self) -> bool:
        """The newest manifest expired: the directory may be frozen."""
        return self.reader.stale

    @property
    def unprotected(self) -> bool:
        """No manifest seen (a directory published before manifests existed)."""
        return self.reader.unprotected

    def gauges(self) -> None:
        """Manifest version, seconds to its expiry, withheld stations; logs staleness."""
        r = self.reader
        self.metrics.directory_manifest_version.set(r.version)
        expires = r.expires_in_s()
        self.metrics.directory_manifest_expiry_seconds.set(0.0 if expires is None else expires)
        self.metrics.directory_withheld_stations.set(len(r.withheld))
        if not r.catching_up:
            r.check_freshness()

    # --- applying ------------------------------------------------------------------

    def apply(self, records: Iterable[Any]) -> list[Outcome]:
        """Apply consumer records (``.value``, ``.partition``, ``.offset``) in order.

        The directory in use is replaced once, at the end, if anything changed
        (and not before the start-up read has ended).
        """
        outcomes = [
            self.reader.offer(rec.value, f"{self.topic}:{rec.partition}:{rec.offset}")
            for rec in records
        ]
        self._install()
        return outcomes

    def _install(self) -> None:
        if not self.reader.catching_up and self.reader.changes != self._installed:
            self._installed = self.reader.changes
            self._replace(copy_directory(self.reader.directory))
        self.gauges()

    def finish_catch_up(self) -> None:
        """The start-up read reached the end offsets: end the reader's catch-up, install."""
        self.reader.caught_up()
        self._installed = -1  # always install the reader's view once
        self._install()

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
                fetch_max_wait_ms=TAIL_FETCH_MAX_WAIT_MS,  # idle most of its life
            )
            try:
                await consumer.start()
                tps = await self._assign(consumer)
                self.connected = True
                if not self.caught_up.is_set():
                    await self._catch_up(consumer, tps, stop)
                    if stop.is_set():
                        break
                    self.finish_catch_up()
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
                    self.gauges()  # the expiry moves without records
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
