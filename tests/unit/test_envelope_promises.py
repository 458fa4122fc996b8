"""docs/envelope.md §5–6, promise by promise, each with the one reason the spec names.

tests/unit/test_envelope.py walks the happy path and the commonest refusals;
this module takes the promises a reader could break without any of those
tests noticing: the attestation checks of step 8 (who attested, for which
message, and when), ``DECRYPT_FAILED`` at steps 10 and 11, step 9's rule
that the wrapper is the sender (at the router) or the router (on delivery),
``max_header``, and the rule that the message id is recorded only after
step 11, so a broken copy cannot burn the id of the genuine one.

Forged envelopes are put together from the parts of genuine ones
(``_Codec`` is the envelope's own framing; the fields an attacker controls
are exactly those the sender's signature does not cover: the wrap and the
attestation pair), and a forged attestation is signed with a real key, so
that each test exercises the one check it is named for.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world

from i24net.clock import FixedClock
from i24net.envelope import (
    LABEL_ATTESTATION,
    LABEL_WRAP_GS,
    LABEL_WRAP_RECIPIENT,
    Header,
    Language,
    Limits,
    Precedence,
    Receiver,
    Recipients,
    Router,
    Sender,
    SharedKeys,
    new_message_id,
)
from i24net.envelope._envelope import _avro_bytes, _Codec, _Parsed
from i24net.errors import Reason, VerificationError
from i24net.keys import StationSecrets
from i24net.replay import DEFAULT_SKEW_MS, ReplayWindow

W = make_world()
DEFAULT_LIMITS = Limits()
CODEC = _Codec(W.store, DEFAULT_LIMITS)
SKEW = DEFAULT_SKEW_MS


def header(w: World = W, *, sender: str = "FR", label: str = "promise") -> Header:
    return Header(
        message_id=new_message_id(T0, counter_rng(f"id/{label}/{sender}")),
        sender=sender,
        sender_key_id=w.secrets[sender].signing_key_id,
        recipients=Recipients.to("BR", "JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=T0,
        expires_ms=T0 + 3_600_000,
        language=Language.EN,
        payload_fingerprint=PAYLOAD_FP,
    )


def sealed(w: World = W, *, label: str = "promise") -> bytes:
    gs = w.directory.current_encryption_key("GS", T0)
    return Sender(w.secrets["FR"], gs, store=w.store).seal(header(w, label=label), b"payload")


def router(w: World = W, *, clock_ms: int = T0) -> Router:
    window = ReplayWindow(clock=FixedClock(clock_ms))
    return Router(w.secrets["GS"], w.directory, window, store=w.store)


def receiver(w: World = W, code: str = "JP", *, limits: Limits = DEFAULT_LIMITS) -> Receiver:
    return Receiver(w.secrets[code], w.directory, w.window(), store=w.store, limits=limits)


SEALED = sealed()
DELIVERED = router().deliver(router().open(SEALED), ["BR", "JP"])["JP"]


def refused(opener: Router | Receiver, data: bytes) -> Reason:
    with pytest.raises(VerificationError) as e:
        opener.open(data)
    return e.value.reason


def assemble(
    p: _Parsed,
    *,
    wrap: dict[str, Any] | None = None,
    attestation: tuple[bytes, bytes] | None = None,
) -> bytes:
    """An envelope from parsed parts, with the wrap and/or the attestation pair replaced."""
    w = {**p.wrap, **(wrap or {})}
    if attestation is None and p.attestation is not None and p.attestation_signature is not None:
        attestation = (p.attestation, p.attestation_signature)
    tail = b"\x00\x00"
    if attestation is not None:
        tail = b"\x02" + _avro_bytes(attestation[0]) + b"\x02" + _avro_bytes(attestation[1])
    return (
        CODEC.body_prefix(p.header_bytes, p.signature, p.nonce, p.ciphertext)
        + CODEC.wrap(
            (w["wrapper"], w["wrapper_key_id"]),
            (w["recipient"], w["recipient_key_id"]),
            w["wrapped"],
        )
        + tail
    )


def test_assemble_reproduces_genuine_envelopes_byte_for_byte() -> None:
    """The forging helper is faithful, so a refusal below is the forged field's doing."""
    assert assemble(CODEC.parse(SEALED)) == SEALED
    assert assemble(CODEC.parse(DELIVERED)) == DELIVERED
    assert receiver().open(assemble(CODEC.parse(DELIVERED))).payload == b"payload"


