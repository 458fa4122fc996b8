"""Hand-written strict Avro binary for the envelope's own records (docs/envelope.md §2).

The generic ``SchemaStore`` codec decodes with fastavro, then re-encodes to
prove the bytes are canonical: about 2x the cost of the cryptography on a
1 KiB message. The envelope, header, key wrap and attestation are small,
fixed records, so they are read and written here directly, with the same
strictness by construction: minimal varints (at most 10 bytes, 64-bit
range; ``int`` in 32-bit range), non-negative lengths that fit the input,
union and enum indexes in range, strict UTF-8, each array in one block (or a
single 0 when empty), no trailing bytes. A reader that accepts only the
canonical encoding needs no re-encoding.

Enum symbols are taken from the store's schemas, so adding a symbol needs no
change here; :func:`layout_matches` checks that the store's records have the
field layout this module is written for (the envelope falls back to the
generic codec otherwise). ``tests/unit/test_envelope_wire.py`` checks this
module against the generic codec, both ways.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from i24net.envelope._header import (
    Handling,
    HandlingCode,
    Header,
    Language,
    Precedence,
    Recipients,
    RecipientsMode,
    Reliability,
)
from i24net.schemas import MAGIC, SchemaStore

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1


class WireError(ValueError):
    """Bytes that are not the one canonical Avro encoding of the record."""


# --- reading -----------------------------------------------------------------


def read_long(d: bytes, p: int) -> tuple[int, int]:
    """A zig-zag varint at ``p``: minimal length, at most 10 bytes, 64-bit range."""
    if p >= len(d):
        raise WireError("truncated")
    b = d[p]
    p += 1
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), p
    n = b & 0x7F
    shift = 7
    while True:
        if p >= len(d):
            raise WireError("truncated varint")
        b = d[p]
        p += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift > 63:
            raise WireError("varint longer than 10 bytes")
    if b == 0:
        raise WireError("varint is not minimal")
    if n >> 64:
        raise WireError("varint exceeds 64 bits")
    return (n >> 1) ^ -(n & 1), p


def read_int(d: bytes, p: int) -> tuple[int, int]:
    n, p = read_long(d, p)
    if not _INT_MIN <= n <= _INT_MAX:
        raise WireError("int out of 32-bit range")
    return n, p


def read_index(d: bytes, p: int, count: int) -> tuple[int, int]:
    """An enum symbol or union branch index in ``range(count)``."""
    if p < len(d) and d[p] < 0x80:  # one-byte fast path (every index of our schemas)
        i = d[p]
        i = (i >> 1) ^ -(i & 1)
        p += 1
    else:
        i, p = read_long(d, p)
    if not 0 <= i < count:
        raise WireError(f"index {i} out of range({count})")
    return i, p


def read_bytes(d: bytes, p: int) -> tuple[bytes, int]:
    n, p = read_long(d, p)
    end = p + n
    if n < 0 or end > len(d):
        raise WireError("bytes length out of range")
    return d[p:end], end


def read_str(d: bytes, p: int) -> tuple[str, int]:
    n, p = read_long(d, p)
    end = p + n
    if n < 0 or end > len(d):
        raise WireError("string length out of range")
    try:
        return d[p:end].decode(), end
    except UnicodeDecodeError:
        raise WireError("string is not UTF-8") from None


def read_optional_str(d: bytes, p: int) -> tuple[str | None, int]:
    i, p = read_index(d, p, 2)
    return (None, p) if i == 0 else read_str(d, p)


def read_optional_bytes(d: bytes, p: int) -> tuple[bytes | None, int]:
    i, p = read_index(d, p, 2)
    return (None, p) if i == 0 else read_bytes(d, p)


def read_array(
    d: bytes, p: int, item: Callable[[bytes, int], tuple[T, int]]
) -> tuple[list[T], int]:
    """One block of items then a 0 count, or a single 0 (what a canonical writer emits)."""
    count, p = read_long(d, p)
    if count == 0:
        return [], p
    if count < 0 or count > len(d) - p:  # every item is at least one byte
        raise WireError("array count out of range")
    out = []
    for _ in range(count):
        x, p = item(d, p)
        out.append(x)
    end, p = read_long(d, p)
    if end != 0:
        raise WireError("array is not one block")
    return out, p


def done(d: bytes, p: int) -> None:
    if p != len(d):
        raise WireError(f"{len(d) - p} bytes left after the record")


# --- writing -----------------------------------------------------------------

_SMALL = [bytes(((n << 1) if n >= 0 else ((-n << 1) - 1),)) for n in range(-64, 64)]


def long_bytes(n: int) -> bytes:
    """The zig-zag varint of a long."""
    if -64 <= n < 64:
        return _SMALL[n + 64]
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise WireError(f"{n} is out of the long range")
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def bytes_field(b: bytes) -> bytes:
    """Length then bytes; for large values prefer ``long_bytes(len(b))`` + b in one join."""
    if not isinstance(b, bytes):
        raise WireError(f"bytes expected, got {type(b).__name__}")
    return long_bytes(len(b)) + b


def str_field(s: str) -> bytes:
    if not isinstance(s, str):
        raise WireError(f"string expected, got {type(s).__name__}")
    try:
        b = s.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate: Python str, but not text UTF-8 holds
        raise WireError(f"string is not valid Unicode text (at {exc.start})") from None
    return long_bytes(len(b)) + b


def optional_str_field(s: str | None) -> bytes:
    return b"\x00" if s is None else b"\x02" + str_field(s)


def str_array_field(xs: tuple[str, ...] | list[str]) -> bytes:
    if not xs:
        return b"\x00"
    return b"".join((long_bytes(len(xs)), *map(str_field, xs), b"\x00"))


# --- layout check ------------------------------------------------------------


def _shape(s: Any, named: Mapping[str, Any]) -> Any:
    """A schema's wire layout: field names and types, enum names (symbols left out)."""
    if isinstance(s, str):
        return _shape(named[s], named) if s in named else s
    if isinstance(s, list):
        return ("union", *(_shape(x, named) for x in s))
    kind = s["type"]
    if kind == "record":
        return ("record", s["name"], *((f["name"], _shape(f["type"], named)) for f in s["fields"]))
    if kind == "enum":
        return ("enum", s["name"])
    if kind == "array":
        return ("array", _shape(s["items"], named))
    if isinstance(kind, str) and len(s) == 1:
        return _shape(kind, named)
    return ("other", repr(s))


