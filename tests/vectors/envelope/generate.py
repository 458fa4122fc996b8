"""Regenerate ``v1.json``: python tests/vectors/envelope/generate.py

Keys come from seed labels (world.py), the clock is fixed, the message id,
content key and nonce come from a SHAKE-256 stream: the output is fully
deterministic, and ``tests/unit/test_envelope_vectors.py`` re-derives it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from world import PAYLOAD_FP, T0, counter_rng, make_world  # noqa: E402

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
from i24net.envelope._crypto import SharedKeys  # noqa: E402


def build() -> dict[str, Any]:
    w = make_world()
    fr, gs, jp = w.secrets["FR"], w.secrets["GS"], w.secrets["JP"]
    rng = counter_rng("i24net/v1 vector 1")
    header = Header(
        message_id=new_message_id(T0, rng),
        sender="FR",
        sender_key_id=fr.signing_key_id,
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
    payload = "Demande d'information: véhicule immatriculé AB-123-CD.".encode()
    router_key = w.directory.current_encryption_key("GS", T0)
    sealed = Sender(fr, router_key, store=w.store, rng=rng).seal(header, payload)
    w.clock.advance(1500)
    router = Router(gs, w.directory, w.window(), store=w.store)
    inbound = router.open(sealed)
    delivered = router.deliver(inbound, ["BR", "JP"])
    return {
        "doc": "i24net envelope v1 known-answer vector; see docs/envelope.md",
        "seeds": "keys: StationSecrets.from_seeds(code, sha256('i24net-test-seed/<code>/sign/0'),"
        " sha256('i24net-test-seed/<code>/enc/0')); randomness: shake_256('i24net/v1 vector 1')",
        "t0_ms": T0,
        "router_decided_ms": T0 + 1500,
        "envelope_fingerprint": w.store.fingerprint("net.i24.Envelope").hex(),
        "header_fingerprint": w.store.fingerprint("net.i24.Header").hex(),
        "attestation_fingerprint": w.store.fingerprint("net.i24.Attestation").hex(),
        "keys": {
            code: {
                "signing_key_id": s.signing_key_id,
                "signing_public": bytes(s.signing.verify_key).hex(),
                "encryption_key_id": s.encryption_key_id,
                "encryption_public": bytes(s.encryption.public_key).hex(),
            }
            for code, s in sorted(w.secrets.items())
        },
        "jp_encryption_secret": bytes(jp.encryption).hex(),
        "message_id": header.message_id,
        "payload": payload.hex(),
        "content_key": inbound._content_key.hex(),
        "message_digest": inbound.message_digest.hex(),
        "shared_gs_jp": SharedKeys(jp.encryption).shared(gs.encryption.public_key).hex(),
        "sealed": sealed.hex(),
        "delivered_jp": delivered["JP"].hex(),
        "delivered_br": delivered["BR"].hex(),
    }


if __name__ == "__main__":
    (HERE / "v1.json").write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {HERE / 'v1.json'}")
