"""A directory reader's high-water marks, persisted in SQLite.

Why persisted: rollback protection that lives only in memory is gone at the
next restart, and after a restart a compacted topic may show only the older
entry an attacker re-published. Kept per station: the highest serial the
reader accepted and the BLAKE2b-256 digest of that entry (an entry with the
same serial and other bytes is an equivocation, refused). Kept once: the
highest manifest version accepted, and that manifest's value (re-verified at
load), so that a restarted reader still knows the manifest's constraints and
expiry when the topic's copy was rolled back or removed.

``DirectoryState(None)`` keeps the same marks in memory only (the backward
compatible default of :func:`i24net.directory.read_all`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from i24net.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Mark:
    serial: int
    digest: bytes


class DirectoryState:
    """Per-station (serial, digest) marks and the newest manifest; SQLite or memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.stations: dict[str, Mark] = {}
        self.manifest_version = 0
        self.manifest_value: bytes | None = None
        self.rotations: dict[str, bytes] = {}
        """Accepted root rotations, new root key id -> value, in the order accepted."""
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS station_mark "
                "(station TEXT PRIMARY KEY, serial INTEGER NOT NULL, digest BLOB NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS manifest_mark "
                "(one INTEGER PRIMARY KEY CHECK (one = 1), "
                "version INTEGER NOT NULL, value BLOB NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS root_rotation "
                "(n INTEGER PRIMARY KEY, new_key_id TEXT NOT NULL UNIQUE, value BLOB NOT NULL)"
            )
            rows = db.execute("SELECT station, serial, digest FROM station_mark").fetchall()
            rots = db.execute("SELECT new_key_id, value FROM root_rotation ORDER BY n").fetchall()
            man = db.execute("SELECT version, value FROM manifest_mark").fetchone()
        except sqlite3.Error as exc:
            raise ConfigError(f"directory state database {path}: {exc}") from exc
        self._db = db
        self.stations = {s: Mark(serial, bytes(digest)) for s, serial, digest in rows}
        if man is not None:
            self.manifest_version, self.manifest_value = man[0], bytes(man[1])
        self.rotations = {str(k): bytes(v) for k, v in rots}

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def mark(self, station: str, serial: int, digest: bytes) -> None:
        """Record that ``station``'s entry ``serial`` (digest) was accepted; never lowers."""
        old = self.stations.get(station)
        if old is not None and old.serial >= serial:
            return
        self.stations[station] = Mark(serial, digest)
        if self._db is not None:
            self._db.execute(
                "INSERT INTO station_mark (station, serial, digest) VALUES (?, ?, ?) "
                "ON CONFLICT (station) DO UPDATE SET serial = excluded.serial, "
                "digest = excluded.digest WHERE excluded.serial > station_mark.serial",
                (station, serial, digest),
            )

    def mark_manifest(self, version: int, value: bytes) -> None:
        """Record the newest accepted manifest; never lowers the version."""
        if version <= self.manifest_version:
            return
        self.manifest_version, self.manifest_value = version, value
        if self._db is not None:
            self._db.execute(
                "INSERT INTO manifest_mark (one, version, value) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET version = excluded.version, "
                "value = excluded.value WHERE excluded.version > manifest_mark.version",
                (version, value),
            )

    def mark_rotation(self, new_key_id: str, value: bytes) -> None:
        """Record an accepted root rotation (the first value per new key id stays)."""
        if new_key_id in self.rotations:
            return
        self.rotations[new_key_id] = value
        if self._db is not None:
            self._db.execute(
                "INSERT INTO root_rotation (new_key_id, value) VALUES (?, ?) "
                "ON CONFLICT (new_key_id) DO NOTHING",
                (new_key_id, value),
            )
