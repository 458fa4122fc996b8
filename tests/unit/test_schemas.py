"""The schema files: conventions, kinds, a round trip of each, vectors, evolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from i24net.schemas import KIND_SCHEMAS, SchemaStore

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
VECTORS = ROOT / "tests" / "vectors" / "avro"
STORE = SchemaStore.default()


def sample(schema: Any, named: dict[str, Any]) -> Any:
    """A deterministic record that fills every field, every array with one item."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return sample(branches[0], named) if branches else None
    if isinstance(schema, str):
        if schema in named:
            return sample(named[schema], named)
        scalars: dict[str, Any] = {
            "null": None,
            "boolean": True,
            "int": 7,
            "long": 1_767_225_600_000,
        }
        scalars |= {"float": 0.5, "double": 0.25, "string": "sample", "bytes": b"\x00\xff"}
        return scalars[schema]
    kind = schema["type"]
    if kind in ("record", "error"):
        named[schema["name"]] = schema
        return {f["name"]: sample(f["type"], named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][-1]
    if kind == "fixed":
        named[schema["name"]] = schema
        return bytes(range(schema["size"]))
    if kind == "array":
        return [sample(schema["items"], named)]
    if kind == "map":
        return {"key": sample(schema["values"], named)}
    return sample(kind, named)


def test_every_file_holds_one_named_type_of_its_own_name() -> None:
    for path in SCHEMAS.glob("*.avsc"):
        doc = json.loads(path.read_text("utf-8"))
        assert doc["namespace"] == "net.i24", path
        assert f"net.i24.{doc['name']}" == path.stem, path
    assert sorted(p.stem for p in SCHEMAS.glob("*.avsc")) == STORE.names()


def test_message_kind_enum_and_kind_schemas_agree() -> None:
    symbols = STORE.schema("net.i24.MessageKind")["symbols"]
    assert symbols == list(KIND_SCHEMAS)
    assert set(KIND_SCHEMAS.values()) <= set(STORE.names())
    assert len(set(KIND_SCHEMAS.values())) == len(KIND_SCHEMAS)


def _fields(fullname: str) -> set[str]:
    return {f["name"] for f in STORE.schema(fullname)["fields"]}


def test_police_essentials_are_present() -> None:
    assert {"refugee_status", "family_name", "date_of_birth"} <= _fields("net.i24.Person")
    red = _fields("net.i24.RedNoticeRequest")
    assert {"arrest_warrant", "offences", "subject", "case"} <= red
    assert "legal_basis" in _fields("net.i24.ArrestWarrant")
    assert "facts" in _fields("net.i24.CaseInfo")


RECORDS = [name for name in STORE.names() if STORE.schema(name)["type"] == "record"]


@pytest.mark.parametrize("fullname", RECORDS)
def test_every_record_schema_round_trips_a_sample(fullname: str) -> None:
    """Enums and fixed types travel inside records, so records cover them."""
    record = sample(STORE.schema(fullname), {})
    data = STORE.encode_single(fullname, record)
    assert STORE.decode_single(data, expected=fullname) == (fullname, record)
    assert STORE.decode(fullname, data[10:]) == record


def test_red_notice_vector_pins_the_bytes() -> None:
    vector = json.loads((VECTORS / "red_notice_request.json").read_text("utf-8"))
    data = bytes.fromhex(vector["single_object_hex"])
    assert STORE.encode_single(vector["schema"], vector["record"]) == data
    assert STORE.fingerprint(vector["schema"]).hex() == vector["fingerprint_hex"]
    assert STORE.decode_single(data) == (vector["schema"], vector["record"])


def test_police_message_v1_is_read_as_v2() -> None:
    """A v1 writer (no in_reply_to) is resolved to the current reader schema."""
    vector = json.loads((VECTORS / "police_message_v1.json").read_text("utf-8"))
    data = bytes.fromhex(vector["single_object_hex"])
    assert data[2:10] != STORE.fingerprint("net.i24.PoliceMessage")
    assert STORE.by_fingerprint(data[2:10]) == "net.i24.PoliceMessage"
    name, record = STORE.decode_single(data, expected="net.i24.PoliceMessage")
    assert name == "net.i24.PoliceMessage"
    assert record == {**vector["record_v1"], "in_reply_to": None}
