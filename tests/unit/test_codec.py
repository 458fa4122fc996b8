"""The codec: fingerprints, single-object encoding and every strict refusal."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from hypothesis import given, settings
from hypothesis import strategies as st

from i24net.errors import (
    CodecError,
    I24Error,
    OversizedError,
    SchemaMismatchError,
    TrailingBytesError,
    UnknownSchemaError,
)
from i24net.schemas import MAGIC, SchemaStore, canonical_form, fingerprint64

STORE = SchemaStore.default()
MESSAGE = "net.i24.PoliceMessage"
RECORD: dict[str, Any] = {
    "subject_line": "Stolen vehicle",
    "text": "VIN WVWZZZ1JZXW000001 reported stolen in Lyon on 2026-03-03.",
    "case_reference": None,
    "attachments": [],
    "in_reply_to": "01JNRZ8V6Q5Y4T3S2R1P0N9M8K",
}


def _kind(exc: pytest.ExceptionInfo[BaseException]) -> type[BaseException]:
    return type(exc.value)


# --- fingerprints -----------------------------------------------------------


def test_null_fingerprint_is_the_spec_value() -> None:
    assert fingerprint64('"null"') == 0x63DD24E7CC258F8A
    assert fingerprint64(b'"null"').to_bytes(8, "little").hex() == "8a8f25cce724dd63"


@pytest.mark.parametrize("name", STORE.names())
def test_fingerprints_agree_with_fastavro(name: str) -> None:
    form = canonical_form(STORE.schema(name))
    assert STORE.fingerprint(name).hex() == fastavro_fingerprint(form, "CRC-64-AVRO")
    assert STORE.by_fingerprint(STORE.fingerprint(name)) == name


def test_canonical_form_drops_docs_and_defaults() -> None:
    schema = {
        "type": "record",
        "name": "R",
        "namespace": "net.i24",
        "doc": "ignored",
        "fields": [{"name": "a", "type": ["null", "string"], "default": None, "doc": "x"}],
    }
    expected = (
        '{"name":"net.i24.R","type":"record","fields":[{"name":"a","type":["null","string"]}]}'
    )
    assert canonical_form(schema) == expected


# --- single-object encoding ---------------------------------------------------


def test_single_object_layout() -> None:
    data = STORE.encode_single(MESSAGE, RECORD)
    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:10] == STORE.fingerprint(MESSAGE)
    assert data[10:] == STORE.encode(MESSAGE, RECORD)
    assert STORE.decode_single(data) == (MESSAGE, RECORD)


def test_unknown_fingerprint() -> None:
    data = STORE.encode_single(MESSAGE, RECORD)
    with pytest.raises(UnknownSchemaError) as exc:
        STORE.decode_single(MAGIC + b"\x00" * 8 + data[10:])
    assert _kind(exc) is UnknownSchemaError
    with pytest.raises(UnknownSchemaError):
        STORE.by_fingerprint(b"\x00" * 8)
    with pytest.raises(UnknownSchemaError):
        STORE.schema("net.i24.Nothing")


@pytest.mark.parametrize(
    "data", [b"", b"\xc3", b"\xc3\x02" + b"\x00" * 10, b"Obj\x01" + b"\x00" * 8]
)
def test_wrong_magic_or_short_header(data: bytes) -> None:
    with pytest.raises(CodecError) as exc:
        STORE.decode_single(data)
    assert _kind(exc) is CodecError


def test_trailing_bytes() -> None:
    data = STORE.encode_single(MESSAGE, RECORD)
    with pytest.raises(TrailingBytesError):
        STORE.decode_single(data + b"\x00")
    with pytest.raises(TrailingBytesError):
        STORE.decode(MESSAGE, data[10:] + b"\x00")


def test_truncated() -> None:
    data = STORE.encode_single(MESSAGE, RECORD)
    for cut in range(10, len(data)):
        with pytest.raises(SchemaMismatchError):
            STORE.decode_single(data[:cut])


def test_missing_field_is_named() -> None:
    record = {k: v for k, v in RECORD.items() if k != "text"}
    with pytest.raises(SchemaMismatchError, match="text"):
        STORE.encode(MESSAGE, record)


def test_field_with_default_must_still_be_given() -> None:
    record = {k: v for k, v in RECORD.items() if k != "in_reply_to"}
    with pytest.raises(SchemaMismatchError, match="in_reply_to"):
        STORE.encode_single(MESSAGE, record)


def test_extra_field_is_named() -> None:
    with pytest.raises(SchemaMismatchError, match="priority"):
        STORE.encode(MESSAGE, {**RECORD, "priority": 1})


def test_wrong_type() -> None:
    with pytest.raises(SchemaMismatchError):
        STORE.encode(MESSAGE, {**RECORD, "text": 42})


def test_expected_schema_is_enforced() -> None:
    data = STORE.encode_single(MESSAGE, RECORD)
    with pytest.raises(SchemaMismatchError, match=r"net\.i24\.DbQuery"):
        STORE.decode_single(data, expected="net.i24.DbQuery")


def test_non_canonical_encoding_is_refused() -> None:
    """A long written as a two-byte varint (0x80 0x00 instead of 0x00) decodes in
    fastavro but is not the one encoding of the record."""
    body = STORE.encode(MESSAGE, {**RECORD, "in_reply_to": None})
    assert body.endswith(b"\x00\x00")  # empty attachments block, null branch
    with pytest.raises(SchemaMismatchError, match="canonical"):
        STORE.decode(MESSAGE, body[:-2] + b"\x80\x00\x00")


def test_oversized_input_is_refused_before_decoding() -> None:
    small = SchemaStore(STORE.directory, max_size=64)
    with pytest.raises(OversizedError):
        small.decode_single(b"\xc3\x01" + b"\xff" * 100)
    with pytest.raises(OversizedError):
        small.decode(MESSAGE, b"\x00" * 65)
    with pytest.raises(OversizedError):
        small.encode_single(MESSAGE, {**RECORD, "text": "x" * 64})


def test_forged_huge_length_fails_fast() -> None:
    """A string length of ~2^62 must fail on EOF, not try to allocate it."""
    with pytest.raises(SchemaMismatchError):
        STORE.decode(MESSAGE, b"\xfe\xff\xff\xff\xff\xff\xff\xff\x7f")
    with pytest.raises(SchemaMismatchError):  # attachments: a forged item count
        STORE.decode(MESSAGE, b"\x00\x00\x00\xfe\xff\xff\xff\xff\xff\xff\xff\x7f")


# --- bounded, total decoding: any bytes give an i24net error or a record --------

_FINGERPRINTS = [STORE.fingerprint(name) for name in STORE.names()]
_VALID = [STORE.encode_single(MESSAGE, RECORD)]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(10, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=600, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        st.builds(lambda fp, body: MAGIC + fp + body, st.sampled_from(_FINGERPRINTS), st.binary()),
        _mutated(),
    )
)
def test_any_bytes_raise_only_i24net_errors(data: bytes) -> None:
    try:
        name, record = STORE.decode_single(data)
    except I24Error:
        return
    assert STORE.encode_single(name, record) == data


# --- loading ----------------------------------------------------------------------


def _write(directory: Path, schema: dict[str, Any], name: str | None = None) -> None:
    fullname = f"{schema['namespace']}.{schema['name']}"
    (directory / f"{name or fullname}.avsc").write_text(json.dumps(schema), "utf-8")


def _record(fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "T", "namespace": "net.i24", "fields": fields}


def test_file_must_be_named_after_its_type(tmp_path: Path) -> None:
    _write(tmp_path, _record([{"name": "a", "type": "long"}]), name="net.i24.Other")
    with pytest.raises(CodecError, match=r"net\.i24\.T\.avsc"):
        SchemaStore(tmp_path)


def test_invalid_schema_file(tmp_path: Path) -> None:
    _write(tmp_path, _record([{"name": "a", "type": "net.i24.Missing"}]))
    with pytest.raises(CodecError, match="cannot load"):
        SchemaStore(tmp_path)


def test_arrays_of_zero_byte_items_are_refused(tmp_path: Path) -> None:
    """They would let a few forged bytes claim billions of free items."""
    _write(tmp_path, _record([{"name": "a", "type": {"type": "array", "items": "null"}}]))
    with pytest.raises(CodecError, match="zero bytes"):
        SchemaStore(tmp_path)


def test_history_needs_a_current_version(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    _write(tmp_path / "history", _record([]), name="net.i24.T.v1")
    with pytest.raises(CodecError, match="must exist"):
        SchemaStore(tmp_path)


def test_history_is_readable_but_never_written(tmp_path: Path) -> None:
    v1 = _record([{"name": "a", "type": "long"}])
    v2 = _record([{"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": "x"}])
    (tmp_path / "history").mkdir()
    _write(tmp_path / "history", v1, name="net.i24.T.v1")
    _write(tmp_path, v2)
    store = SchemaStore(tmp_path)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(v1), {"a": 5})
    fp = fingerprint64(canonical_form(v1)).to_bytes(8, "little")
    assert store.decode_single(MAGIC + fp + out.getvalue()) == ("net.i24.T", {"a": 5, "b": "x"})
    assert store.names() == ["net.i24.T"]
    assert store.fingerprint("net.i24.T") != fp


def test_only_records_travel_alone() -> None:
    with pytest.raises(SchemaMismatchError, match="not a record"):
        STORE.encode("net.i24.MessageKind", "DIFFUSION")  # type: ignore[arg-type]