def reattest(signer: StationSecrets, data: bytes = DELIVERED, **changes: object) -> bytes:
    """``data`` with its attestation edited and signed again, validly, by ``signer``."""
    p = CODEC.parse(data)
    assert p.attestation is not None
    att = dataclasses.replace(CODEC.decode_attestation(p.attestation), **changes)  # type: ignore[arg-type]
    ab = CODEC.encode_attestation(att)
    return assemble(p, attestation=(ab, signer.signing.sign(LABEL_ATTESTATION + ab).signature))


# --- step 8: the attestation ------------------------------------------------------------


def test_an_attestation_by_a_station_other_than_the_router_is_bad_attestation() -> None:
    """BR is in the directory and signs validly: only "router is the pinned router" stops it."""
    br = W.secrets["BR"]
    forged = reattest(br, router="BR", router_key_id=br.signing_key_id)
    assert refused(receiver(), forged) is Reason.BAD_ATTESTATION


def test_an_attestation_whose_signature_does_not_verify_is_bad_attestation() -> None:
    """Names the GS and its key, but FR signed it."""
    assert refused(receiver(), reattest(W.secrets["FR"])) is Reason.BAD_ATTESTATION


def test_an_attestation_for_another_digest_is_bad_attestation() -> None:
    forged = reattest(W.secrets["GS"], message_digest=bytes(32))
    assert refused(receiver(), forged) is Reason.BAD_ATTESTATION


def test_an_attestation_for_another_message_id_is_bad_attestation() -> None:
    other = new_message_id(T0, counter_rng("another id"))
    assert other != header().message_id
    assert (
        refused(receiver(), reattest(W.secrets["GS"], message_id=other)) is Reason.BAD_ATTESTATION
    )


@pytest.mark.parametrize(
    ("decided_ms", "ok"),
    [
        (T0 - SKEW, True),  # created_ms - skew: the earliest accepted
        (T0 - SKEW - 1, False),
        (T0 + SKEW, True),  # now + skew (the receiver's clock is T0): the latest accepted
        (T0 + SKEW + 1, False),
    ],
)
def test_decided_ms_must_lie_between_created_minus_skew_and_now_plus_skew(
    decided_ms: int, ok: bool
) -> None:
    forged = reattest(W.secrets["GS"], decided_ms=decided_ms)
    if ok:
        assert receiver().open(forged).attestation.decided_ms == decided_ms
    else:
        assert refused(receiver(), forged) is Reason.BAD_ATTESTATION


def test_a_router_deciding_outside_the_window_is_refused_by_the_recipient() -> None:
    """The same rule reached without forging: a GS router whose clock runs 10 minutes late."""
    late = router(clock_ms=T0 + 2 * SKEW).deliver(router().open(SEALED), ["JP"])["JP"]
    assert refused(receiver(), late) is Reason.BAD_ATTESTATION


# --- steps 10 and 11: DECRYPT_FAILED -------------------------------------------------------


def flipped_wrap(data: bytes) -> bytes:
    p = CODEC.parse(data)
    wrapped = bytearray(p.wrap["wrapped"])
    wrapped[0] ^= 1
    return assemble(p, wrap={"wrapped": bytes(wrapped)})


def test_a_wrap_that_does_not_unwrap_is_decrypt_failed_at_the_router() -> None:
    """The wrap is outside the sender's signature: tampering with it reaches step 10."""
    assert refused(router(), flipped_wrap(SEALED)) is Reason.DECRYPT_FAILED


def test_a_wrap_that_does_not_unwrap_is_decrypt_failed_at_the_recipient() -> None:
    assert refused(receiver(), flipped_wrap(DELIVERED)) is Reason.DECRYPT_FAILED


def test_a_body_not_under_the_wrapped_key_is_decrypt_failed_at_the_router() -> None:
    """A sender signs a ciphertext, then wraps a different content key: the unwrap succeeds
    (step 10) and the body's AEAD fails (step 11)."""
    p = CODEC.parse(SEALED)
    fr, gs = W.secrets["FR"], W.directory.current_encryption_key("GS", T0)
    digest = router().open(SEALED).message_digest
    wrapped = SharedKeys(fr.encryption).wrap(
        bytes(32),
        gs.public_key,
        LABEL_WRAP_GS,
        (fr.station, fr.encryption_key_id),
        (gs.station, gs.key_id),
        digest,
    )
    assert refused(router(), assemble(p, wrap={"wrapped": wrapped})) is Reason.DECRYPT_FAILED


def test_a_body_not_under_the_wrapped_key_is_decrypt_failed_at_the_recipient() -> None:
    """The GS wraps a content key that is not the body's: genuine attestation, valid wrap."""
    inbound = router().open(SEALED)
    wrong_key = dataclasses.replace(inbound, _content_key=bytes(32))
    out = router().deliver(wrong_key, ["JP"])["JP"]
    assert refused(receiver(), out) is Reason.DECRYPT_FAILED


