"""The gateway's one SQLite database, written by one thread with group commit.

Outbox, inbox, rejected envelopes and status events live in one file, so
that storing an inbound message and queueing its delivery receipt is **one
transaction**. The connection belongs to a single worker thread: callers
``await db.write(fn)`` / ``await db.read(fn)``; the worker runs every queued
write inside its own SAVEPOINT (a failing one is rolled back alone and its
caller gets the exception) and then COMMITs them together, so many
concurrent intake requests share one fsync (``synchronous=FULL``, WAL).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from i24net.errors import ServiceError

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    idem_key TEXT UNIQUE,
    request_digest BLOB,
    rank INTEGER NOT NULL,
    kind TEXT NOT NULL,
    precedence TEXT NOT NULL,
    recipients TEXT NOT NULL,
    internal INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    envelope BLOB,
    size INTEGER NOT NULL,
    status TEXT NOT NULL,
    sent_ms INTEGER,
    reason TEXT,
    explanation TEXT,
    updated_ms INTEGER NOT NULL,
    integrator TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (rank, seq) WHERE envelope IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_open ON outbox (precedence, created_ms) WHERE internal = 0
    AND status IN ('ACCEPTED', 'SENT', 'ROUTED', 'HELD_FOR_REVIEW', 'APPROVED', 'DELIVERED');
CREATE TABLE IF NOT EXISTS outbox_stations (
    message_id TEXT NOT NULL,
    station TEXT NOT NULL,
    delivered_ms INTEGER,
    receipted_ms INTEGER,
    outcome TEXT,
    PRIMARY KEY (message_id, station)
);
CREATE TABLE IF NOT EXISTS receipts_pending (
    message_id TEXT NOT NULL,
    station TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (message_id, station)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    stations TEXT NOT NULL DEFAULT '[]',
    reason TEXT,
    explanation TEXT
);
CREATE INDEX IF NOT EXISTS events_message ON events (message_id);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    visible INTEGER NOT NULL,
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    precedence TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    header TEXT NOT NULL,
    payload BLOB NOT NULL,
    envelope_digest BLOB NOT NULL,
    decision TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    acked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS inbox_unacked ON inbox (seq) WHERE visible = 1 AND acked_ms IS NULL;
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB,
    UNIQUE (topic, partition, "offset")
);
"""

_STOP = object()


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a database was created: ``outbox.integrator`` (who submitted
    the message; NULL for messages from before integrators, and for internal ones)."""
    cols = {str(r[1]) for r in conn.execute("PRAGMA table_info(outbox)")}
    if "integrator" not in cols:
        conn.execute("ALTER TABLE outbox ADD COLUMN integrator TEXT")


class Database:
    """One SQLite file, one writer thread, group commit. ``close()`` is idempotent."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name=f"sqlite:{path.name}", daemon=True)
        self._closed = False
        self.commits = 0
        self._thread.start()
        self._ready.result()

    # --- caller side -----------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in the next group transaction; its result once COMMITted."""
        return await self._submit(fn, True)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._submit(fn, False)

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        fut: Future[T] = Future()
        self._put((fn, True, fut))
        return fut.result()

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        fut: Future[T] = Future()
        self._put((fn, write, fut))
        return await asyncio.wrap_future(fut)

    def _put(self, item: Any) -> None:
        if self._closed:
            raise ServiceError(f"gateway database {self.path} is closed")
        self._q.put(item)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._q.put(_STOP)
        self._thread.join()

    # --- worker thread ---------------------------------------------------

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
            _migrate(conn)
        except sqlite3.Error as exc:
            self._ready.set_exception(ServiceError(f"gateway database {self.path}: {exc}"))
            return
        self._ready.set_result(None)
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    return
                batch = [item]
                while len(batch) < 1000:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        self._q.put(_STOP)
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        results: list[tuple[Future[Any], bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        for fn, _write, fut in batch:
            if not fut.set_running_or_notify_cancel():
                continue
            conn.execute("SAVEPOINT op")
            try:
                value = fn(conn)
            except BaseException as exc:
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((fut, False, exc))
            else:
                conn.execute("RELEASE op")
                results.append((fut, True, value))
        try:
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as exc:
            log.error("gateway database commit failed: %s", exc)
            conn.execute("ROLLBACK")
            err = ServiceError(f"gateway database commit failed: {exc}")
            for fut, _, _ in results:
                fut.set_exception(err)
            return
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
