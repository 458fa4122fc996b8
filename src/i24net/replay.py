"""The replay and expiry window shared by the router and every gateway.

A message is acceptable when ``created_ms <= now + skew`` (else
``NOT_YET_VALID``), ``now < expires_ms + skew`` (else ``EXPIRED``) and its id
was not seen before (else ``REPLAYED``). A seen id is kept until its message
would be refused as expired anyway (``expires_ms + skew``), so memory is
bounded by message rate x ``max_lifetime_ms`` (the envelope refuses longer
lifetimes) and, as a hard cap, ``max_entries``: past the cap the entries
closest to expiry are evicted first (``evicted`` counts them; size the cap
above peak rate x lifetime so this never happens).

With ``path`` the window is persisted in SQLite (one row per id), so a
restarted service keeps refusing replays. ``check`` and ``record`` are
separate so that a service records an id when it commits the message (a
crash in between re-processes it instead of losing it). ``record_many``
records a whole batch (one Kafka transaction) in one SQLite transaction: one
fsync per batch instead of one per id.

With ``synchronous=False`` the database is only a cache of a log that is
durable elsewhere (the router's ``i24.router.seen`` changelog, written in the
same Kafka transaction as the deliveries, docs/router.md): its commits are
not fsynced (WAL with ``synchronous=NORMAL``). A killed process loses nothing
(committed pages are in the OS's cache); a machine that loses power may lose
the last commits, each atomically with the changelog offset saved with it
(``mark``), so the service re-reads the changelog from an older offset. The
fsync per batch was 11-13 % of the router's CPU, on its event loop's thread.
``record_many(..., persist=False)`` remembers ids in memory only: the router
writes each id to SQLite once, when it reads it back from its changelog with
the changelog's offset, not a second time after its commit.

    window = ReplayWindow(clock=system_clock, path=Path("state/seen.sqlite3"))
    window.check(header.message_id, header.created_ms, header.expires_ms)
    ... store the message ...
    window.record(header.message_id, header.expires_ms)
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from i24net.clock import Clock
from i24net.errors import ConfigError, Reason, VerificationError

DEFAULT_SKEW_MS = 5 * 60_000
DEFAULT_MAX_LIFETIME_MS = 7 * 24 * 3_600_000
DEFAULT_MAX_ENTRIES = 2_000_000


class ReplayWindow:
    """Seen message ids, kept until their expiry; optionally persisted in SQLite."""

    def __init__(
        self,
        *,
        clock: Clock,
        skew_ms: int = DEFAULT_SKEW_MS,
        max_lifetime_ms: int = DEFAULT_MAX_LIFETIME_MS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        path: Path | None = None,
        synchronous: bool = True,
    ) -> None:
        """``synchronous``: fsync each commit of the database at ``path`` (see the module
        docstring for when a service can do without)."""
        if skew_ms < 0 or max_lifetime_ms <= 0 or max_entries <= 0:
            raise ConfigError("replay window: skew >= 0, lifetime > 0 and max_entries > 0")
        self.clock = clock
        self.skew_ms = skew_ms
        self.max_lifetime_ms = max_lifetime_ms
        self.max_entries = max_entries
        self.evicted = 0
        self._seen: dict[str, int] = {}  # id -> forget-after (ms)
        self._heap: list[tuple[int, str]] = []
        self._db: sqlite3.Connection | None = None
        self._marks: dict[str, int] = {}
        if path is not None:
            self._open(path, synchronous)

    def _open(self, path: Path, synchronous: bool) -> None:
        try:
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if synchronous else 'NORMAL'}")
            db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, until_ms INTEGER)")
            db.execute("CREATE INDEX IF NOT EXISTS seen_until ON seen (until_ms)")
            db.execute("CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value INTEGER)")
            marks = dict(db.execute("SELECT name, value FROM marks").fetchall())
            now = self.clock()
            db.execute("DELETE FROM seen WHERE until_ms <= ?", (now,))
            rows = db.execute("SELECT id, until_ms FROM seen").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"replay window database {path}: {exc}") from exc
        self._db = db
        self._marks = marks
        for message_id, until in rows:
            self._seen[message_id] = until
            self._heap.append((until, message_id))
        heapq.heapify(self._heap)

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __len__(self) -> int:
        return len(self._seen)

    def check_time(self, created_ms: int, expires_ms: int) -> None:
        """Raise NOT_YET_VALID or EXPIRED when the message is outside its time window."""
        now = self.clock()
        if created_ms > now + self.skew_ms:
            raise VerificationError(
                Reason.NOT_YET_VALID, f"created {created_ms - now} ms in the future"
            )
        if now >= expires_ms + self.skew_ms:
            raise VerificationError(Reason.EXPIRED, f"expired {now - expires_ms} ms ago")

    def check(self, message_id: str, created_ms: int, expires_ms: int) -> None:
        """Raise unless the message is in its time window and its id unseen."""
        self.check_time(created_ms, expires_ms)
        until = self._seen.get(message_id)
        if until is not None and until > self.clock():
            raise VerificationError(
                Reason.REPLAYED, f"message id {message_id} already seen", message_id=message_id
            )

    def seen(self, message_id: str) -> bool:
        until = self._seen.get(message_id)
        return until is not None and until > self.clock()

    def record(self, message_id: str, expires_ms: int) -> None:
        """Remember ``message_id`` until ``expires_ms + skew``."""
        self.record_many(((message_id, expires_ms),))

    def mark(self, name: str) -> int | None:
        """A position saved with ``record_many(..., mark=(name, value))`` (e.g. the offset
        of a changelog the window was restored from), or None."""
        return self._marks.get(name)

    def record_many(
        self,
        items: Iterable[tuple[str, int]],
        *,
        mark: tuple[str, int] | None = None,
        persist: bool = True,
    ) -> int:
        """Remember every ``(message_id, expires_ms)``; one database transaction for all,
        together with ``mark`` when given (see ``mark``). ``persist=False``: in memory
        only (the ids reach the database another way, see the module docstring).

        Returns how many were recorded (ids already expired are skipped).
        """
        now = self.clock()
        self._purge(now)
        rows: list[tuple[str, int]] = []
        for message_id, expires_ms in items:
            until = expires_ms + self.skew_ms
            if until <= now:
                continue
            self._seen[message_id] = until
            heapq.heappush(self._heap, (until, message_id))
            rows.append((message_id, until))
        while len(self._seen) > self.max_entries:
            self._pop()
            self.evicted += 1
        if mark is not None:
            self._marks[mark[0]] = mark[1]
        if persist and (rows or mark is not None) and self._db is not None:
            db = self._db
            db.execute("BEGIN")
            try:
                db.executemany("INSERT OR REPLACE INTO seen (id, until_ms) VALUES (?, ?)", rows)
                if mark is not None:
                    db.execute("INSERT OR REPLACE INTO marks (name, value) VALUES (?, ?)", mark)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return len(rows)

    def _pop(self) -> None:
        until, message_id = heapq.heappop(self._heap)
        if self._seen.get(message_id) == until:
            del self._seen[message_id]

    def _purge(self, now: int) -> None:
        purged = False
        while self._heap and self._heap[0][0] <= now:
            self._pop()
            purged = True
        if purged and self._db is not None:
            self._db.execute("DELETE FROM seen WHERE until_ms <= ?", (now,))
