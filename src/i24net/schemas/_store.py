"""The schema store: every Avro schema of the repository, and a strict codec.

Why strict: a police message that decodes "mostly" is worse than one that is
refused. fastavro is lenient by default (extra keys dropped, trailing bytes
ignored, non-minimal varints and multi-block arrays accepted), so this layer
adds the checks and turns every failure into an ``i24net.errors`` class.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import load_schema, parse_schema

from i24net.errors import (
    CodecError,
    OversizedError,
    SchemaMismatchError,
    TrailingBytesError,
    UnknownSchemaError,
)
from i24net.schemas._fingerprint import canonical_form, fingerprint64

MAGIC = b"\xc3\x01"
"""The two marker bytes that open every Avro single-object encoding."""

HEADER_SIZE = len(MAGIC) + 8
DEFAULT_MAX_SIZE = 1 << 20
"""Default bound on any encoded record (1 MiB): checked before decoding."""

# What fastavro (pure Python or Cython) raises on bytes that do not fit a schema.
_DECODE_FAILURES = (
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    IndexError,  # union or enum index out of range
    KeyError,
    TypeError,
    OverflowError,
    MemoryError,
    RecursionError,
    SchemaResolutionError,
)


@dataclass(frozen=True, slots=True)
class _Writer:
    """A schema the store can read: ``name`` is what it resolves to."""

    name: str
    schema: Any
    current: bool  # False for a superseded version kept under history/


def _repo_root_schemas() -> Path:
    return Path(__file__).resolve().parents[3] / "schemas"


class SchemaStore:
    """Every schema of one directory, by full name and by fingerprint.

    ``directory`` holds one named type per file, ``<fullname>.avsc``, so that
    fastavro resolves named references between them. ``directory/history``
    may hold superseded versions (``<fullname>.v<N>.avsc``, self-contained):
    they are readable as writer schemas, resolved to the current version, and
    never used to write.
    """

    def __init__(self, directory: Path, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.directory = directory
        self.max_size = max_size
        self._schemas: dict[str, Any] = {}
        self._fingerprints: dict[str, bytes] = {}
        self._writers: dict[bytes, _Writer] = {}
        for path in sorted(directory.glob("*.avsc")):
            schema = _load(path, lambda p: load_schema(str(p)))
            name = _fullname(schema, path)
            _check_arrays(schema, path)
            if path.stem != name:
                raise CodecError(f"{path}: defines {name}; the file must be named {name}.avsc")
            self._add(name, schema, current=True)
        history = directory / "history"
        for path in sorted(history.glob("*.avsc")) if history.is_dir() else []:
            schema = _load(path, lambda p: parse_schema(json.loads(p.read_text("utf-8"))))
            name = _fullname(schema, path)
            _check_arrays(schema, path)
            if not path.name.startswith(name + ".v") or name not in self._schemas:
                raise CodecError(
                    f"{path}: a superseded version of {name} must be named {name}.v<N>.avsc "
                    f"and {name}.avsc must exist"
                )
            self._add(name, schema, current=False)

    @classmethod
    def default(cls) -> SchemaStore:
        """The store of the repository's ``schemas/`` directory."""
        return cls(_repo_root_schemas())

    def _add(self, name: str, schema: Any, *, current: bool) -> None:
        fp = fingerprint64(canonical_form(schema)).to_bytes(8, "little")
        if current:
            self._schemas[name] = schema
            self._fingerprints[name] = fp
        if fp in self._writers:
            if self._writers[fp].name != name:
                raise CodecError(
                    f"{name} and {self._writers[fp].name} share fingerprint {fp.hex()}"
                )
            return  # a history copy identical on the wire to the current one
        self._writers[fp] = _Writer(name, schema, current)

    # --- lookup ---------------------------------------------------------

    def names(self) -> list[str]:
        """Full names of the current schemas, sorted."""
        return sorted(self._schemas)

    def schema(self, fullname: str) -> Any:
        """The parsed (fastavro) schema of ``fullname``."""
        try:
            return self._schemas[fullname]
        except KeyError:
            raise UnknownSchemaError(f"no schema named {fullname!r}") from None

    def fingerprint(self, fullname: str) -> bytes:
        """CRC-64-AVRO of the canonical form, 8 bytes little-endian as on the wire."""
        self.schema(fullname)
        return self._fingerprints[fullname]

    def by_fingerprint(self, fp: bytes) -> str:
        """The full name a fingerprint (current or superseded version) resolves to."""
        try:
            return self._writers[bytes(fp)].name
        except KeyError:
            raise UnknownSchemaError(f"no schema has fingerprint {bytes(fp).hex()}") from None

    # --- plain Avro binary ----------------------------------------------

    def encode(self, fullname: str, record: Mapping[str, Any]) -> bytes:
        """Avro binary of ``record``; every field must be present, no extra one."""
        schema = self.schema(fullname)
        if schema["type"] != "record":
            raise SchemaMismatchError(
                f"{fullname} is not a record schema; only records travel alone"
            )
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, schema, record, strict=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise SchemaMismatchError(f"{fullname}: {exc}") from exc
        data = out.getvalue()
        if len(data) > self.max_size:
            raise OversizedError(f"{fullname} record is {len(data)} bytes, over {self.max_size}")
        return data

    def decode(self, fullname: str, data: bytes) -> dict[str, Any]:
        """The record ``data`` encodes with the current ``fullname`` schema."""
        self._check_size(data)
        return self._decode(_Writer(fullname, self.schema(fullname), True), bytes(data))

    # --- single-object encoding -------------------------------------------

    def encode_single(self, fullname: str, record: Mapping[str, Any]) -> bytes:
        """``C3 01`` + 8-byte fingerprint + Avro binary body."""
        data = MAGIC + self.fingerprint(fullname) + self.encode(fullname, record)
        if len(data) > self.max_size:
            raise OversizedError(f"{fullname} record is {len(data)} bytes, over {self.max_size}")
        return data

    def decode_single(
        self, data: bytes, *, expected: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """``(fullname, record)``; a superseded writer version is resolved to the current one.

        ``expected`` refuses any other schema (a caller that knows what it
        wants should never be handed something else).
        """
        self._check_size(data)
        data = bytes(data)
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise CodecError("not Avro single-object encoding (expected C3 01 + fingerprint)")
        writer = self._writers.get(data[2:HEADER_SIZE])
        if writer is None:
            raise UnknownSchemaError(f"no schema has fingerprint {data[2:HEADER_SIZE].hex()}")
        if expected is not None and writer.name != expected:
            raise SchemaMismatchError(f"expected a {expected} record, got {writer.name}")
        return writer.name, self._decode(writer, data[HEADER_SIZE:])

    # --- internals --------------------------------------------------------

    def _check_size(self, data: bytes) -> None:
        if len(data) > self.max_size:
            raise OversizedError(f"input is {len(data)} bytes, over the {self.max_size} bound")

    def _decode(self, writer: _Writer, body: bytes) -> dict[str, Any]:
        """Decode, then insist on exactly one record, encoded the one canonical way.

        fastavro reads a string or bytes length by asking BytesIO for that
        many bytes, which returns only what is there, so a forged length
        fails fast on EOF instead of allocating; every array item of our
        schemas consumes at least one byte, so a forged count hits EOF too.
        """
        reader = self._schemas[writer.name]
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(
                stream, writer.schema, None if writer.current else reader
            )
        except _DECODE_FAILURES as exc:
            raise SchemaMismatchError(
                f"{writer.name}: bytes do not decode ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(record, dict):
            raise SchemaMismatchError(f"{writer.name}: top-level value is not a record")
        if stream.tell() != len(body):
            raise TrailingBytesError(
                f"{writer.name}: {len(body) - stream.tell()} bytes left after the record"
            )
        if writer.current and self.encode(writer.name, record) != body:
            # Non-minimal varints, several array blocks, negative union or
            # enum indexes: one record, one encoding (signatures stay simple).
            raise SchemaMismatchError(f"{writer.name}: record is not canonically encoded")
        return record


def _load(path: Path, loader: Callable[[Path], Any]) -> Any:
    try:
        return loader(path)
    except Exception as exc:  # fastavro raises many kinds on a bad file
        raise CodecError(f"cannot load schema {path}: {exc}") from exc


def _fullname(schema: Any, path: Path) -> str:
    if not isinstance(schema, dict) or "name" not in schema:
        raise CodecError(f"{path}: the top-level type must be a named type")
    return str(schema["name"])


_FIXED_WIDTH = {"null": 0, "float": 4, "double": 8}


def _check_arrays(schema: Any, path: Path) -> None:
    """Refuse arrays whose items may encode to zero bytes.

    Such an array lets a few forged bytes claim billions of items that cost
    no input to "read": the decoder would spin and allocate. With at least
    one byte per item, a forged count fails on EOF within ``len(data)`` steps.
    """
    sizes: dict[str, int] = {}  # named type -> its minimum size (0 while being visited)

    def min_size(s: Any) -> int:
        if isinstance(s, list):
            return 1  # the branch index
        if isinstance(s, str):
            return sizes[s] if s in sizes else _FIXED_WIDTH.get(s, 1)
        kind = s["type"]
        if kind in ("record", "error"):
            sizes[s["name"]] = 0
            sizes[s["name"]] = sum(min_size(f["type"]) for f in s["fields"])
            return sizes[s["name"]]
        if kind in ("enum", "fixed"):
            sizes[s["name"]] = int(s["size"]) if kind == "fixed" else 1
            return sizes[s["name"]]
        if kind == "array":
            if min_size(s["items"]) == 0:
                raise CodecError(f"{path}: array items must not encode to zero bytes")
            return 1
        if kind == "map":
            min_size(s["values"])
            return 1
        return min_size(kind)

    min_size(schema)
