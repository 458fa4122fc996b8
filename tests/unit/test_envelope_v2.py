"""Envelope v2 (docs/envelope.md part 2): seal -> route -> open in both suites, the key
commitment, metadata out of the clear, the refusals of part 2 §6, and coexistence with v1."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world

from i24net.envelope import (
    VERSIONS,
    Handling,
    HandlingCode,
    Header,
    Language,
    Precedence,
    Receiver,
    Recipients,
    Reliability,
    Router,
    Sender,
    envelope_version,
    new_message_id,
)
from i24net.envelope import _crypto as c
from i24net.envelope import _v2 as v2
from i24net.errors import EnvelopeError, Reason, VerificationError
from i24net.keys import KemSuite

HYBRID = KemSuite.MLKEM768_X25519
# FR and GS hybrid, JP plain X25519, BR hybrid: one broadcast, two suites
W = make_world(kem={"FR": HYBRID, "GS": HYBRID, "JP": KemSuite.X25519, "BR": HYBRID})
SECRET_TEXT = "ne pas transmettre à la presse"


def header(w: World = W, *, created: int = T0, ttl: int = 3_600_000, **kw: object) -> Header:
    h = Header(
        message_id=new_message_id(created, counter_rng(f"v2 id{created}{ttl}{sorted(kw)}")),
        sender="FR",
        sender_key_id=w.secrets["FR"].signing_key_id,
        recipients=Recipients.to("BR", "JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.IMMEDIATE,
        created_ms=created,
        expires_ms=created + ttl,
        language=Language.FR,
        payload_fingerprint=PAYLOAD_FP,
        handling=(HandlingCode(Handling.OTHER, SECRET_TEXT),),
        excluded=("BE",),
        source_reliability=Reliability.B,
        source_accuracy=2,
        offence_categories=("DRUG_TRAFFICKING",),
    )
    return dataclasses.replace(h, **kw)  # type: ignore[arg-type]


def sealed(w: World = W, h: Header | None = None, payload: bytes = b"payload") -> bytes:
    gs = w.directory.current_encryption_key("GS", T0, version=2)
    return Sender(w.secrets["FR"], gs, store=w.store).seal(h or header(w), payload)


def router(w: World = W) -> Router:
    return Router(w.secrets["GS"], w.directory, w.window(), store=w.store)


def receiver(w: World = W, code: str = "JP") -> Receiver:
    return Receiver(w.secrets[code], w.directory, w.window(), store=w.store)


def refused(reason: Reason, fn: object, *args: object) -> VerificationError:
    with pytest.raises(VerificationError) as e:
        fn(*args)  # type: ignore[operator]
    assert e.value.reason is reason, e.value.detail
    return e.value


SEALED = sealed()
INBOUND = router().open(SEALED)
DELIVERED = router().deliver(INBOUND, ["BR", "JP"])


def test_round_trip_in_each_recipients_suite() -> None:
    assert VERSIONS == (1, 2) and envelope_version(SEALED) == 2
    v1 = make_world()
    data1 = Sender(v1.secrets["FR"], v1.directory.current_encryption_key("GS", T0)).seal(
        header(v1), b"payload"
    )
    assert envelope_version(data1) == 1
    assert envelope_version(b"\xc3\x01" + bytes(8)) is None and envelope_version(b"") is None
    assert INBOUND.version == 2 and INBOUND.header == header() and INBOUND.payload == b"payload"
    for code, suite in (("JP", KemSuite.X25519), ("BR", HYBRID)):
        data = DELIVERED[code]
        assert envelope_version(data) == 2
        p = v2.CodecV2(W.store, 1 << 21, 1 << 14).parse(data)
        assert p.suite is suite and len(p.wrapped) == v2.WRAPPED_SIZE[suite]
        opened = receiver(code=code).open(data)
        assert (opened.version, opened.payload) == (2, b"payload")
        assert opened.header == header()  # the hidden fields are restored
        assert opened.attestation.recipients == ("BR", "JP")
    assert v2.WRAPPED_SIZE == {KemSuite.X25519: 80, HYBRID: 1168}


def test_the_broker_sees_no_hidden_metadata() -> None:
    """Addressing, handling text, grading and offence categories are not in clear."""
    p = v2.CodecV2(W.store, 1 << 21, 1 << 14).parse(DELIVERED["JP"])
    clear = p.header_bytes + (p.attestation or b"")
    for secret in (SECRET_TEXT.encode(), b"BE", b"DRUG", b"payload"):
        assert secret not in DELIVERED["JP"] and secret not in SEALED
    assert b"BE" not in clear
    v1 = make_world()
    gs1 = v1.directory.current_encryption_key("GS", T0)
    data1 = Sender(v1.secrets["FR"], gs1).seal(header(v1), b"payload")
    assert SECRET_TEXT.encode() in data1  # what v1 shows, for contrast


def test_codec_is_the_generic_avro_encoding() -> None:
    """The hand-written codec and the generic SchemaStore agree on every v2 record."""
    for data in (SEALED, DELIVERED["JP"], DELIVERED["BR"]):
        name, rec = W.store.decode_single(data, expected=v2.ENVELOPE_V2)
        assert W.store.encode_single(name, rec) == data
        name, hd = W.store.decode_single(rec["header"], expected=v2.HEADER_V2)
        assert W.store.encode_single(name, hd) == rec["header"]
        assert hd["key_commitment"] == v2.key_commitment(INBOUND._content_key)
    content = v2.CodecV2(W.store, 1 << 21, 1 << 14).encode_content(header(), b"payload")
    name, sc = W.store.decode_single(content, expected=v2.SEALED_CONTENT)
    assert sc["payload"] == b"payload" and sc["handling"][0]["text"] == SECRET_TEXT
    assert W.store.encode_single(name, sc) == content


def _rewrap(data: bytes, key: bytes, code: str = "JP") -> bytes:
    """``data`` with its wrap replaced by a valid HPKE seal of ``key`` to ``code``: what
    anyone can make (Base mode is unauthenticated), including a sender who later wants
    the message to mean something else."""
    codec = v2.CodecV2(W.store, 1 << 21, 1 << 14)
    p = codec.parse(data)
    peer = W.directory.current_encryption_key(code, T0, version=2)
    assert peer.suite is not None
    digest = v2.message_digest(p.header_bytes, p.nonce, p.ciphertext)
    info = v2.wrap_info(v2.LABEL_WRAP_RECIPIENT, "GS", code, peer.key_id, digest)
    wrapped = v2.wrap(peer.suite, peer.public_key, key, info)  # type: ignore[arg-type]
    assert p.attestation is not None and p.attestation_signature is not None
    return b"".join(
        (
            *codec.body_parts(p.header_bytes, p.signature, p.nonce, p.ciphertext),
            codec.wrap_record(peer.suite, code, peer.key_id, wrapped),
            b"\x02" + len_prefixed(p.attestation),
            b"\x02" + len_prefixed(p.attestation_signature),
        )
    )


def len_prefixed(b: bytes) -> bytes:
    from i24net.envelope._wire import bytes_field

    return bytes_field(b)


def test_a_wrap_of_another_key_is_refused_by_the_commitment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = bytes(range(32))
    assert receiver().open(_rewrap(DELIVERED["JP"], INBOUND._content_key)).payload == b"payload"
    e = refused(Reason.DECRYPT_FAILED, receiver().open, _rewrap(DELIVERED["JP"], other))
    assert "key commitment" in e.detail
    # Without the check, the reader would decrypt with the other key: the commitment,
    # not the wrap, is what says which key is the message's.
    used: list[bytes] = []
    real = c.open_body

    def spy(key: bytes, *args: bytes) -> bytes:
        used.append(key)
        return real(key, *args)

    monkeypatch.setattr(v2, "check_commitment", lambda key, commitment: None)
    monkeypatch.setattr(c, "open_body", spy)
    e = refused(Reason.DECRYPT_FAILED, receiver().open, _rewrap(DELIVERED["JP"], other))
    assert used == [v2.body_key(other)] and "key commitment" not in e.detail


def test_a_tampered_commitment_breaks_the_sender_signature() -> None:
    p = v2.CodecV2(W.store, 1 << 21, 1 << 14).parse(SEALED)
    hb = bytearray(p.header_bytes)
    hb[-1] ^= 1  # the last byte of the commitment
    data = SEALED.replace(p.header_bytes, bytes(hb))
    refused(Reason.BAD_SIGNATURE, router().open, data)


def test_recipients_enforce_addressing_on_the_decrypted_header() -> None:
    """The router delivers to a station the signed header excludes: the station refuses."""
    h = header(excluded=("BE", "JP"), recipients=Recipients.all())
    inbound = router().open(sealed(h=h))
    out = router().deliver(inbound, ["JP", "BR"])
    assert receiver(code="BR").open(out["BR"]).header.excluded == ("BE", "JP")
    refused(Reason.NOT_ADDRESSED, receiver().open, out["JP"])
    h2 = header(recipients=Recipients.to("BR"))
    out = router().deliver(router().open(sealed(h=h2)), ["JP"])
    refused(Reason.NOT_ADDRESSED, receiver().open, out["JP"])


def test_refusals() -> None:
    jp = DELIVERED["JP"]
    refused(Reason.WRONG_RECIPIENT, receiver(code="BR").open, jp)  # JP's wrap
    rc = receiver()
    rc.open(jp)
    refused(Reason.REPLAYED, rc.open, jp)
    late = make_world(kem={"FR": HYBRID, "GS": HYBRID, "JP": KemSuite.X25519, "BR": HYBRID})
    late.clock.advance(2 * 3_600_000)
    refused(Reason.EXPIRED, receiver(late).open, jp)
    refused(Reason.BAD_VERSION, receiver().open, b"\xc3\x01" + bytes(8) + jp[10:])
    # the sender's v2 envelope read as if it were a delivery: no attestation
    refused(Reason.BAD_ATTESTATION, receiver().open, SEALED)
    # a delivery fed back to the router
    refused(Reason.MALFORMED, router().open, jp)


def test_the_attestation_label_is_per_version() -> None:
    """A v1 attestation signature over the same bytes does not verify in v2."""
    codec = v2.CodecV2(W.store, 1 << 21, 1 << 14)
    p = codec.parse(DELIVERED["JP"])
    assert p.attestation is not None
    v1sig = W.secrets["GS"].signing.sign(c.LABEL_ATTESTATION + p.attestation).signature
    data = DELIVERED["JP"][: -len(p.attestation_signature or b"")] + v1sig
    refused(Reason.BAD_ATTESTATION, receiver().open, data)


def test_a_wrong_suite_or_key_id_is_a_wrong_recipient() -> None:
    codec = v2.CodecV2(W.store, 1 << 21, 1 << 14)
    p = codec.parse(SEALED)
    gs = W.secrets["GS"]
    assert gs.kem_key_id is not None
    for suite, kid in ((KemSuite.X25519, gs.kem_key_id), (HYBRID, gs.encryption_key_id)):
        wrapped = bytes(v2.WRAPPED_SIZE[suite])
        data = b"".join(
            (
                *codec.body_parts(p.header_bytes, p.signature, p.nonce, p.ciphertext),
                codec.wrap_record(suite, "GS", kid, wrapped),
                b"\x00\x00",
            )
        )
        refused(Reason.WRONG_RECIPIENT, router().open, data)


def test_delivery_follows_the_inbound_version_and_recipients_keys() -> None:
    mixed = make_world(kem={"FR": HYBRID, "GS": HYBRID, "JP": None, "BR": HYBRID})
    r = router(mixed)
    inbound = r.open(sealed(mixed))
    e = refused(Reason.UNKNOWN_RECIPIENT, r.deliver, inbound, ["JP"])
    assert "JP" in e.detail
    # a v1 sender envelope is delivered in v1, even to a station with a v2 key
    gs1 = mixed.directory.current_encryption_key("GS", T0)
    data1 = Sender(mixed.secrets["FR"], gs1).seal(header(mixed), b"payload")
    r = router(mixed)
    out = r.deliver(r.open(data1), ["BR", "JP"])
    assert {envelope_version(b) for b in out.values()} == {1}
    assert receiver(mixed, "BR").open(out["BR"]).version == 1


def test_originate_picks_the_highest_common_version() -> None:
    mixed = make_world(kem={"FR": HYBRID, "GS": HYBRID, "JP": None, "BR": HYBRID})
    gs = mixed.secrets["GS"]
    h = header(mixed, sender="GS", sender_key_id=gs.signing_key_id)
    assert {envelope_version(b) for b in router(mixed).originate(h, b"n", ["BR"]).values()} == {2}
    out = router(mixed).originate(h, b"n", ["BR", "JP"])
    assert {envelope_version(b) for b in out.values()} == {1}
    out = router(mixed).originate(h, b"n", ["BR"], version=2)
    opened = receiver(mixed, "BR").open(out["BR"])
    assert (opened.version, opened.header, opened.payload) == (2, h, b"n")
    with pytest.raises(EnvelopeError):
        router(mixed).originate(h, b"n", ["BR"], version=3)


def test_seal_refuses_bad_headers() -> None:
    with pytest.raises(EnvelopeError):
        sealed(h=header(sender_key_id="FR-20260101-00000000"))
    with pytest.raises(EnvelopeError):
        sealed(h=header(expires_ms=T0))


def test_a_rotated_station_opens_deliveries_to_its_previous_kem_key() -> None:
    """Queued deliveries wrapped to the old KEM key open while the old set is held."""
    from world import station_secrets

    from i24net.directory import Directory, StationRecord
    from i24net.stations import all_stations

    new_jp = station_secrets("JP", T0, gen=1, kem=KemSuite.X25519)
    rec = W.directory.record("JP")
    rotated = StationRecord.for_station(
        all_stations()["JP"], [new_jp.public()], valid_from_ms=T0, issued_ms=T0
    )
    both = dataclasses.replace(
        rec, encryption_keys=rec.encryption_keys + rotated.encryption_keys, serial=2
    )
    d = Directory([*(r for r in W.directory if r.station != "JP"), both])
    assert d.current_encryption_key("JP", T0, version=2).key_id == new_jp.kem_key_id
    old_delivery = DELIVERED["JP"]  # wrapped to JP's previous KEM key
    refused(
        Reason.WRONG_RECIPIENT, Receiver(new_jp, d, W.window(), store=W.store).open, old_delivery
    )
    held = Receiver(new_jp, d, W.window(), previous=[W.secrets["JP"]], store=W.store)
    assert held.open(old_delivery).payload == b"payload"
    # and new deliveries go to the new key
    r = Router(W.secrets["GS"], d, W.window(), store=W.store)
    out = r.deliver(r.open(sealed()), ["JP"])
    assert Receiver(new_jp, d, W.window(), store=W.store).open(out["JP"]).payload == b"payload"


def test_the_hidden_fields_count_against_max_header() -> None:
    from i24net.envelope import Limits
    from i24net.errors import OversizedError

    gs = W.directory.current_encryption_key("GS", T0, version=2)
    big = header(handling=(HandlingCode(Handling.OTHER, "x" * 3000),))
    with pytest.raises(OversizedError):
        Sender(W.secrets["FR"], gs, limits=Limits(max_header=2048)).seal(big, b"p")
    assert Sender(W.secrets["FR"], gs, limits=Limits(max_header=4096)).seal(big, b"p")


@pytest.mark.parametrize("which", ["JP", "BR"])
def test_every_single_byte_change_is_refused_with_a_reason(which: str) -> None:
    """No corruption of a delivery opens, and none escapes as another exception."""
    data = DELIVERED[which]
    step = max(1, len(data) // 150)
    for i in range(0, len(data), step):
        bad = bytearray(data)
        bad[i] ^= 0x41
        with pytest.raises(VerificationError):
            receiver(code=which).open(bytes(bad))


def test_a_valid_wrap_for_a_station_the_router_did_not_attest_is_refused() -> None:
    """BR knows K and re-wraps it to JP (anyone can, Base mode): JP is not in the signed
    attestation, so JP refuses, although the wrap and the commitment are valid."""
    r = router()
    only_br = r.deliver(r.open(sealed(h=header(recipients=Recipients.all()))), ["BR"])["BR"]
    assert receiver(code="BR").open(only_br, record=False).payload == b"payload"
    inbound = router().open(sealed(h=header(recipients=Recipients.all())))
    forwarded = _rewrap(only_br, inbound._content_key, "JP")
    refused(Reason.WRONG_RECIPIENT, receiver().open, forwarded)