_OPT_STR = ("union", "null", "string")
_OPT_BYTES = ("union", "null", "bytes")
_STR_ARRAY = ("array", "string")
LAYOUTS: dict[str, Any] = {
    "net.i24.Envelope": (
        "record",
        "net.i24.Envelope",
        ("header", "bytes"),
        ("sender_signature", "bytes"),
        ("nonce", "bytes"),
        ("ciphertext", "bytes"),
        (
            "wrap",
            (
                "record",
                "net.i24.KeyWrap",
                ("wrapper", "string"),
                ("wrapper_key_id", "string"),
                ("recipient", "string"),
                ("recipient_key_id", "string"),
                ("wrapped", "bytes"),
            ),
        ),
        ("attestation", _OPT_BYTES),
        ("attestation_signature", _OPT_BYTES),
    ),
    "net.i24.Header": (
        "record",
        "net.i24.Header",
        ("message_id", "string"),
        ("sender", "string"),
        ("sender_key_id", "string"),
        (
            "recipients",
            (
                "record",
                "net.i24.Recipients",
                ("mode", ("enum", "net.i24.RecipientsMode")),
                ("stations", _STR_ARRAY),
                ("region", _OPT_STR),
            ),
        ),
        ("kind", ("enum", "net.i24.MessageKind")),
        ("precedence", ("enum", "net.i24.Precedence")),
        ("created_ms", "long"),
        ("expires_ms", "long"),
        ("language", ("enum", "net.i24.Language")),
        (
            "handling",
            (
                "array",
                (
                    "record",
                    "net.i24.HandlingCode",
                    ("code", ("enum", "net.i24.HandlingCodeType")),
                    ("text", _OPT_STR),
                ),
            ),
        ),
        ("excluded", _STR_ARRAY),
        ("source_reliability", ("union", "null", ("enum", "net.i24.SourceReliability"))),
        ("source_accuracy", ("union", "null", "int")),
        ("offence_categories", ("array", ("enum", "net.i24.OffenceCategory"))),
        ("payload_fingerprint", "bytes"),
    ),
    "net.i24.Attestation": (
        "record",
        "net.i24.Attestation",
        ("router", "string"),
        ("router_key_id", "string"),
        ("message_id", "string"),
        ("message_digest", "bytes"),
        ("decision", ("enum", "net.i24.AttestationDecision")),
        ("recipients", _STR_ARRAY),
        ("decided_ms", "long"),
        ("review_id", _OPT_STR),
    ),
}


