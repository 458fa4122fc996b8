"""Regenerate ``v2.json``: python tests/vectors/envelope/generate_v2.py

Envelope v2 (docs/envelope.md part 2). Keys come from seed labels
(world.py), the clock is fixed, the message id, content key and nonce come
from a SHAKE-256 stream, so everything but the HPKE wraps is deterministic:
:func:`deterministic` rebuilds it and ``tests/unit/test_envelope_vectors.py``
compares it with the file. HPKE draws its ephemeral key inside
``cryptography``, so the envelopes themselves are recorded once
(:func:`record`) and pinned by decryption: the test opens them with the
keys and expects the header and payload, and checks that everything in them
but the wrap equals the deterministic bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world  # noqa: E402

from i24net.envelope import (  # noqa: E402
    Handling,
    HandlingCode,
    Header,
    Language,
    Precedence,
    Recipients,
    Reliability,
    Router,
    Sender,
    new_message_id,
)
from i24net.envelope import _crypto as c  # noqa: E402
from i24net.envelope import _v2 as v2  # noqa: E402
from i24net.keys import KemSuite  # noqa: E402

SUITES = {
    "FR": KemSuite.MLKEM768_X25519,
    "GS": KemSuite.MLKEM768_X25519,
    "JP": KemSuite.X25519,
    "BR": KemSuite.MLKEM768_X25519,
}
DECIDED_MS = T0 + 1500


def world() -> World:
    return make_world(kem=SUITES)


def header(w: World, rng: Any) -> Header:
    return Header(
        message_id=new_message_id(T0, rng),
        sender="FR",
        sender_key_id=w.secrets["FR"].signing_key_id,
        recipients=Recipients.to("BR", "JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.IMMEDIATE,
        created_ms=T0,
        expires_ms=T0 + 86_400_000,
        language=Language.FR,
        payload_fingerprint=PAYLOAD_FP,
        handling=(
            HandlingCode(Handling.CRIME_PREVENTION_ONLY),
            HandlingCode(Handling.OTHER, "ne pas transmettre à la presse"),
        ),
        excluded=("BE",),
        source_reliability=Reliability.B,
        source_accuracy=2,
        offence_categories=("DRUG_TRAFFICKING", "MONEY_LAUNDERING"),
    )


PAYLOAD = "Demande d'information: véhicule immatriculé AB-123-CD.".encode()


def _seal(w: World) -> tuple[Header, bytes]:
    rng = counter_rng("i24net/v2 vector 1")
    h = header(w, rng)
    gs = w.directory.current_encryption_key("GS", T0, version=2)
    return h, Sender(w.secrets["FR"], gs, store=w.store, rng=rng).seal(h, PAYLOAD)


def deterministic() -> dict[str, Any]:
    """Everything in the vector that does not depend on HPKE's ephemeral keys."""
    w = world()
    rng = counter_rng("i24net/v2 vector 1")
    h = header(w, rng)
    key, nonce = rng(32), rng(24)
    codec = v2.CodecV2(w.store, 1 << 21, 1 << 14)
    commitment = v2.key_commitment(key)
    hb = codec.encode_header(h, commitment)
    content = codec.encode_content(h, PAYLOAD)
    ct = c.seal_body(v2.body_key(key), nonce, content, hb)
    digest = v2.message_digest(hb, nonce, ct)
    keys = {}
    for code, s in sorted(w.secrets.items()):
        pub = s.public()
        assert s.kem_seed is not None and pub.kem_public is not None
        keys[code] = {
            "signing_key_id": s.signing_key_id,
            "signing_public": pub.signing_public.hex(),
            "kem_suite": str(s.kem_suite),
            "kem_key_id": s.kem_key_id,
            "kem_public": pub.kem_public.hex(),
            "kem_seed": s.kem_seed.hex(),
        }
    return {
        "doc": "i24net envelope v2 vector; see docs/envelope.md part 2 (P2.10)",
        "seeds": "keys: world.station_secrets(code, kem=suite): sha256('i24net-test-seed/"
        "<code>/sign/0') etc., KEM seed = sha256 of '<code>/kem/0/0..2' concatenated, cut to "
        "the suite's size; randomness: shake_256('i24net/v2 vector 1')",
        "t0_ms": T0,
        "router_decided_ms": DECIDED_MS,
        "fingerprints": {
            name: w.store.fingerprint(name).hex()
            for name in (
                v2.ENVELOPE_V2,
                v2.HEADER_V2,
                v2.SEALED_CONTENT,
                "net.i24.Attestation",
                "net.i24.MessageKind",
            )
        },
        "keys": keys,
        "message_id": h.message_id,
        "payload": PAYLOAD.hex(),
        "content_key": key.hex(),
        "nonce": nonce.hex(),
        "key_commitment": commitment.hex(),
        "body_key": v2.body_key(key).hex(),
        "clear_header": hb.hex(),
        "sealed_content": content.hex(),
        "ciphertext": ct.hex(),
        "message_digest": digest.hex(),
        "sender_signature": w.secrets["FR"]
        .signing.sign(v2.LABEL_SENDER_SIG + digest)
        .signature.hex(),
        "info": {
            "GS": v2.wrap_info(
                v2.LABEL_WRAP_GS, "FR", "GS", keys["GS"]["kem_key_id"], digest
            ).hex(),
            "JP": v2.wrap_info(
                v2.LABEL_WRAP_RECIPIENT, "GS", "JP", keys["JP"]["kem_key_id"], digest
            ).hex(),
            "BR": v2.wrap_info(
                v2.LABEL_WRAP_RECIPIENT, "GS", "BR", keys["BR"]["kem_key_id"], digest
            ).hex(),
        },
    }


def record() -> dict[str, str]:
    """A sender envelope and its deliveries, sealed now (fresh HPKE ephemeral keys)."""
    w = world()
    _, sealed = _seal(w)
    w.clock.advance(DECIDED_MS - T0)
    router = Router(w.secrets["GS"], w.directory, w.window(), store=w.store)
    delivered = router.deliver(router.open(sealed), ["BR", "JP"])
    return {
        "sealed": sealed.hex(),
        "delivered_jp": delivered["JP"].hex(),
        "delivered_br": delivered["BR"].hex(),
    }


if __name__ == "__main__":
    (HERE / "v2.json").write_text(
        json.dumps({**deterministic(), "envelopes": record()}, indent=2, ensure_ascii=False) + "\n"
    )
    print(f"wrote {HERE / 'v2.json'}")
