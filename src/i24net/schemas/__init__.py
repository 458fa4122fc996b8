"""Avro schemas and the strict codec for every i24net payload.

``SchemaStore`` holds the repository's ``schemas/*.avsc`` by full name and by
fingerprint; it encodes plain Avro binary and Avro single-object encoding
(``C3 01`` + 8-byte CRC-64-AVRO fingerprint + body), refusing anything that
does not match exactly. The format is specified in ``docs/schemas.md``.
"""

from __future__ import annotations

from i24net.schemas._fingerprint import canonical_form, fingerprint64
from i24net.schemas._store import DEFAULT_MAX_SIZE, HEADER_SIZE, MAGIC, SchemaStore
from i24net.schemas.kinds import KIND_SCHEMAS

__all__ = [
    "DEFAULT_MAX_SIZE",
    "HEADER_SIZE",
    "KIND_SCHEMAS",
    "MAGIC",
    "SchemaStore",
    "canonical_form",
    "fingerprint64",
]