def layout_matches(store: SchemaStore) -> bool:
    """Whether the store's envelope, header and attestation have the layout written here."""
    try:
        for name, expected in LAYOUTS.items():
            schema = store.schema(name)
            if _shape(schema, schema.get("__named_schemas", {})) != expected:
                return False
    except Exception:  # any surprise in the store's schemas: use the generic codec
        return False
    return True


def _symbols(store: SchemaStore, record: str, enum_name: str) -> list[str]:
    named = store.schema(record).get("__named_schemas", {})
    return list(named[enum_name]["symbols"])


def _members(symbols: list[str], cls: type[E]) -> list[E | None]:
    """Python enum member per symbol index (None for a symbol the code does not know)."""
    by_value = {m.value: m for m in cls}
    return [by_value.get(s) for s in symbols]


def _index(symbols: list[str]) -> dict[str, int]:
    return {s: i for i, s in enumerate(symbols)}


# --- the header ---------------------------------------------------------------


class HeaderCodec:
    """``net.i24.Header`` single-object encoding <-> :class:`Header`."""

    def __init__(self, store: SchemaStore) -> None:
        h = "net.i24.Header"
        self.prefix = MAGIC + store.fingerprint(h)
        self.modes = _members(_symbols(store, h, "net.i24.RecipientsMode"), RecipientsMode)
        self.kinds: list[str | None] = list(_symbols(store, h, "net.i24.MessageKind"))
        self.precedences = _members(_symbols(store, h, "net.i24.Precedence"), Precedence)
        self.languages = _members(_symbols(store, h, "net.i24.Language"), Language)
        self.handlings = _members(_symbols(store, h, "net.i24.HandlingCodeType"), Handling)
        self.reliabilities = _members(_symbols(store, h, "net.i24.SourceReliability"), Reliability)
        self.offences = _symbols(store, h, "net.i24.OffenceCategory")
        self.w_modes = _index([m.value if m else "" for m in self.modes])
        self.w_kinds = _index([k or "" for k in self.kinds])
        self.w_precedences = _index([m.value if m else "" for m in self.precedences])
        self.w_languages = _index([m.value if m else "" for m in self.languages])
        self.w_handlings = _index([m.value if m else "" for m in self.handlings])
        self.w_reliabilities = _index([m.value if m else "" for m in self.reliabilities])
        self.w_offences = _index(self.offences)

    def _enum(self, d: bytes, p: int, table: list[T | None]) -> tuple[T, int]:
        i, p = read_index(d, p, len(table))
        v = table[i]
        if v is None:
            raise WireError(f"symbol #{i} is unknown to this code")
        return v, p

    def _handling(self, d: bytes, p: int) -> tuple[HandlingCode, int]:
        code, p = self._enum(d, p, self.handlings)
        text, p = read_optional_str(d, p)
        return HandlingCode(code, text), p

    def _offence(self, d: bytes, p: int) -> tuple[str, int]:
        i, p = read_index(d, p, len(self.offences))
        return self.offences[i], p

    def decode(self, hb: bytes) -> Header:
        """The header of ``hb`` (prefix included, already checked by the caller)."""
        d, p = hb, len(self.prefix)
        message_id, p = read_str(d, p)
        sender, p = read_str(d, p)
        sender_key_id, p = read_str(d, p)
        mode, p = self._enum(d, p, self.modes)
        stations, p = read_array(d, p, read_str)
        region, p = read_optional_str(d, p)
        kind, p = self._enum(d, p, self.kinds)
        precedence, p = self._enum(d, p, self.precedences)
        created_ms, p = read_long(d, p)
        expires_ms, p = read_long(d, p)
        language, p = self._enum(d, p, self.languages)
        handling, p = read_array(d, p, self._handling)
        excluded, p = read_array(d, p, read_str)
        i, p = read_index(d, p, 2)
        reliability = None
        if i:
            reliability, p = self._enum(d, p, self.reliabilities)
        i, p = read_index(d, p, 2)
        accuracy = None
        if i:
            accuracy, p = read_int(d, p)
        offences, p = read_array(d, p, self._offence)
        fingerprint, p = read_bytes(d, p)
        done(d, p)
        return Header(
            message_id,
            sender,
            sender_key_id,
            Recipients(mode, tuple(stations), region),
            kind,
            precedence,
            created_ms,
            expires_ms,
            language,
            fingerprint,
            tuple(handling),
            tuple(excluded),
            reliability,
            accuracy,
            tuple(offences),
        )

    @staticmethod
    def _sym(table: dict[str, int], value: object, what: str) -> bytes:
        i = table.get(value) if isinstance(value, str) else None
        if i is None:
            raise WireError(f"{value!r} is not a {what} symbol")
        return long_bytes(i)

    def encode(self, h: Header) -> bytes:
        """Single-object encoding of ``h``; raises WireError when it does not fit the schema."""
        r = h.recipients
        acc = h.source_accuracy
        if acc is not None and (not isinstance(acc, int) or not _INT_MIN <= acc <= _INT_MAX):
            raise WireError("source_accuracy must be an int")
        if not isinstance(h.created_ms, int) or not isinstance(h.expires_ms, int):
            raise WireError("created_ms and expires_ms must be ints")
        sym = self._sym
        parts = [
            self.prefix,
            str_field(h.message_id),
            str_field(h.sender),
            str_field(h.sender_key_id),
            sym(self.w_modes, r.mode, "recipients mode"),
            str_array_field(r.stations),
            optional_str_field(r.region),
            sym(self.w_kinds, h.kind, "message kind"),
            sym(self.w_precedences, h.precedence, "precedence"),
            long_bytes(h.created_ms),
            long_bytes(h.expires_ms),
            sym(self.w_languages, h.language, "language"),
        ]
        if h.handling:
            parts.append(long_bytes(len(h.handling)))
            for hc in h.handling:
                parts.append(sym(self.w_handlings, hc.code, "handling code"))
                parts.append(optional_str_field(hc.text))
        parts.append(b"\x00")
        parts.append(str_array_field(h.excluded))
        rel = h.source_reliability
        parts.append(
            b"\x00" if rel is None else b"\x02" + sym(self.w_reliabilities, rel, "reliability")
        )
        parts.append(b"\x00" if acc is None else b"\x02" + long_bytes(acc))
        if h.offence_categories:
            parts.append(long_bytes(len(h.offence_categories)))
            parts.extend(sym(self.w_offences, o, "offence category") for o in h.offence_categories)
        parts.append(b"\x00")
        parts.append(bytes_field(h.payload_fingerprint))
        return b"".join(parts)


