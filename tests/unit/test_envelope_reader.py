"""A second, independent reader of the v1 and v2 vectors, written from docs/envelope.md alone.

It uses no i24net code: Avro binary is parsed by hand (varints, bytes,
unions, arrays), digests with hashlib, signatures and AEAD with PyNaCl's
bindings, and for v2 the HPKE of the ``cryptography`` package (the suites
part 2 names). If it can read the vectors, the spec is complete.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt, crypto_box_beforenm
from nacl.signing import VerifyKey

VECTOR = json.loads(
    (Path(__file__).parents[1] / "vectors" / "envelope" / "v1.json").read_text("utf-8")
)


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def long(self) -> int:
        shift = n = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return (n >> 1) ^ -(n & 1)

    def raw(self) -> bytes:
        n = self.long()
        assert n >= 0
        out = self.data[self.pos : self.pos + n]
        assert len(out) == n
        self.pos += n
        return out

    def string(self) -> str:
        return self.raw().decode()

    def optional(self, read: Any) -> Any:
        return None if self.long() == 0 else read()

    def array(self, read: Any) -> list[Any]:
        out: list[Any] = []
        while (count := self.long()) != 0:
            out += [read() for _ in range(count)]
        return out

    def done(self) -> None:
        assert self.pos == len(self.data), "trailing bytes"


PRECEDENCE = ["FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE", "DEFERRED"]
MODES = ["STATIONS", "ALL", "REGION"]


def parse_envelope(data: bytes) -> dict[str, Any]:
    assert data[:2] == b"\xc3\x01"
    assert data[2:10].hex() == VECTOR["envelope_fingerprint"]
    r = Reader(data[10:])
    env = {
        "header": r.raw(),
        "sender_signature": r.raw(),
        "nonce": r.raw(),
        "ciphertext": r.raw(),
        "wrap": {
            k: r.raw()
            for k in ("wrapper", "wrapper_key_id", "recipient", "recipient_key_id", "wrapped")
        },
        "attestation": r.optional(r.raw),
        "attestation_signature": r.optional(r.raw),
    }
    r.done()
    return env


def parse_header(hb: bytes) -> dict[str, Any]:
    assert hb[:2] == b"\xc3\x01" and hb[2:10].hex() == VECTOR["header_fingerprint"]
    r = Reader(hb[10:])
    h = {
        "message_id": r.string(),
        "sender": r.string(),
        "sender_key_id": r.string(),
        "recipients": (MODES[r.long()], r.array(r.string), r.optional(r.string)),
        "kind_index": r.long(),
        "precedence": PRECEDENCE[r.long()],
        "created_ms": r.long(),
        "expires_ms": r.long(),
        "language": ["ar", "en", "es", "fr"][r.long()],
        "handling": r.array(lambda: (r.long(), r.optional(r.string))),
        "excluded": r.array(r.string),
        "source_reliability": r.optional(lambda: "ABCX"[r.long()]),
        "source_accuracy": r.optional(r.long),
        "offence_categories": r.array(r.long),
        "payload_fingerprint": r.raw(),
    }
    r.done()
    return h


def parse_attestation(ab: bytes) -> dict[str, Any]:
    r = Reader(ab)
    a = {
        "router": r.string(),
        "router_key_id": r.string(),
        "message_id": r.string(),
        "message_digest": r.raw(),
        "decision": ["SCREEN_PASSED", "REVIEW_APPROVED"][r.long()],
        "recipients": r.array(r.string),
        "decided_ms": r.long(),
        "review_id": r.optional(r.string),
    }
    r.done()
    return a


def lp(s: bytes) -> bytes:
    return bytes((len(s),)) + s


def test_independent_reader_opens_the_delivery_vector() -> None:
    env = parse_envelope(bytes.fromhex(VECTOR["delivered_jp"]))
    h = parse_header(env["header"])
    keys = VECTOR["keys"]
    assert h["sender"] == "FR" and h["sender_key_id"] == keys["FR"]["signing_key_id"]
    assert h["message_id"] == VECTOR["message_id"]
    assert h["recipients"] == ("STATIONS", ["BR", "JP"], None)
    assert h["precedence"] == "IMMEDIATE" and h["language"] == "fr"
    assert h["excluded"] == ["BE"] and h["source_reliability"] == "B" and h["source_accuracy"] == 2
    assert len(h["payload_fingerprint"]) == 8

    hb, nonce, ct = env["header"], env["nonce"], env["ciphertext"]
    digest = hashlib.blake2b(
        b"i24net/v1/message" + struct.pack(">I", len(hb)) + hb + nonce + ct, digest_size=32
    ).digest()
    assert digest.hex() == VECTOR["message_digest"]
    VerifyKey(bytes.fromhex(keys["FR"]["signing_public"])).verify(
        b"i24net/v1/sender-sig" + digest, env["sender_signature"]
    )

    att = parse_attestation(env["attestation"])
    assert att["router"] == "GS" and att["message_digest"] == digest
    assert att["recipients"] == ["BR", "JP"] and att["decision"] == "SCREEN_PASSED"
    assert att["decided_ms"] == VECTOR["router_decided_ms"]
    VerifyKey(bytes.fromhex(keys["GS"]["signing_public"])).verify(
        b"i24net/v1/attestation" + env["attestation"], env["attestation_signature"]
    )

    w = env["wrap"]
    assert (w["wrapper"], w["recipient"]) == (b"GS", b"JP")
    assert w["recipient_key_id"].decode() == keys["JP"]["encryption_key_id"]
    shared = crypto_box_beforenm(
        bytes.fromhex(keys["GS"]["encryption_public"]),
        bytes.fromhex(VECTOR["jp_encryption_secret"]),
    )
    wk = hashlib.blake2b(
        b"i24net/v1/wrap-recipient"
        + lp(w["wrapper"])
        + lp(w["wrapper_key_id"])
        + lp(w["recipient"])
        + lp(w["recipient_key_id"])
        + digest,
        digest_size=32,
        key=shared,
    ).digest()
    content_key = crypto_aead_xchacha20poly1305_ietf_decrypt(w["wrapped"], b"", bytes(24), wk)
    assert content_key.hex() == VECTOR["content_key"]
    payload = crypto_aead_xchacha20poly1305_ietf_decrypt(ct, hb, nonce, content_key)
    assert payload.hex() == VECTOR["payload"]


def test_independent_reader_parses_the_sender_vector() -> None:
    env = parse_envelope(bytes.fromhex(VECTOR["sealed"]))
    assert env["attestation"] is None and env["attestation_signature"] is None
    assert (env["wrap"]["wrapper"], env["wrap"]["recipient"]) == (b"FR", b"GS")
    assert parse_header(env["header"])["message_id"] == VECTOR["message_id"]


# --- envelope v2 (docs/envelope.md part 2), from the spec alone ------------------------

V2 = json.loads((Path(__file__).parents[1] / "vectors" / "envelope" / "v2.json").read_text("utf-8"))
SUITE_SYMBOLS = ["HPKE_X25519", "HPKE_MLKEM768_X25519"]
WRAPPED_SIZES = {"HPKE_X25519": 80, "HPKE_MLKEM768_X25519": 1168}


def parse_envelope_v2(data: bytes) -> dict[str, Any]:
    assert data[:2] == b"\xc3\x01"
    assert data[2:10].hex() == V2["fingerprints"]["net.i24.EnvelopeV2"]
    r = Reader(data[10:])
    env = {
        "header": r.raw(),
        "sender_signature": r.raw(),
        "nonce": r.raw(),
        "ciphertext": r.raw(),
        "wrap": {
            "suite": SUITE_SYMBOLS[r.long()],
            "recipient": r.string(),
            "recipient_key_id": r.string(),
            "wrapped": r.raw(),
        },
        "attestation": r.optional(r.raw),
        "attestation_signature": r.optional(r.raw),
    }
    r.done()
    assert len(env["sender_signature"]) == 64 and len(env["nonce"]) == 24
    assert len(env["wrap"]["wrapped"]) == WRAPPED_SIZES[env["wrap"]["suite"]]
    return env


def parse_header_v2(hb: bytes) -> dict[str, Any]:
    assert hb[:2] == b"\xc3\x01" and hb[2:10].hex() == V2["fingerprints"]["net.i24.HeaderV2"]
    r = Reader(hb[10:])
    h = {
        "message_id": r.string(),
        "sender": r.string(),
        "sender_key_id": r.string(),
        "kind_index": r.long(),
        "precedence": PRECEDENCE[r.long()],
        "created_ms": r.long(),
        "expires_ms": r.long(),
        "key_commitment": r.raw(),
    }
    r.done()
    assert len(h["key_commitment"]) == 32
    return h


def parse_sealed_content(data: bytes) -> dict[str, Any]:
    fp = V2["fingerprints"]["net.i24.SealedContent"]
    assert data[:2] == b"\xc3\x01" and data[2:10].hex() == fp
    r = Reader(data[10:])
    c = {
        "recipients": (MODES[r.long()], r.array(r.string), r.optional(r.string)),
        "language": ["ar", "en", "es", "fr"][r.long()],
        "handling": r.array(lambda: (r.long(), r.optional(r.string))),
        "excluded": r.array(r.string),
        "source_reliability": r.optional(lambda: "ABCX"[r.long()]),
        "source_accuracy": r.optional(r.long),
        "offence_categories": r.array(r.long),
        "payload_fingerprint": r.raw(),
        "payload": r.raw(),
    }
    r.done()
    return c


def kem_private_key(suite: str, seed: bytes) -> Any:
    """Part 2 §P2.3: the X25519 secret, or ML-KEM-768 seed (64) || X25519 secret (32)."""
    from cryptography.hazmat.primitives import hpke
    from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

    if suite == "hpke-x25519":
        return x25519.X25519PrivateKey.from_private_bytes(seed)
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]),
        x25519.X25519PrivateKey.from_private_bytes(seed[64:]),
    )


def hpke_open(suite: str, private: Any, wrapped: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hpke

    kem = hpke.KEM.X25519 if suite == "HPKE_X25519" else hpke.KEM.MLKEM768_X25519
    s = hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    return s.decrypt(wrapped, private, info=info)


def open_v2(data: bytes, reader: str, wrapper: str, label: bytes) -> dict[str, Any]:
    env = parse_envelope_v2(data)
    h = parse_header_v2(env["header"])
    keys = V2["keys"]
    hb, nonce, ct = env["header"], env["nonce"], env["ciphertext"]
    digest = hashlib.blake2b(
        b"i24net/v2/message" + struct.pack(">I", len(hb)) + hb + nonce + ct, digest_size=32
    ).digest()
    VerifyKey(bytes.fromhex(keys[h["sender"]]["signing_public"])).verify(
        b"i24net/v2/sender-sig" + digest, env["sender_signature"]
    )
    w = env["wrap"]
    me = keys[reader]
    assert w["recipient"] == reader and w["recipient_key_id"] == me["kem_key_id"]
    info = (
        label
        + lp(wrapper.encode())
        + lp(reader.encode())
        + lp(w["recipient_key_id"].encode())
        + digest
    )
    private = kem_private_key(me["kem_suite"], bytes.fromhex(me["kem_seed"]))
    key = hpke_open(w["suite"], private, w["wrapped"], info)
    commitment = hashlib.blake2b(b"i24net/v2/key-commitment", digest_size=32, key=key).digest()
    assert commitment == h["key_commitment"]
    body_key = hashlib.blake2b(b"i24net/v2/body-key", digest_size=32, key=key).digest()
    content = parse_sealed_content(
        crypto_aead_xchacha20poly1305_ietf_decrypt(ct, hb, nonce, body_key)
    )
    return {"env": env, "header": h, "digest": digest, "key": key, "content": content}


def test_independent_reader_opens_the_v2_deliveries_in_both_suites() -> None:
    keys = V2["keys"]
    for reader in ("JP", "BR"):
        o = open_v2(
            bytes.fromhex(V2["envelopes"][f"delivered_{reader.lower()}"]),
            reader,
            "GS",
            b"i24net/v2/wrap-recipient",
        )
        h, c, env = o["header"], o["content"], o["env"]
        assert o["key"].hex() == V2["content_key"] and o["digest"].hex() == V2["message_digest"]
        assert h["message_id"] == V2["message_id"] and h["sender"] == "FR"
        assert h["precedence"] == "IMMEDIATE" and h["created_ms"] == V2["t0_ms"]
        assert c["payload"].hex() == V2["payload"]
        assert c["recipients"] == ("STATIONS", ["BR", "JP"], None)
        assert c["language"] == "fr" and c["excluded"] == ["BE"]
        assert c["handling"][1][1] == "ne pas transmettre à la presse"
        assert c["source_reliability"] == "B" and c["source_accuracy"] == 2
        # the reader is addressed: listed, not excluded (part 1 step 9a on the content)
        assert reader in c["recipients"][1] and reader not in c["excluded"]
        att = parse_attestation(env["attestation"])
        assert att["router"] == "GS" and att["message_digest"] == o["digest"]
        assert reader in att["recipients"] and att["decided_ms"] == V2["router_decided_ms"]
        VerifyKey(bytes.fromhex(keys["GS"]["signing_public"])).verify(
            b"i24net/v2/attestation" + env["attestation"], env["attestation_signature"]
        )


def test_independent_reader_opens_the_v2_sender_envelope_as_the_router() -> None:
    o = open_v2(bytes.fromhex(V2["envelopes"]["sealed"]), "GS", "FR", b"i24net/v2/wrap-gs")
    assert o["env"]["attestation"] is None and o["env"]["attestation_signature"] is None
    assert o["content"]["payload"].hex() == V2["payload"]
