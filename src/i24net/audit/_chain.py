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

Signed heads. The hash chain alone is unkeyed: whoever can write the topic
(or rebuild it) can recompute every hash of a rewritten chain. So the writer
signs the head of its chain with the GS station's Ed25519 signing key
(:class:`HeadSigner`), once per :meth:`Chain.extend` (the router extends once
per Kafka transaction, so the signature travels in the same transaction as
the entries it covers). The signature is carried in Kafka headers of the last
record of the batch (no extra record, no schema change, every reader of
``net.i24.AuditRecord`` unaffected)::

    i24-audit-head-key  the signing key id (its station is the key id's prefix)
    i24-audit-head-sig  Ed25519 over head_message(chain, sequence, hash, at_ms, key id)

    head_message = "i24net/v1/audit-head" || lp(chain) || u64be(sequence)
                   || hash || u64be(at_ms) || lp(key id)

where ``hash`` is that record's chain hash (recomputed by the verifier, never
read from a header) and ``at_ms`` its ``at_ms``. One signature (~25 µs) per
transaction, about 100 bytes of headers: a rewritten prefix now needs the GS
signing key, and records appended by anyone else form an unsigned tail
(:func:`i24net.audit.verify_chain` with ``heads=``).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nacl.signing import SigningKey

from i24net.schemas import SchemaStore

TOPIC = "i24.audit"
SCHEMA = "net.i24.AuditRecord"
LABEL = b"i24net/v1/audit"
ZERO = bytes(32)
HASH_HEADER = "i24-audit-hash"
"""Kafka header with the record's own chain hash (hex): a convenience for
readers and for pinpointing edits; never trusted, always recomputed."""
HEAD_LABEL = b"i24net/v1/audit-head"
"""Domain-separation label of a signed chain head."""
HEAD_KEY_HEADER = "i24-audit-head-key"
HEAD_SIG_HEADER = "i24-audit-head-sig"


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


def _lp(text: str) -> bytes:
    b = text.encode()
    if len(b) > 255:
        raise ValueError("over 255 bytes")
    return bytes([len(b)]) + b


def head_message(chain: str, sequence: int, head_hash: bytes, at_ms: int, key_id: str) -> bytes:
    """The bytes a signed head signs (module docstring)."""
    return (
        HEAD_LABEL
        + _lp(chain)
        + sequence.to_bytes(8, "big")
        + head_hash
        + at_ms.to_bytes(8, "big", signed=True)
        + _lp(key_id)
    )


def key_station(key_id: str) -> str:
    """The station of a key id ``<STATION>-YYYYMMDD-<8 hex>`` (station codes may hold ``-``)."""
    return key_id.rsplit("-", 2)[0]


@dataclass(frozen=True, slots=True)
class HeadSigner:
    """The key that signs chain heads: the GS station's Ed25519 signing key."""

    key_id: str
    signing: SigningKey = field(repr=False)

    def sign(self, chain: str, sequence: int, head_hash: bytes, at_ms: int) -> bytes:
        msg = head_message(chain, sequence, head_hash, at_ms, self.key_id)
        return self.signing.sign(msg).signature


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
    head_key_id: str | None = None
    head_signature: bytes | None = None
    """Set on the last record of a batch when the chain has a signer: the signed head."""

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        out = [(HASH_HEADER, self.hash.hex().encode())]
        if self.head_key_id is not None and self.head_signature is not None:
            out.append((HEAD_KEY_HEADER, self.head_key_id.encode()))
            out.append((HEAD_SIG_HEADER, self.head_signature))
        return out


class Chain:
    """One writer's chain. ``append`` advances the head; ``head``/``reset`` let a
    caller roll back when the Kafka transaction that carried the records aborts.

    With a ``signer``, each :meth:`extend` (and :meth:`append`, a batch of one)
    signs the new head on its last record."""

    def __init__(
        self,
        chain_id: str,
        store: SchemaStore,
        head: Head = Head(),
        *,
        signer: HeadSigner | None = None,
    ) -> None:
        chain_hash(chain_id, ZERO, b"")  # validates the id length
        self.chain_id = chain_id
        self.store = store
        self.head = head
        self.signer = signer

    def reset(self, head: Head) -> None:
        self.head = head

    def append(self, entry: Entry, at_ms: int) -> Appended:
        return self._signed(self._append(entry, at_ms), at_ms)

    def _signed(self, a: Appended, at_ms: int) -> Appended:
        if self.signer is None:
            return a
        sig = self.signer.sign(self.chain_id, a.sequence, a.hash, at_ms)
        return replace(a, head_key_id=self.signer.key_id, head_signature=sig)

    def _append(self, entry: Entry, at_ms: int) -> Appended:
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
        out = [self._append(e, at_ms) for e in entries]
        if out:
            out[-1] = self._signed(out[-1], at_ms)
        return out