# --- the attestation ------------------------------------------------------------


class AttestationCodec:
    """Plain Avro binary of ``net.i24.Attestation`` <-> its fields as a tuple."""

    def __init__(self, store: SchemaStore, decisions: type[E]) -> None:
        a = "net.i24.Attestation"
        self.decisions = _members(_symbols(store, a, "net.i24.AttestationDecision"), decisions)
        self.w_decisions = _index([m.value if m else "" for m in self.decisions])

    def decode(
        self, d: bytes
    ) -> tuple[str, str, str, bytes, Any, tuple[str, ...], int, str | None]:
        router, p = read_str(d, 0)
        router_key_id, p = read_str(d, p)
        message_id, p = read_str(d, p)
        digest, p = read_bytes(d, p)
        i, p = read_index(d, p, len(self.decisions))
        decision = self.decisions[i]
        if decision is None:
            raise WireError(f"decision #{i} is unknown to this code")
        recipients, p = read_array(d, p, read_str)
        decided_ms, p = read_long(d, p)
        review_id, p = read_optional_str(d, p)
        done(d, p)
        return (
            router,
            router_key_id,
            message_id,
            digest,
            decision,
            tuple(recipients),
            decided_ms,
            review_id,
        )

    def encode(
        self,
        router: str,
        router_key_id: str,
        message_id: str,
        digest: bytes,
        decision: str,
        recipients: tuple[str, ...],
        decided_ms: int,
        review_id: str | None,
    ) -> bytes:
        i = self.w_decisions.get(decision)
        if i is None:
            raise WireError(f"{decision!r} is not a decision symbol")
        if not isinstance(decided_ms, int):
            raise WireError("decided_ms must be an int")
        return b"".join(
            (
                str_field(router),
                str_field(router_key_id),
                str_field(message_id),
                bytes_field(digest),
                long_bytes(i),
                str_array_field(recipients),
                long_bytes(decided_ms),
                optional_str_field(review_id),
            )
        )
