"""The hand-written envelope codec (``_wire``) against the generic SchemaStore codec.

Both must accept exactly the same bytes and produce exactly the same bytes:
the hand-written one is only faster (no decode-then-re-encode).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, make_world

from i24net.envelope import (
    Attestation,
    Decision,
    Handling,
    HandlingCode,
    Header,
    Language,
    Limits,
    Precedence,
    Receiver,
    Recipients,
    RecipientsMode,
    Reliability,
    Router,
    Sender,
    new_message_id,
)
from i24net.envelope import _wire as wire
from i24net.envelope._envelope import _Codec, _Parsed
from i24net.errors import EnvelopeError, Reason, VerificationError

W = make_world()
FAST = _Codec(W.store, Limits())
SLOW = _Codec(W.store, Limits(), fast=False)
KINDS = W.store.schema("net.i24.MessageKind")["symbols"]
OFFENCES = W.store.schema("net.i24.OffenceCategory")["symbols"]
SUSPICIOUS = [0x00, 0x01, 0x02, 0x7F, 0x80, 0x81, 0xFF, 0xC3]

names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=6)
codes = st.lists(names, max_size=3, unique=True).map(lambda xs: tuple(sorted(xs)))


@st.composite
def headers(draw: st.DrawFn) -> Header:
    created = draw(st.integers(0, (1 << 48) - 1))
    mode = draw(st.sampled_from(list(RecipientsMode)))
    stations = draw(codes.filter(bool)) if mode is RecipientsMode.STATIONS else ()
    handling = draw(
        st.lists(
            st.sampled_from(list(Handling)).flatmap(
                lambda h: st.just(HandlingCode(h, "t€xt" if h is Handling.OTHER else None))
            ),
            max_size=3,
        )
    )
    return Header(
        message_id=new_message_id(created, lambda n: draw(st.binary(min_size=n, max_size=n))),
        sender=draw(names),
        sender_key_id=draw(names),
        recipients=Recipients(mode, stations, "EUROPE" if mode is RecipientsMode.REGION else None),
        kind=draw(st.sampled_from(KINDS)),
        precedence=draw(st.sampled_from(list(Precedence))),
        created_ms=created,
        expires_ms=created + draw(st.integers(1, Limits().max_lifetime_ms)),
        language=draw(st.sampled_from(list(Language))),
        payload_fingerprint=draw(st.binary(min_size=8, max_size=8)),
        handling=tuple(handling),
        excluded=draw(codes),
        source_reliability=draw(st.none() | st.sampled_from(list(Reliability))),
        source_accuracy=draw(st.none() | st.integers(1, 4)),
        offence_categories=tuple(draw(st.lists(st.sampled_from(OFFENCES), max_size=3))),
    )


def mutate(data: st.DataObject, blob: bytes, start: int = 0) -> bytes:
    b = bytearray(blob)
    i = data.draw(st.integers(start, len(b)))
    op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
    if op == "insert" or i == len(b):
        b[i:i] = bytes([data.draw(st.sampled_from(SUSPICIOUS))])
    elif op == "delete":
        del b[i]
    elif op == "set":
        b[i] = data.draw(st.sampled_from(SUSPICIOUS))
    else:
        b[i] ^= 1 << data.draw(st.integers(0, 7))
    return bytes(b)


def test_the_default_store_uses_the_hand_written_codec() -> None:
    assert FAST.fast and not SLOW.fast
    assert wire.layout_matches(W.store)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers())
def test_header_encoding_is_the_generic_one(h: Header) -> None:
    hb = FAST.encode_header(h)
    assert hb == SLOW.encode_header(h)
    assert FAST._hdr.decode(hb) == h


def outcome(fn: object, *args: object) -> object:
    try:
        return ("ok", fn(*args))  # type: ignore[operator]
    except VerificationError as exc:
        return ("refused", exc.reason)


def parsed(codec: _Codec, blob: bytes) -> object:
    r = outcome(codec.parse, blob)
    if r[0] == "ok":  # type: ignore[index]
        p: _Parsed = r[1]  # type: ignore[index]
        return ("ok", p.header_bytes, p.header, p.signature, p.nonce, p.ciphertext, p.wrap,
                p.attestation, p.attestation_signature)  # fmt: skip
    return r


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers(), st.data())
def test_both_codecs_refuse_and_accept_the_same_header_bytes(
    h: Header, data: st.DataObject
) -> None:
    hb = mutate(data, FAST.encode_header(h), start=10)

    def decode_fast() -> object:
        try:
            return FAST._hdr.decode(hb)
        except ValueError:
            return "refused"

    def decode_slow() -> object:
        try:
            return Header.from_avro(W.store.decode_single(hb, expected="net.i24.Header")[1])
        except (ValueError, KeyError, Exception):
            return "refused"

    assert decode_fast() == decode_slow()


SEALED = Sender(W.secrets["FR"], W.directory.current_encryption_key("GS", T0), store=W.store).seal(
    Header(
        new_message_id(T0),
        "FR",
        W.secrets["FR"].signing_key_id,
        Recipients.to("BR", "JP"),
        "POLICE_MESSAGE",
        Precedence.ROUTINE,
        T0,
        T0 + 3_600_000,
        Language.EN,
        PAYLOAD_FP,
        handling=(HandlingCode(Handling.OTHER, "x"),),
        source_accuracy=3,
    ),
    b"payload",
)
_R = Router(W.secrets["GS"], W.directory, W.window(), store=W.store)
DELIVERED = _R.deliver(_R.open(SEALED), ["BR", "JP"], review_id="R-9")["JP"]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([SEALED, DELIVERED]), st.data())
def test_both_codecs_parse_mutated_envelopes_alike(blob: bytes, data: st.DataObject) -> None:
    m = mutate(data, blob)
    assert parsed(FAST, m) == parsed(SLOW, m)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_both_codecs_parse_arbitrary_bodies_alike(body: bytes) -> None:
    m = SEALED[:10] + body
    assert parsed(FAST, m) == parsed(SLOW, m)


def test_attestation_codec_matches_the_generic_one() -> None:
    p = FAST.parse(DELIVERED)
    assert p.attestation is not None
    att = FAST.decode_attestation(p.attestation)
    assert att == SLOW.decode_attestation(p.attestation)
    assert att.review_id == "R-9" and att.recipients == ("BR", "JP")
    assert FAST.encode_attestation(att) == SLOW.encode_attestation(att) == p.attestation
    for review in (None, "R" * 200):
        a2 = Attestation(
            "GS", "k", att.message_id, bytes(32), Decision.REVIEW_APPROVED, (), 1 << 62, review
        )
        assert FAST.encode_attestation(a2) == SLOW.encode_attestation(a2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_both_codecs_decode_mutated_attestations_alike(data: st.DataObject) -> None:
    p = FAST.parse(DELIVERED)
    assert p.attestation is not None
    m = mutate(data, p.attestation)
    assert outcome(FAST.decode_attestation, m) == outcome(SLOW.decode_attestation, m)


def test_non_canonical_encodings_are_refused() -> None:
    h = FAST.parse(SEALED).header_bytes
    # message_id length 26 (0x34) written as a two-byte varint
    padded = h[:10] + b"\xb4\x00" + h[11:]
    with pytest.raises(ValueError):
        FAST._hdr.decode(padded)
    with pytest.raises(ValueError):
        FAST._hdr.decode(h + b"\x00")
    # the recipients array BR, JP written as two blocks of one
    one_block = b"\x04\x04BR\x04JP\x00"
    assert one_block in h
    with pytest.raises(ValueError):
        FAST._hdr.decode(h.replace(one_block, b"\x02\x04BR\x02\x04JP\x00"))
    with pytest.raises(ValueError):  # negative block count
        FAST._hdr.decode(h.replace(one_block, b"\x03\x08\x04BR\x04JP\x00"))
    with pytest.raises(ValueError):
        wire.read_long(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(ValueError):
        wire.read_long(b"\xff" * 9 + b"\x02", 0)
    assert wire.read_long(b"\xff" * 9 + b"\x01", 0) == (-(1 << 63), 10)
    assert wire.read_long(wire.long_bytes((1 << 63) - 1), 0)[0] == (1 << 63) - 1


def test_seal_refuses_values_outside_the_schema() -> None:
    import dataclasses

    h = FAST.parse(SEALED).header
    for bad in (dict(offence_categories=("NOT_AN_OFFENCE",)), dict(kind="NOT_A_KIND")):
        with pytest.raises(EnvelopeError):
            FAST.encode_header(dataclasses.replace(h, **bad))  # type: ignore[arg-type]


def test_generic_codec_still_round_trips() -> None:
    """The fallback for a store whose records have another layout."""
    r = Router(W.secrets["GS"], W.directory, W.window(), store=W.store)
    r._codec = _Codec(W.store, Limits(), fast=False)
    rc = Receiver(W.secrets["JP"], W.directory, W.window(), store=W.store)
    rc._codec = _Codec(W.store, Limits(), fast=False)
    out = r.deliver(r.open(SEALED), ["BR", "JP"], review_id="R-9")
    assert out["JP"] == DELIVERED
    assert rc.open(out["JP"]).payload == b"payload"
    with pytest.raises(VerificationError) as e:
        rc.open(out["JP"][:-1])
    assert e.value.reason is Reason.MALFORMED
