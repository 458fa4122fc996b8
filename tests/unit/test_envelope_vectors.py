"""The known-answer vectors: v1 byte for byte; v2 byte for byte where it is deterministic,
and by decryption of recorded envelopes (HPKE's ephemeral keys are fresh each time)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VECTORS = Path(__file__).parents[1] / "vectors" / "envelope"
sys.path.insert(0, str(VECTORS))

from generate import build  # noqa: E402
from generate_v2 import deterministic, world  # noqa: E402

from i24net.envelope import Receiver, Router, envelope_version  # noqa: E402
from i24net.envelope import _v2 as v2  # noqa: E402


def test_vector_is_reproduced_byte_for_byte() -> None:
    stored = json.loads((VECTORS / "v1.json").read_text("utf-8"))
    assert build() == stored


V2 = json.loads((VECTORS / "v2.json").read_text("utf-8"))


def test_v2_deterministic_parts_are_reproduced_byte_for_byte() -> None:
    stored = {k: v for k, v in V2.items() if k != "envelopes"}
    assert deterministic() == stored


def test_v2_recorded_envelopes_open_to_the_expected_message() -> None:
    w = world()
    w.clock.advance(V2["router_decided_ms"] - V2["t0_ms"])
    envs = {k: bytes.fromhex(x) for k, x in V2["envelopes"].items()}
    codec = v2.CodecV2(w.store, 1 << 21, 1 << 14)
    for name, data in envs.items():
        assert envelope_version(data) == 2, name
        p = codec.parse(data)
        # everything but the wrap is the deterministic message
        assert p.header_bytes.hex() == V2["clear_header"]
        assert p.ciphertext.hex() == V2["ciphertext"]
        assert p.nonce.hex() == V2["nonce"]
        assert p.signature.hex() == V2["sender_signature"]
    inbound = Router(w.secrets["GS"], w.directory, w.window(), store=w.store).open(envs["sealed"])
    assert inbound._content_key.hex() == V2["content_key"]
    assert inbound.payload.hex() == V2["payload"]
    for code in ("JP", "BR"):
        rc = Receiver(w.secrets[code], w.directory, w.window(), store=w.store)
        opened = rc.open(envs[f"delivered_{code.lower()}"])
        assert opened.header == inbound.header and opened.payload == inbound.payload
        assert opened.attestation.decided_ms == V2["router_decided_ms"]
        assert opened.message_digest.hex() == V2["message_digest"]
