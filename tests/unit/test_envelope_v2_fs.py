"""Forward secrecy of envelope v2, as a test (issue 17, "done when").

A recorder keeps every envelope that crossed Kafka (the sender's to the GS and
each delivery). Then every station and the GS rotate their KEM keys and
destroy the old secrets. The test is handed every secret that remains: all
current key sets, all signing keys (they may live longer), and even the old
v1 X25519 secrets, and tries every one of them on every recorded wrap, as any
wrap of any station: nothing opens. A positive control shows the same
attacker opens everything with the old KEM secrets, so the attack is real.

The contrast with v1: there the sender's X25519 secret, which it still holds,
opens its own past wraps to the GS (static-static: the shared key is the same
from both ends). The v2 half also hands the *sender's old key set* to the
attacker and shows it opens nothing the sender sent: a v2 that regressed to
static wraps fails that assertion.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, make_world, station_secrets

from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.envelope import _crypto as c
from i24net.envelope import _v2 as v2
from i24net.envelope import _wire as wire
from i24net.errors import VerificationError
from i24net.keys import KemSuite, StationSecrets
from i24net.schemas import MAGIC, SchemaStore

HYBRID = KemSuite.MLKEM768_X25519
CODES = ("FR", "JP", "BR", "GS")
STORE = SchemaStore.default()
CODEC = v2.CodecV2(STORE, 1 << 21, 1 << 14)


def _header(n: int, sender_key_id: str) -> Header:
    return Header(
        message_id=new_message_id(T0 + n, lambda k: bytes([n]) * k),
        sender="FR",
        sender_key_id=sender_key_id,
        recipients=Recipients.to("BR", "JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=T0 + n,
        expires_ms=T0 + n + 3_600_000,
        language=Language.EN,
        payload_fingerprint=PAYLOAD_FP,
    )


def _record_traffic(kem: KemSuite | None) -> tuple[list[bytes], dict[str, StationSecrets]]:
    """Seal three messages FR -> GS -> {BR, JP}; return every envelope bytes and the keys."""
    w = make_world(CODES, kem=kem)
    router = Router(w.secrets["GS"], w.directory, w.window())
    version = 1 if kem is None else 2
    gs = w.directory.current_encryption_key("GS", T0, version=version)
    sender = Sender(w.secrets["FR"], gs)
    recorded = []
    for n in range(3):
        data = sender.seal(_header(n, w.secrets["FR"].signing_key_id), f"secret {n}".encode())
        recorded.append(data)
        recorded.extend(router.deliver(router.open(data), ["BR", "JP"]).values())
    return recorded, w.secrets


def _v2_open(data: bytes, keys: Iterable[StationSecrets]) -> bytes | None:
    """Open a recorded v2 envelope with any of ``keys`` as any wrap (or None)."""
    p = CODEC.parse(data)
    digest = v2.message_digest(p.header_bytes, p.nonce, p.ciphertext)
    for s in keys:
        if s.kem is None or s.kem_suite is not p.suite:
            continue
        for label in (v2.LABEL_WRAP_GS, v2.LABEL_WRAP_RECIPIENT):
            for wrapper in CODES:
                info = v2.wrap_info(label, wrapper, p.recipient, p.recipient_key_id, digest)
                try:
                    key = v2.unwrap(p.suite, s.kem, p.wrapped, info)
                except VerificationError:
                    continue
                content = c.open_body(v2.body_key(key), p.nonce, p.ciphertext, p.header_bytes)
                return CODEC.decode_content(p.header, content)[1]
    return None


def _rotated() -> dict[str, StationSecrets]:
    """Every station's and the GS's next key set (generation 1)."""
    return {code: station_secrets(code, T0 + 86_400_000, gen=1, kem=HYBRID) for code in CODES}


def test_no_recorded_v2_envelope_opens_after_rotation_and_destruction() -> None:
    recorded, old = _record_traffic(HYBRID)
    assert len(recorded) == 9
    # positive control: with the old KEM secrets, every recorded envelope opens
    opened = [_v2_open(data, old.values()) for data in recorded]
    assert all(o is not None and o.startswith(b"secret ") for o in opened)

    # rotation: the old key sets are destroyed; what remains is handed to the attacker:
    # the new key sets, the old signing keys, and the old v1 X25519 secrets as well
    new = _rotated()
    remaining = list(new.values())
    for code in old:
        remaining.append(station_secrets(code, gen=0, kem=None))  # signing + v1 X25519 only
    assert not any(s.kem_key_id == o.kem_key_id for s in remaining for o in old.values())
    for data in recorded:
        assert _v2_open(data, remaining) is None


def test_the_sender_s_own_keys_open_nothing_it_sent_in_v2_but_do_in_v1() -> None:
    # v2: FR still holds its whole key set (nothing destroyed) and cannot open its own past
    # envelopes, to the GS or as delivered
    recorded, keys = _record_traffic(HYBRID)
    for data in recorded:
        assert _v2_open(data, [keys["FR"]]) is None

    # v1: FR's X25519 secret and the GS's public key (from the directory) give the
    # static-static wrap key, hence every content key FR ever sent to the GS
    recorded1, keys1 = _record_traffic(None)
    w1 = make_world(CODES)
    gs_pub = w1.directory.current_encryption_key("GS", T0)
    fr = keys1["FR"]
    shared = c.SharedKeys(fr.encryption)
    opened = 0
    for data in recorded1:
        assert bytes(data[:10]) == MAGIC + w1.store.fingerprint("net.i24.Envelope")
        hb, p = wire.read_bytes(data, 10)
        _sig, p = wire.read_bytes(data, p)
        nonce, p = wire.read_bytes(data, p)
        ct, p = wire.read_bytes(data, p)
        wrapper, p = wire.read_str(data, p)
        wrapper_kid, p = wire.read_str(data, p)
        recipient, p = wire.read_str(data, p)
        recipient_kid, p = wire.read_str(data, p)
        wrapped, p = wire.read_bytes(data, p)
        if wrapper != "FR":
            continue  # deliveries are GS -> station: FR's key does not reach them
        digest = c.message_digest(hb, nonce, ct)
        key = shared.unwrap(
            wrapped,
            gs_pub.public_key,
            c.LABEL_WRAP_GS,
            (wrapper, wrapper_kid),
            (recipient, recipient_kid),
            digest,
        )
        assert c.open_body(key, nonce, ct, hb).startswith(b"secret ")
        opened += 1
    assert opened == 3
