"""Hash-chained audit records (``net.i24.AuditRecord`` on ``i24.audit``).

Construction (docs/router.md, "Audit chain"):

    record_bytes = single-object encoding of the AuditRecord (C3 01 + fingerprint + body)
    hash         = BLAKE2b-256("i24net/v1/audit" || lp(chain) || previous_hash || record_bytes)

``chain`` is the writer's chain id (a router instance, ``router/<instance>``),
which is also the Kafka record key. Each writer keeps its own chain on the one
partition of ``i24.audit``, because several router instances append at once
and only one writer can know its predecessor's hash without coordination.
Every record carries ``sequence`` (from 0, no gaps) and ``previous_hash``
(32 zero bytes for sequence 0). Nothing in a record is plaintext of a message:
ids, kind, stations, reasons and the BLAKE2b-256 of the envelope bytes.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from i24net.schemas import SchemaStore

TOPIC = "i24.audit"
SCHEMA = "net.i24.AuditRecord"
LABEL = b"i24net/v1/audit"
ZERO = bytes(32)
HASH_HEADER = "i24-audit-hash"
"""Kafka header with the record's own chain hash (hex): a convenience for
readers and for pinpointing edits; never trusted, always recomputed."""


class Action(enum.StrEnum):
    """``net.i24.AuditAction`` symbols."""

    ACCEPTED = "ACCEPTED"
    DELIVERED = "DELIVERED"
    HELD = "HELD"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    REFUSED = "REFUSED"
    EXPIRED = "EXPIRED"
    DIRECTORY_UPDATED = "DIRECTORY_UPDATED"
    KEY_DESTROYED = "KEY_DESTROYED"
    """A previous encryption key set was destroyed after its hold (router/keyring.py);
    ``reason`` names the key id, never key material."""


def digest(data: bytes) -> bytes:
    """BLAKE2b-256, the project's hash."""
    return hashlib.blake2b(data, digest_size=32).digest()


def chain_hash(chain: str, previous: bytes, record_bytes: bytes) -> bytes:
    c = chain.encode()
    if len(c) > 255:
        raise ValueError("chain id over 255 bytes")
    return digest(LABEL + bytes([len(c)]) + c + previous + record_bytes)


def encode_reason(
    rule: str | None,
    reasons: Sequence[str],
    policy: str | None = None,
    hits: Sequence[Mapping[str, object]] = (),
) -> str:
    """The ``reason`` field: compact JSON ``{"rule": ..., "reasons": [...]}``, with
    ``"policy"`` (the screening policy's digest) when a policy decided, and
    ``"hits"`` (each indicator found: id, category, language and the matched
    vocabulary words, ``Verdict.hit_record``) when it found any."""
    value: dict[str, object] = {"rule": rule, "reasons": list(reasons)}
    if policy is not None:
        value["policy"] = policy
    if hits:
        value["hits"] = [dict(h) for h in hits]
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Entry:
    """What a writer records; the chain adds sequence, time and previous hash."""

    action: Action
    actor: str
    message_id: str | None = None
    kind: str | None = None
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    reason: str | None = None
    envelope_digest: bytes | None = None


@dataclass(frozen=True, slots=True)
class Head:
    """Where a chain stands: the next sequence number and the last record's hash."""

    next_sequence: int = 0
    last_hash: bytes = ZERO


@dataclass(frozen=True, slots=True)
class Appended:
    key: bytes
    value: bytes
    hash: bytes
    sequence: int

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(HASH_HEADER, self.hash.hex().encode())]


class Chain:
    """One writer's chain. ``append`` advances the head; ``head``/``reset`` let a
    caller roll back when the Kafka transaction that carried the records aborts."""

    def __init__(self, chain_id: str, store: SchemaStore, head: Head = Head()) -> None:
        chain_hash(chain_id, ZERO, b"")  # validates the id length
        self.chain_id = chain_id
        self.store = store
        self.head = head

    def reset(self, head: Head) -> None:
        self.head = head

    def append(self, entry: Entry, at_ms: int) -> Appended:
        seq = self.head.next_sequence
        record: dict[str, Any] = {
            "sequence": seq,
            "at_ms": at_ms,
            "action": entry.action.value,
            "actor": entry.actor,
            "message_id": entry.message_id,
            "kind": entry.kind,
            "sender": entry.sender,
            "recipients": list(entry.recipients),
            "reason": entry.reason,
            "envelope_digest": entry.envelope_digest,
            "previous_hash": self.head.last_hash,
        }
        value = self.store.encode_single(SCHEMA, record)
        h = chain_hash(self.chain_id, self.head.last_hash, value)
        self.head = Head(seq + 1, h)
        return Appended(self.chain_id.encode(), value, h, seq)

    def extend(self, entries: Iterable[Entry], at_ms: int) -> list[Appended]:
        return [self.append(e, at_ms) for e in entries]
