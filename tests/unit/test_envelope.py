"""Seal -> route -> open, and every refusal reason of docs/envelope.md §6."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world

from i24net.directory import KeyRecord, Status
from i24net.envelope import (
    Decision,
    Header,
    Language,
    Limits,
    Precedence,
    Receiver,
    Recipients,
    Router,
    Sender,
    new_message_id,
    open_delivery,
    seal,
)
from i24net.errors import (
    EnvelopeError,
    I24Error,
    OversizedError,
    Reason,
    VerificationError,
)
from i24net.stations import MEMBER_COUNTRIES

W = make_world()


def header(w: World, *, sender: str = "FR", created: int = T0, ttl: int = 3_600_000) -> Header:
    return Header(
        message_id=new_message_id(created, counter_rng(f"id{created}{sender}{ttl}")),
        sender=sender,
        sender_key_id=w.secrets[sender].signing_key_id,
        recipients=Recipients.to("BR", "JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=created,
        expires_ms=created + ttl,
        language=Language.EN,
        payload_fingerprint=PAYLOAD_FP,
    )


def sealed(w: World = W, payload: bytes = b"payload", **kw: int) -> bytes:
    gs = w.directory.current_encryption_key("GS", T0)
    return Sender(w.secrets["FR"], gs, store=w.store).seal(header(w, **kw), payload)


def router(w: World = W) -> Router:
    return Router(w.secrets["GS"], w.directory, w.window(), store=w.store)


def receiver(w: World = W, code: str = "JP") -> Receiver:
    return Receiver(w.secrets[code], w.directory, w.window(), store=w.store)


SEALED = sealed()
DELIVERED = router().deliver(router().open(SEALED), ["BR", "JP"])["JP"]


def reason(excinfo: pytest.ExceptionInfo[VerificationError]) -> Reason:
    return excinfo.value.reason


def test_round_trip() -> None:
    r = router()
    inbound = r.open(SEALED)
    assert inbound.payload == b"payload"
    out = r.deliver(inbound, ["JP", "BR"], decision=Decision.REVIEW_APPROVED, review_id="R-1")
    opened = receiver().open(out["JP"])
    assert opened.payload == b"payload"
    assert opened.header == inbound.header
    assert opened.attestation.recipients == ("BR", "JP")
    assert opened.attestation.review_id == "R-1"
    assert receiver(code="BR").open(out["BR"]).payload == b"payload"


def test_one_shot_functions() -> None:
    gs = W.directory.current_encryption_key("GS", T0)
    data = seal(header(W), b"x", W.secrets["FR"], gs, store=W.store)
    out = router().deliver(router().open(data), ["JP"])
    assert open_delivery(out["JP"], W.secrets["JP"], W.directory, W.window()).payload == b"x"


def test_broadcast_to_every_member() -> None:
    w = make_world([*sorted(MEMBER_COUNTRIES), "GS"])
    r = Router(w.secrets["GS"], w.directory, w.window(), store=w.store)
    gs = w.directory.current_encryption_key("GS", T0)
    to_all = dataclasses.replace(header(w), recipients=Recipients.all())
    data = Sender(w.secrets["FR"], gs, store=w.store).seal(to_all, b"payload")
    out = r.deliver(r.open(data), sorted(MEMBER_COUNTRIES - {"FR"}))
    assert len(out) == 195
    assert receiver(w, "ZW").open(out["ZW"]).payload == b"payload"
    with pytest.raises(VerificationError) as e:
        receiver(w, "ZW").open(out["ZA"])
    assert reason(e) is Reason.WRONG_RECIPIENT


def test_replay_is_refused_at_router_and_receiver() -> None:
    r = router()
    r.open(SEALED)
    with pytest.raises(VerificationError) as e:
        r.open(SEALED)
    assert reason(e) is Reason.REPLAYED
    rc = receiver()
    rc.open(DELIVERED)
    with pytest.raises(VerificationError) as e:
        rc.open(DELIVERED)
    assert reason(e) is Reason.REPLAYED


def test_record_false_leaves_recording_to_the_caller() -> None:
    rc = receiver()
    rc.open(DELIVERED, record=False)
    rc.open(DELIVERED)


def test_expired_and_future_messages() -> None:
    with pytest.raises(VerificationError) as e:
        router().open(sealed(created=T0 - 7_200_000))
    assert reason(e) is Reason.EXPIRED
    with pytest.raises(VerificationError) as e:
        router().open(sealed(created=T0 + 600_000))
    assert reason(e) is Reason.NOT_YET_VALID


def test_router_refuses_a_delivery_envelope_and_receiver_a_sender_envelope() -> None:
    with pytest.raises(VerificationError) as e:
        router().open(DELIVERED)
    assert reason(e) is Reason.MALFORMED  # §6 step 8: a router refuses an attested envelope
    with pytest.raises(VerificationError) as e:
        receiver().open(SEALED)
    assert reason(e) is Reason.BAD_ATTESTATION


def test_wrong_recipient() -> None:
    with pytest.raises(VerificationError) as e:
        receiver(code="FR").open(DELIVERED)
    assert reason(e) is Reason.WRONG_RECIPIENT


def test_unknown_sender_and_key() -> None:
    w = make_world(("FR", "GS", "JP"))
    w.directory.put(dataclasses.replace(w.directory.record("FR"), signing_keys=()))
    with pytest.raises(VerificationError) as e:
        router(w).open(sealed(w))
    assert reason(e) is Reason.UNKNOWN_KEY
    w2 = make_world(("GS", "JP"))
    with pytest.raises(VerificationError) as e:
        router(w2).open(SEALED)
    assert reason(e) is Reason.UNKNOWN_SENDER


def test_revoked_sender_key() -> None:
    w = make_world(("FR", "GS", "JP", "BR"))
    rec = w.directory.record("FR")
    k = dataclasses.replace(rec.signing_keys[0], status=Status.REVOKED, revoked_at_ms=T0 - 1)
    w.directory.put(dataclasses.replace(rec, signing_keys=(k,)))
    with pytest.raises(VerificationError) as e:
        router(w).open(sealed(w))
    assert reason(e) is Reason.REVOKED_KEY


def test_sizes_are_bounded() -> None:
    with pytest.raises(VerificationError) as e:
        router().open(b"\xc3\x01" + bytes(2 << 20))
    assert reason(e) is Reason.OVERSIZED
    small = Limits(max_payload=10)
    gs = W.directory.current_encryption_key("GS", T0)
    with pytest.raises(OversizedError):
        Sender(W.secrets["FR"], gs, store=W.store, limits=small).seal(header(W), bytes(11))


def test_seal_refuses_a_header_that_breaks_the_rules() -> None:
    gs = W.directory.current_encryption_key("GS", T0)
    s = Sender(W.secrets["FR"], gs, store=W.store)
    with pytest.raises(EnvelopeError):
        s.seal(dataclasses.replace(header(W), sender="JP"), b"")
    with pytest.raises(EnvelopeError):
        s.seal(dataclasses.replace(header(W), expires_ms=T0), b"")
    with pytest.raises(EnvelopeError):
        s.seal(dataclasses.replace(header(W), kind="NOT_A_KIND"), b"")
    with pytest.raises(EnvelopeError):
        s.seal(dataclasses.replace(header(W), recipients=Recipients.to()), b"")


def test_bad_version() -> None:
    with pytest.raises(VerificationError) as e:
        router().open(SEALED[:2] + bytes(8) + SEALED[10:])
    assert reason(e) is Reason.BAD_VERSION


def test_body_cannot_move_under_another_header() -> None:
    other = sealed(payload=b"other", ttl=7_200_000)
    # splice: first envelope's header + second envelope's nonce/ciphertext
    from i24net.envelope._envelope import _Codec

    codec = _Codec(W.store, Limits())
    a, b = codec.parse(SEALED), codec.parse(other)
    spliced = (
        codec.body_prefix(a.header_bytes, a.signature, b.nonce, b.ciphertext)
        + codec.wrap(
            (a.wrap["wrapper"], a.wrap["wrapper_key_id"]),
            (a.wrap["recipient"], a.wrap["recipient_key_id"]),
            a.wrap["wrapped"],
        )
        + b"\x00\x00"
    )
    with pytest.raises(VerificationError) as e:
        router().open(spliced)
    assert reason(e) is Reason.BAD_SIGNATURE


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_flipped_bit_is_rejected(data: st.DataObject) -> None:
    target = data.draw(st.sampled_from(["sealed", "delivered"]))
    blob = bytearray(SEALED if target == "sealed" else DELIVERED)
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(VerificationError) as e:
        (router() if target == "sealed" else receiver()).open(bytes(blob))
    if i < 10:
        assert reason(e) is Reason.BAD_VERSION


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_project_errors(blob: bytes) -> None:
    for opener in (router(), receiver()):
        with pytest.raises(I24Error):
            opener.open(blob)
        with pytest.raises(I24Error):
            opener.open(SEALED[:10] + blob)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(DELIVERED) - 1))
def test_truncated_envelopes_are_refused(n: int) -> None:
    with pytest.raises(VerificationError):
        receiver().open(DELIVERED[:n])


def test_rotated_recipient_key_still_opens_with_previous_keys() -> None:
    from world import station_secrets

    w = make_world(("FR", "GS", "JP"))
    new_jp = station_secrets("JP", gen=1)
    rec = w.directory.record("JP")
    w.directory.put(
        dataclasses.replace(
            rec,
            encryption_keys=(
                *rec.encryption_keys,
                KeyRecord(new_jp.encryption_key_id, bytes(new_jp.encryption.public_key), T0),
            ),
            signing_keys=(
                *rec.signing_keys,
                KeyRecord(new_jp.signing_key_id, bytes(new_jp.signing.verify_key), T0),
            ),
        )
    )
    out = router(w).deliver(router(w).open(sealed(w)), ["JP"])["JP"]
    rc = Receiver(new_jp, w.directory, w.window(), previous=[w.secrets["JP"]], store=w.store)
    assert rc.open(out).payload == b"payload"
