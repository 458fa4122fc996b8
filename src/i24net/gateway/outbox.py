"""The durable outbox and the status of every message this station sent.

Rows are written by the intake (integrator messages) and by the inbound
stream (delivery receipts, in the same transaction as the stored message).
``envelope`` holds the sealed bytes until Kafka acknowledged them, then is
cleared (``status`` SENT): pending bytes are what the disk bound counts.

Status lifecycle of a message (``status``, never moves backwards):
ACCEPTED -> SENT -> ROUTED -> [HELD_FOR_REVIEW -> APPROVED] -> DELIVERED -> RECEIPTED,
or a terminal REFUSED / REJECTED / EXPIRED with ``reason``. Per-station
delivery and receipt times are kept in ``outbox_stations``.

A delivery receipt counts only from a station the router delivered to: the
router's signed DELIVERED notice names them. Any station that learnt a
message id could otherwise mark a held (never delivered) message
RECEIPTED. Notice and receipt travel under different keys, so they may be
read in either order: a receipt that comes first waits in
``receipts_pending`` (bounded, ``MAX_PENDING_RECEIPTS``) and is applied,
or refused, when the notice comes. A receipt for a message that can no
longer be delivered to its station (refused, rejected, expired, or a
DELIVERED notice that does not list it) is refused and counted
(:class:`ReceiptOutcome`).
"""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from i24net.gateway.intake import Prepared, recipients_list

STATUS_ORDER = {
    "ACCEPTED": 0,
    "SENT": 1,
    "ROUTED": 2,
    "HELD_FOR_REVIEW": 3,
    "APPROVED": 4,
    "DELIVERED": 5,
    "RECEIPTED": 6,
    "REFUSED": 9,
    "REJECTED": 9,
    "EXPIRED": 9,
}
"""Ranks: a status only replaces a lower one (terminal ones win)."""

NOTICE_STATUS = {
    "ACCEPTED": "ROUTED",
    "DELIVERED": "DELIVERED",
    "HELD_FOR_REVIEW": "HELD_FOR_REVIEW",
    "APPROVED": "APPROVED",
    "REJECTED": "REJECTED",
    "REFUSED": "REFUSED",
    "EXPIRED": "EXPIRED",
}
"""``net.i24.MessageStatus`` of a router StatusNotice -> the gateway status it sets."""

TERMINAL = ("REFUSED", "REJECTED", "EXPIRED")
"""Statuses after which nothing more is delivered."""

MAX_PENDING_RECEIPTS = 100_000
"""Receipts kept while they wait for the DELIVERED notice (beyond: refused, counted).
A receipt normally waits for one poll at most; the bound only matters against a
station flooding receipts for message ids it learnt."""


class ReceiptOutcome(enum.StrEnum):
    """What became of one delivery receipt (the refusals are metric label values)."""

    APPLIED = "applied"
    PENDING = "pending"
    """Kept until the router's DELIVERED notice says whether its station was delivered."""
    UNKNOWN_MESSAGE = "unknown_message"
    """Not a message this station sent (nothing recorded)."""
    NOT_DELIVERED = "receipt_not_delivered"
    """From a station the message was not, and will not be, delivered to."""
    PENDING_FULL = "receipt_pending_full"
    """No room left to keep it until the notice (``MAX_PENDING_RECEIPTS``)."""


