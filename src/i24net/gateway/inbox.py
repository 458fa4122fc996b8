"""The inbox: verified inbound messages stored exactly once, and rejected envelopes.

``message_id`` is UNIQUE: a redelivered record (a crash after the store,
before the Kafka offset commit) is recognised and not stored twice. Status
notices and receipts are stored too, with ``visible = 0`` (they update the
outbox, they are not integrator messages), so they are deduplicated the
same way.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    duplicate: bool
    same_record: bool = False
    """For a duplicate: the stored copy came from this very Kafka record (a redelivery)."""


def store(
    conn: sqlite3.Connection,
    *,
    message_id: str,
    visible: bool,
    sender: str,
    kind: str,
    precedence: str,
    created_ms: int,
    expires_ms: int,
    received_ms: int,
    header: dict[str, Any],
    payload: bytes,
    envelope_digest: bytes,
    decision: str,
    topic: str,
    partition: int,
    offset: int,
) -> Stored:
    row = conn.execute(
        'SELECT seq, topic, partition, "offset" FROM inbox WHERE message_id = ?', (message_id,)
    ).fetchone()
    if row is not None:
        return Stored(row[0], True, (row[1], row[2], row[3]) == (topic, partition, offset))
    cur = conn.execute(
        "INSERT INTO inbox (message_id, visible, sender, kind, precedence, created_ms,"
        " expires_ms, received_ms, header, payload, envelope_digest, decision, topic, partition,"
        ' "offset") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (
            message_id,
            int(visible),
            sender,
            kind,
            precedence,
            created_ms,
            expires_ms,
            received_ms,
            json.dumps(header, default=_default),
            payload,
            envelope_digest,
            decision,
            topic,
            partition,
            offset,
        ),
    )
    return Stored(int(cur.lastrowid or 0), False)


def _default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(type(o).__name__)


def reject(
    conn: sqlite3.Connection,
    *,
    topic: str,
    partition: int,
    offset: int,
    at_ms: int,
    reason: str,
    detail: str,
    data: bytes | None,
    size: int,
) -> bool:
    """Keep a refused record aside; False when this record was already kept (redelivery)."""
    cur = conn.execute(
        'INSERT OR IGNORE INTO rejected (topic, partition, "offset", at_ms, reason, detail,'
        " size, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (topic, partition, offset, at_ms, reason, detail, size, data),
    )
    return cur.rowcount == 1


def live_ids(conn: sqlite3.Connection, now: int) -> list[tuple[str, int]]:
    """(message id, expires_ms) of stored messages not yet expired: the replay window seed."""
    return conn.execute(
        "SELECT message_id, expires_ms FROM inbox WHERE expires_ms > ?", (now - 600_000,)
    ).fetchall()


def _message(row: tuple[Any, ...], with_payload: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cursor": row[0],
        "message_id": row[1],
        "sender": row[2],
        "kind": row[3],
        "precedence": row[4],
        "created_ms": row[5],
        "expires_ms": row[6],
        "received_ms": row[7],
        "acked_ms": row[8],
        "header": json.loads(row[9]),
        "decision": row[10],
    }
    if with_payload:
        out["payload_avro"] = base64.b64encode(row[11]).decode()
    return out


_COLUMNS = (
    "seq, message_id, sender, kind, precedence, created_ms, expires_ms, received_ms,"
    " acked_ms, header, decision, payload"
)


def listing(
    conn: sqlite3.Connection, after: int, limit: int, *, unacked_only: bool
) -> list[dict[str, Any]]:
    cond = " AND acked_ms IS NULL" if unacked_only else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM inbox WHERE visible = 1 AND seq > ?{cond} ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [_message(r, False) for r in rows]


def fetch(conn: sqlite3.Connection, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM inbox WHERE visible = 1 AND message_id = ?", (message_id,)
    ).fetchone()
    return None if row is None else _message(row, True)


def ack(conn: sqlite3.Connection, message_ids: list[str], now: int) -> int:
    n = 0
    for mid in message_ids:
        n += conn.execute(
            "UPDATE inbox SET acked_ms = ? WHERE message_id = ? AND visible = 1"
            " AND acked_ms IS NULL",
            (now, mid),
        ).rowcount
    return n


def last_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM inbox").fetchone()[0])


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    stored, unacked = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(acked_ms IS NULL), 0) FROM inbox WHERE visible = 1"
    ).fetchone()
    rejected = conn.execute("SELECT COUNT(*) FROM rejected").fetchone()[0]
    return {"stored": stored, "unacked": unacked, "rejected": rejected}


_REJECTED_COLUMNS = ("seq", "topic", "partition", "offset", "at_ms", "reason", "detail", "size")


def rejected_list(conn: sqlite3.Connection, after: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        'SELECT seq, topic, partition, "offset", at_ms, reason, detail, size FROM rejected'
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [
        dict(
            zip(
                ("seq", "topic", "partition", "offset", "at_ms", "reason", "detail", "size"),
                r,
                strict=True,
            )
        )
        for r in rows
    ]
