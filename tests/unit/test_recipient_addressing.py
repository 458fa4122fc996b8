"""A recipient refuses a delivery its signed header does not address (issue 17, item 5).

The router is honest in production; these tests play a router whose
attestation lists the recipient although the sender excluded it or never
addressed it (a router bug, or a compromised router key): the recipient's
own check is what refuses it, with ``not_addressed``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world

from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Receiver,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.envelope._addressing import addressed, check_addressed
from i24net.errors import Reason, VerificationError

# FR and DE: Europe; JP: Asia/South Pacific; BR, AR: Americas.
W = make_world(("FR", "DE", "JP", "BR", "AR", "GS"))


def header(recipients: Recipients, excluded: tuple[str, ...] = (), n: int = 0) -> Header:
    return Header(
        message_id=new_message_id(T0, counter_rng(f"addressing{n}")),
        sender="FR",
        sender_key_id=W.secrets["FR"].signing_key_id,
        recipients=recipients,
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=T0,
        expires_ms=T0 + 3_600_000,
        language=Language.EN,
        payload_fingerprint=PAYLOAD_FP,
        excluded=excluded,
    )


def deliver(h: Header, to: list[str], w: World = W) -> dict[str, bytes]:
    """Seal as FR and have the GS attest and wrap for ``to``, whatever ``h`` says."""
    gs = w.directory.current_encryption_key("GS", T0)
    data = Sender(w.secrets["FR"], gs, store=w.store).seal(h, b"payload")
    r = Router(w.secrets["GS"], w.directory, w.window(), store=w.store)
    return r.deliver(r.open(data), to)


def open_as(code: str, data: bytes) -> bytes:
    return Receiver(W.secrets[code], W.directory, W.window(), store=W.store).open(data).payload


def refused(code: str, data: bytes) -> VerificationError:
    with pytest.raises(VerificationError) as e:
        open_as(code, data)
    return e.value


def test_listed_recipient_opens() -> None:
    out = deliver(header(Recipients.to("BR", "JP")), ["BR", "JP"])
    assert open_as("JP", out["JP"]) == b"payload"
    assert open_as("BR", out["BR"]) == b"payload"


def test_a_station_not_listed_refuses_although_attested() -> None:
    out = deliver(header(Recipients.to("BR")), ["BR", "JP"])
    err = refused("JP", out["JP"])
    assert err.reason is Reason.NOT_ADDRESSED
    assert "not among the recipients" in err.detail
    assert open_as("BR", out["BR"]) == b"payload"


def test_an_excluded_station_refuses_a_broadcast() -> None:
    out = deliver(header(Recipients.all(), excluded=("JP",)), ["AR", "BR", "DE", "JP"])
    err = refused("JP", out["JP"])
    assert err.reason is Reason.NOT_ADDRESSED
    assert "excluded" in err.detail
    for code in ("AR", "BR", "DE"):
        assert open_as(code, out[code]) == b"payload"


def test_an_excluded_station_refuses_even_when_listed() -> None:
    out = deliver(header(Recipients.to("BR", "JP"), excluded=("JP",)), ["BR", "JP"])
    assert refused("JP", out["JP"]).reason is Reason.NOT_ADDRESSED


def test_region_resolves_through_the_directory() -> None:
    h = header(Recipients.in_region("AMERICAS"))
    assert addressed(h, W.directory) == ["AR", "BR"]
    out = deliver(h, ["AR", "BR", "JP"])
    assert open_as("BR", out["BR"]) == b"payload"
    assert open_as("AR", out["AR"]) == b"payload"
    assert refused("JP", out["JP"]).reason is Reason.NOT_ADDRESSED


def test_all_is_every_station_but_the_sender_and_the_gs() -> None:
    h = header(Recipients.all())
    assert addressed(h, W.directory) == ["AR", "BR", "DE", "JP"]
    for code in ("FR", "GS"):
        with pytest.raises(VerificationError) as e:
            check_addressed(h, code, W.directory)
        assert e.value.reason is Reason.NOT_ADDRESSED
    check_addressed(h, "JP", W.directory)