# --- step 9: who made the wrap ---------------------------------------------------------------


def test_at_the_router_the_wrapper_must_be_the_header_sender() -> None:
    """JP wraps FR's content key for the GS, validly; the header says FR sent it."""
    jp, gs = W.secrets["JP"], W.directory.current_encryption_key("GS", T0)
    inbound = router().open(SEALED)
    wrapper = (jp.station, jp.encryption_key_id)
    wrapped = SharedKeys(jp.encryption).wrap(
        inbound._content_key,
        gs.public_key,
        LABEL_WRAP_GS,
        wrapper,
        (gs.station, gs.key_id),
        inbound.message_digest,
    )
    forged = assemble(
        CODEC.parse(SEALED),
        wrap={"wrapper": jp.station, "wrapper_key_id": jp.encryption_key_id, "wrapped": wrapped},
    )
    assert refused(router(), forged) is Reason.WRONG_RECIPIENT


def test_on_delivery_the_wrapper_must_be_the_router() -> None:
    """BR re-wraps the content key for JP under a genuine GS attestation."""
    br, jp = W.secrets["BR"], W.directory.current_encryption_key("JP", T0)
    inbound = router().open(SEALED)
    wrapped = SharedKeys(br.encryption).wrap(
        inbound._content_key,
        jp.public_key,
        LABEL_WRAP_RECIPIENT,
        (br.station, br.encryption_key_id),
        (jp.station, jp.key_id),
        inbound.message_digest,
    )
    forged = assemble(
        CODEC.parse(DELIVERED),
        wrap={"wrapper": br.station, "wrapper_key_id": br.encryption_key_id, "wrapped": wrapped},
    )
    assert refused(receiver(), forged) is Reason.WRONG_RECIPIENT


# --- step 7's note: the id is recorded only after step 11 -------------------------------------


def _forged_wrapper() -> bytes:
    jp = W.secrets["JP"]
    return assemble(
        CODEC.parse(SEALED), wrap={"wrapper": jp.station, "wrapper_key_id": jp.encryption_key_id}
    )


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (lambda: flipped_wrap(SEALED), Reason.DECRYPT_FAILED),
        (_forged_wrapper, Reason.WRONG_RECIPIENT),
    ],
    ids=["wrap-tampered", "wrapper-not-sender"],
)
def test_a_broken_copy_does_not_burn_the_message_id_at_the_router(
    broken: Callable[[], bytes], why: Reason
) -> None:
    r = router()
    assert refused(r, broken()) is why
    assert not r.replay.seen(header().message_id)
    assert r.open(SEALED).payload == b"payload"
    assert refused(r, SEALED) is Reason.REPLAYED  # and the genuine copy does record it


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (lambda: flipped_wrap(DELIVERED), Reason.DECRYPT_FAILED),
        (lambda: reattest(W.secrets["GS"], message_digest=bytes(32)), Reason.BAD_ATTESTATION),
        (lambda: reattest(W.secrets["FR"]), Reason.BAD_ATTESTATION),
    ],
    ids=["wrap-tampered", "attestation-for-another-digest", "attestation-signed-by-sender"],
)
def test_a_broken_copy_does_not_burn_the_message_id_at_the_recipient(
    broken: Callable[[], bytes], why: Reason
) -> None:
    rc = receiver()
    assert refused(rc, broken()) is why
    assert not rc.replay.seen(header().message_id)
    assert rc.open(DELIVERED).payload == b"payload"
    assert refused(rc, DELIVERED) is Reason.REPLAYED


# --- §5: max_header -------------------------------------------------------------------------


def test_max_header_bounds_the_header_a_reader_accepts() -> None:
    header_size = len(CODEC.parse(DELIVERED).header_bytes)
    at_bound = receiver(limits=Limits(max_header=header_size))
    assert at_bound.open(DELIVERED).payload == b"payload"
    below = receiver(limits=Limits(max_header=header_size - 1))
    assert refused(below, DELIVERED) is Reason.MALFORMED


def test_max_header_is_checked_before_the_header_is_decoded() -> None:
    """A header over the bound is refused unread: a wrong header prefix is not even looked at."""
    p = CODEC.parse(SEALED)
    garbage = dataclasses.replace(p, header_bytes=bytes(len(p.header_bytes)))
    small = Limits(max_header=len(p.header_bytes) - 1)
    r = Router(W.secrets["GS"], W.directory, W.window(), store=W.store, limits=small)
    assert refused(r, assemble(garbage)) is Reason.MALFORMED
    assert refused(router(), assemble(garbage)) is Reason.BAD_VERSION  # within the bound
