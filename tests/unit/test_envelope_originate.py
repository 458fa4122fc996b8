"""``Router.originate``: GS-originated deliveries, byte-identical to seal -> open -> deliver."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world

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
)
from i24net.errors import EnvelopeError, OversizedError, Reason, VerificationError

W = make_world()


def gs_header(w: World = W, *, to: tuple[str, ...] = ("JP",)) -> Header:
    return Header(
        message_id=new_message_id(T0, counter_rng("notice")),
        sender="GS",
        sender_key_id=w.secrets["GS"].signing_key_id,
        recipients=Recipients.to(*to),
        kind="STATUS_NOTICE",
        precedence=Precedence.ROUTINE,
        created_ms=T0,
        expires_ms=T0 + 3_600_000,
        language=Language.EN,
        payload_fingerprint=PAYLOAD_FP,
    )


def receiver(code: str) -> Receiver:
    return Receiver(W.secrets[code], W.directory, W.window(), store=W.store)


def test_originate_is_byte_identical_to_seal_open_deliver() -> None:
    h = gs_header(to=("JP", "BR"))
    gs_key = W.directory.current_encryption_key("GS", T0)
    sealed = Sender(W.secrets["GS"], gs_key, store=W.store, rng=counter_rng("k")).seal(h, b"body")
    r = Router(W.secrets["GS"], W.directory, W.window(), store=W.store)
    via_open = r.deliver(r.open(sealed, record=False), ["JP", "BR"])
    direct = Router(
        W.secrets["GS"], W.directory, W.window(), store=W.store, rng=counter_rng("k")
    ).originate(h, b"body", ["BR", "JP"])
    assert direct == via_open


def test_originated_delivery_opens_at_each_recipient() -> None:
    r = Router(W.secrets["GS"], W.directory, W.window(), store=W.store)
    out = r.originate(
        gs_header(to=("JP", "BR")),
        b"notice",
        ["JP", "BR"],
        decision=Decision.REVIEW_APPROVED,
        review_id="R-9",
    )
    assert set(out) == {"BR", "JP"}
    for code in ("JP", "BR"):
        opened = receiver(code).open(out[code])
        assert opened.payload == b"notice"
        assert opened.header.sender == "GS"
        assert opened.attestation.router == "GS"
        assert opened.attestation.recipients == ("BR", "JP")
        assert opened.attestation.review_id == "R-9"
    with pytest.raises(VerificationError) as e:
        receiver("FR").open(out["JP"])
    assert e.value.reason is Reason.WRONG_RECIPIENT


def test_originate_refuses_a_header_not_from_the_router() -> None:
    r = Router(W.secrets["GS"], W.directory, W.window(), store=W.store)
    fr = dataclasses.replace(gs_header(), sender="FR", sender_key_id=W.secrets["FR"].signing_key_id)
    with pytest.raises(EnvelopeError):
        r.originate(fr, b"x", ["JP"])
    bad_time = dataclasses.replace(gs_header(), expires_ms=T0 - 1)
    with pytest.raises(EnvelopeError):
        r.originate(bad_time, b"x", ["JP"])


def test_originate_bounds_the_payload_and_recipients() -> None:
    small = Router(
        W.secrets["GS"], W.directory, W.window(), store=W.store, limits=Limits(max_payload=8)
    )
    with pytest.raises(OversizedError):
        small.originate(gs_header(), b"123456789", ["JP"])
    r = Router(W.secrets["GS"], W.directory, W.window(), store=W.store)
    with pytest.raises(VerificationError) as e:
        r.originate(gs_header(), b"x", ["XX"])
    assert e.value.reason is Reason.UNKNOWN_RECIPIENT
