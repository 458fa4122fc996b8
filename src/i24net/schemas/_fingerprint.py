"""Schema identity: Parsing Canonical Form and its CRC-64-AVRO fingerprint.

Two schemas that differ only in docs, defaults, aliases or whitespace share
one canonical form, hence one fingerprint: the fingerprint names the *wire
shape* of a record, which is what a reader must know to decode it.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import to_parsing_canonical_form

# The Avro specification's "empty" value for the Rabin CRC-64 ("CRC-64-AVRO").
_EMPTY = 0xC15D213AA4D7A795


def _table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    return tuple(table)


_TABLE = _table()


def fingerprint64(canonical_form: str | bytes) -> int:
    """CRC-64-AVRO of a canonical form, as the spec's reference code computes it.

    Written out here (a few lines from the spec) rather than taken from
    fastavro, whose helper returns a hex string of the little-endian bytes;
    the tests check both agree. On the wire the value is little-endian:
    ``fingerprint64('"null"') == 0x63DD24E7CC258F8A`` appears as ``8a8f25cce724dd63``.
    """
    data = canonical_form.encode() if isinstance(canonical_form, str) else canonical_form
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: Any) -> str:
    """The Avro Parsing Canonical Form of a schema (JSON text or parsed schema)."""
    return str(to_parsing_canonical_form(schema))