@dataclass(frozen=True, slots=True)
class NoticeApplied:
    """A status notice applied, with the waiting receipts it settled."""

    receipts: list[str] = field(default_factory=list)
    """Outcomes (STORED...) of the receipts now applied."""
    refused: int = 0
    """Waiting receipts refused: their station is not among those delivered."""


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    duplicate: bool = False
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    message_id: str
    envelope: bytes
    kind: str
    precedence: str
    created_ms: int
    internal: bool


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One sealed envelope to queue (an intake submission or a gateway-written receipt)."""

    prepared: Prepared
    now: int
    idem_key: str | None = None
    request_digest: bytes | None = None
    internal: bool = False


def insert(
    conn: sqlite3.Connection,
    p: Prepared,
    now: int,
    *,
    idem_key: str | None = None,
    request_digest: bytes | None = None,
    internal: bool = False,
) -> Accepted:
    """Queue a sealed envelope. With ``idem_key``, a repeat returns the first message id."""
    return insert_many(conn, [NewMessage(p, now, idem_key, request_digest, internal)])[0]


def insert_many(conn: sqlite3.Connection, items: list[NewMessage]) -> list[Accepted]:
    """Queue many envelopes with a constant number of statements (group commit of the intake).

    Idempotency keys are checked against the table and within ``items`` (the
    first request with a key wins; a later one is its duplicate, or a conflict
    when its request digest differs).
    """
    seen: dict[str, tuple[str, bytes | None]] = {}
    keys = sorted({i.idem_key for i in items if i.idem_key is not None})
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for key, mid, digest in conn.execute(
            f"SELECT idem_key, id, request_digest FROM outbox WHERE idem_key IN ({marks})", chunk
        ):
            seen[key] = (mid, digest)
    out: list[Accepted] = []
    rows: list[tuple[Any, ...]] = []
    stations: list[tuple[str, str]] = []
    events: list[tuple[str, int]] = []
    for item in items:
        p, now, key = item.prepared, item.now, item.idem_key
        h = p.header
        if key is not None:
            first = seen.get(key)
            if first is not None:
                out.append(
                    Accepted(first[0], duplicate=True, conflict=first[1] != item.request_digest)
                )
                continue
            seen[key] = (h.message_id, item.request_digest)
        rows.append(
            (
                h.message_id,
                key,
                item.request_digest,
                p.rank,
                h.kind,
                h.precedence.value,
                json.dumps(recipients_list(h.recipients)),
                int(item.internal),
                h.created_ms,
                h.expires_ms,
                p.envelope,
                len(p.envelope),
                now,
            )
        )
        stations.extend((h.message_id, s) for s in p.recipients)
        events.append((h.message_id, now))
        out.append(Accepted(h.message_id))
    if rows:
        conn.executemany(
            "INSERT INTO outbox (id, idem_key, request_digest, rank, kind, precedence, recipients,"
            " internal, created_ms, expires_ms, envelope, size, status, updated_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ACCEPTED', ?)",
            rows,
        )
        conn.executemany(
            "INSERT OR IGNORE INTO outbox_stations (message_id, station) VALUES (?, ?)", stations
        )
        conn.executemany(
            "INSERT INTO events (message_id, at_ms, status) VALUES (?, ?, 'ACCEPTED')", events
        )
    return out


def _event(
    conn: sqlite3.Connection,
    message_id: str,
    now: int,
    status: str,
    stations: list[str] | None = None,
    reason: str | None = None,
    explanation: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO events (message_id, at_ms, status, stations, reason, explanation)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (message_id, now, status, json.dumps(stations or []), reason, explanation),
    )


def pending_totals(conn: sqlite3.Connection) -> tuple[int, int, int | None]:
    """(messages, bytes, oldest created_ms) waiting to be sent."""
    n, size, oldest = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created_ms) FROM outbox"
        " WHERE envelope IS NOT NULL"
    ).fetchone()
    return int(n), int(size), oldest


OPEN_STATUSES = ("ACCEPTED", "SENT", "ROUTED", "HELD_FOR_REVIEW", "APPROVED", "DELIVERED")
"""Statuses of a message that may still wait for a recipient (db.py's ``outbox_open`` index)."""


def undelivered_oldest(conn: sqlite3.Connection, now: int) -> dict[str, int]:
    """Per precedence, ``created_ms`` of the oldest integrator message not yet delivered to
    every recipient: some addressed station has neither a delivery nor a receipt, or (a
    broadcast or regional message, stations unknown until the router's notice) it is not
    DELIVERED yet. Expired messages are left out (they can no longer be delivered)."""
    marks = ", ".join("?" * len(OPEN_STATUSES))
    rows = conn.execute(
        "SELECT precedence, MIN(created_ms) FROM outbox AS o"
        f" WHERE internal = 0 AND status IN ({marks}) AND expires_ms > ? AND ("
        "  EXISTS (SELECT 1 FROM outbox_stations AS s WHERE s.message_id = o.id"
        "          AND s.delivered_ms IS NULL AND s.receipted_ms IS NULL)"
        "  OR (status != 'DELIVERED' AND NOT EXISTS"
        "      (SELECT 1 FROM outbox_stations AS s WHERE s.message_id = o.id)))"
        " GROUP BY precedence",
        (*OPEN_STATUSES, now),
    ).fetchall()
    return {str(p): int(t) for p, t in rows}


def sent_ms(conn: sqlite3.Connection, message_id: str) -> int | None:
    """When Kafka acknowledged an integrator message (None: not ours, internal or unsent)."""
    row = conn.execute(
        "SELECT sent_ms FROM outbox WHERE id = ? AND internal = 0", (message_id,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def next_batch(conn: sqlite3.Connection, limit: int) -> list[Pending]:
    """The next envelopes to send: highest precedence first, then in order of intake."""
    rows = conn.execute(
        "SELECT id, envelope, kind, precedence, created_ms, internal FROM outbox"
        " WHERE envelope IS NOT NULL ORDER BY rank, seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [Pending(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


def mark_sent(conn: sqlite3.Connection, ids: list[str], now: int) -> None:
    conn.executemany(
        "UPDATE outbox SET envelope = NULL, sent_ms = ?, updated_ms = ?,"
        " status = CASE WHEN status = 'ACCEPTED' THEN 'SENT' ELSE status END WHERE id = ?",
        [(now, now, i) for i in ids],
    )
    conn.executemany(
        "INSERT INTO events (message_id, at_ms, status) VALUES (?, ?, 'SENT')",
        [(i, now) for i in ids],
    )


def _advance(conn: sqlite3.Connection, message_id: str, status: str, now: int, **kw: Any) -> None:
    row = conn.execute("SELECT status FROM outbox WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return
    if STATUS_ORDER[status] >= STATUS_ORDER.get(row[0], 0) and STATUS_ORDER[row[0]] < 9:
        conn.execute(
            "UPDATE outbox SET status = ?, reason = COALESCE(?, reason),"
            " explanation = COALESCE(?, explanation), updated_ms = ? WHERE id = ?",
            (status, kw.get("reason"), kw.get("explanation"), now, message_id),
        )


def apply_notice(
    conn: sqlite3.Connection,
    message_id: str,
    notice_status: str,
    stations: list[str],
    reason: str | None,
    explanation: str | None,
    at_ms: int,
) -> NoticeApplied | None:
    """Apply a router StatusNotice; None when the message is not ours.

    A DELIVERED notice settles the receipts that came before it: those of a
    station it lists are applied, the others refused; a terminal notice
    refuses every waiting receipt.
    """
    if conn.execute("SELECT 1 FROM outbox WHERE id = ?", (message_id,)).fetchone() is None:
        return None
    status = NOTICE_STATUS.get(notice_status, notice_status)
    if status not in STATUS_ORDER:
        return None
    _event(conn, message_id, at_ms, status, stations, reason, explanation)
    if status == "DELIVERED":
        conn.executemany(
            "INSERT INTO outbox_stations (message_id, station, delivered_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (message_id, station) DO UPDATE SET"
            " delivered_ms = COALESCE(delivered_ms, excluded.delivered_ms)",
            [(message_id, s, at_ms) for s in stations],
        )
    _advance(conn, message_id, status, at_ms, reason=reason, explanation=explanation)
    if status != "DELIVERED" and status not in TERMINAL:
        return NoticeApplied()
    waiting = conn.execute(
        "SELECT station, outcome, at_ms FROM receipts_pending WHERE message_id = ?"
        " ORDER BY at_ms, station",
        (message_id,),
    ).fetchall()
    if not waiting:
        return NoticeApplied()
    conn.execute("DELETE FROM receipts_pending WHERE message_id = ?", (message_id,))
    delivered = set(stations) if status == "DELIVERED" else set()
    applied = []
    for station, outcome, received_ms in waiting:
        if station in delivered:
            _receipted(conn, message_id, station, outcome, received_ms)
            applied.append(outcome)
    return NoticeApplied(applied, len(waiting) - len(applied))


def apply_receipt(
    conn: sqlite3.Connection,
    message_id: str,
    station: str,
    outcome: str,
    at_ms: int,
    *,
    max_pending: int = MAX_PENDING_RECEIPTS,
) -> ReceiptOutcome:
    """Record a recipient's DeliveryReceipt, if the router delivered the message to
    ``station``; the message is RECEIPTED once every station delivered to has receipted.

    ``station`` is the receipt's authenticated sender. Before the DELIVERED
    notice the receipt waits (durably, bounded by ``max_pending``).
    """
    row = conn.execute("SELECT status FROM outbox WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return ReceiptOutcome.UNKNOWN_MESSAGE
    delivered = conn.execute(
        "SELECT delivered_ms FROM outbox_stations WHERE message_id = ? AND station = ?",
        (message_id, station),
    ).fetchone()
    if delivered is not None and delivered[0] is not None:
        _receipted(conn, message_id, station, outcome, at_ms)
        return ReceiptOutcome.APPLIED
    if row[0] in TERMINAL or _delivered_notice_seen(conn, message_id):
        return ReceiptOutcome.NOT_DELIVERED
    if not _room_for_pending(conn, at_ms, max_pending):
        return ReceiptOutcome.PENDING_FULL
    conn.execute(
        "INSERT INTO receipts_pending (message_id, station, outcome, at_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (message_id, station) DO NOTHING",
        (message_id, station, outcome, at_ms),
    )
    return ReceiptOutcome.PENDING


def _delivered_notice_seen(conn: sqlite3.Connection, message_id: str) -> bool:
    """The router's one DELIVERED notice for the message was applied (only
    :func:`apply_notice` writes DELIVERED events)."""
    return (
        conn.execute(
            "SELECT 1 FROM events WHERE message_id = ? AND status = 'DELIVERED' LIMIT 1",
            (message_id,),
        ).fetchone()
        is not None
    )


def _room_for_pending(conn: sqlite3.Connection, now: int, max_pending: int) -> bool:
    """Below the bound, after dropping receipts whose message can no longer be delivered."""
    if pending_receipts(conn) < max_pending:
        return True
    conn.execute(
        "DELETE FROM receipts_pending WHERE message_id IN (SELECT id FROM outbox"
        " WHERE id IN (SELECT message_id FROM receipts_pending)"
        f" AND (expires_ms <= ? OR status IN ({', '.join('?' * len(TERMINAL))})))",
        (now, *TERMINAL),
    )
    return pending_receipts(conn) < max_pending


def pending_receipts(conn: sqlite3.Connection) -> int:
    """Receipts waiting for their message's DELIVERED notice."""
    return int(conn.execute("SELECT COUNT(*) FROM receipts_pending").fetchone()[0])


def _receipted(
    conn: sqlite3.Connection, message_id: str, station: str, outcome: str, at_ms: int
) -> None:
    conn.execute(
        "UPDATE outbox_stations SET receipted_ms = COALESCE(receipted_ms, ?), outcome = ?"
        " WHERE message_id = ? AND station = ?",
        (at_ms, outcome, message_id, station),
    )
    _event(conn, message_id, at_ms, "RECEIPTED", [station], None, outcome)
    waiting = conn.execute(
        "SELECT COUNT(*) FROM outbox_stations WHERE message_id = ?"
        " AND delivered_ms IS NOT NULL AND receipted_ms IS NULL",
        (message_id,),
    ).fetchone()[0]
    if waiting == 0:
        _advance(conn, message_id, "RECEIPTED", at_ms)


def status(conn: sqlite3.Connection, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id, kind, precedence, recipients, status, reason, explanation, created_ms,"
        " expires_ms, sent_ms, updated_ms FROM outbox WHERE id = ? AND internal = 0",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    stations = conn.execute(
        "SELECT station, delivered_ms, receipted_ms, outcome FROM outbox_stations"
        " WHERE message_id = ? ORDER BY station",
        (message_id,),
    ).fetchall()
    events = conn.execute(
        "SELECT at_ms, status, stations, reason, explanation FROM events"
        " WHERE message_id = ? ORDER BY seq",
        (message_id,),
    ).fetchall()
    return {
        "message_id": row[0],
        "kind": row[1],
        "precedence": row[2],
        "recipients": json.loads(row[3]),
        "status": row[4],
        "reason": row[5],
        "explanation": row[6],
        "created_ms": row[7],
        "expires_ms": row[8],
        "sent_ms": row[9],
        "updated_ms": row[10],
        "stations": [
            {"station": s[0], "delivered_ms": s[1], "receipted_ms": s[2], "outcome": s[3]}
            for s in stations
        ],
        "events": [
            {
                "at_ms": e[0],
                "status": e[1],
                "stations": json.loads(e[2]),
                "reason": e[3],
                "explanation": e[4],
            }
            for e in events
        ],
    }


def status_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {
        s: n
        for s, n in conn.execute(
            "SELECT status, COUNT(*) FROM outbox WHERE internal = 0 GROUP BY status"
        )
    }


class Backlog:
    """In-memory totals of what waits in the outbox (seeded from the database at start).

    The intake checks the disk bound against it before storing; the drain
    subtracts what Kafka acknowledged.
    """

    def __init__(self, messages: int, size: int, oldest_ms: int | None) -> None:
        self.messages = messages
        self.bytes = size
        self.oldest_ms = oldest_ms

    def add(self, size: int, created_ms: int) -> None:
        self.messages += 1
        self.bytes += size
        if self.oldest_ms is None:
            self.oldest_ms = created_ms

    def remove(self, count: int, size: int) -> None:
        self.messages = max(0, self.messages - count)
        self.bytes = max(0, self.bytes - size)
        if self.messages == 0:
            self.oldest_ms = None
