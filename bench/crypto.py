"""Crypto benchmark: raw PyNaCl primitives vs the project's seal / route / open.

    python -m bench.crypto [seconds]      (or: from bench.crypto import run)

``run(duration_s)`` spreads ``duration_s`` over the measurements and returns
microseconds per operation, plus ``ratio_1k`` / ``ratio_64k``: (seal + open)
divided by the sum of the primitives they call (target <= 1.25), and the
per-recipient cost of a 195-station broadcast at the router.

Envelope v2 (issue 17) rows, for 1 KiB payloads: ``v2x_*`` (HPKE X25519) and
``v2h_*`` (HPKE ML-KEM-768 + X25519) seal, router open + deliver to 1, open,
and the 195-station broadcast (total and per recipient); ``bytes_*`` the
size of a sender envelope and of one delivery, per suite (v1 too). The raw
HPKE wrap/unwrap and ML-DSA-65 vs Ed25519 sign/verify (with their sizes) are
the numbers behind the signature decision of docs/envelope.md part 2.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import mldsa
from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.public import SealedBox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, make_world  # noqa: E402

from i24net.envelope import (  # noqa: E402
    Header,
    Language,
    Precedence,
    Receiver,
    Recipients,
    Router,
    Sender,
    SharedKeys,
    new_message_id,
)
from i24net.envelope import _v2 as v2  # noqa: E402
from i24net.envelope._crypto import LABEL_WRAP_RECIPIENT  # noqa: E402
from i24net.keys import KemSuite  # noqa: E402
from i24net.stations import MEMBER_COUNTRIES  # noqa: E402


def _per_op(fn: Callable[[], object], budget_s: float) -> float:
    """Median-of-3 microseconds per call, each run lasting about budget_s / 3."""
    fn()
    results = []
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + budget_s / 3
        while True:
            for _ in range(20):
                fn()
            n += 20
            now = time.perf_counter()
            if now >= deadline:
                break
        results.append((now - start) / n * 1e6)
    return sorted(results)[1]


def run(duration_s: float = 10.0) -> dict[str, Any]:
    codes = [*sorted(MEMBER_COUNTRIES), "GS"]
    w = make_world(codes)
    fr, gs, jp = w.secrets["FR"], w.secrets["GS"], w.secrets["JP"]
    slots = 27 + 2 * 8 + 2
    b = duration_s / slots
    out: dict[str, Any] = {}
    key, nonce = os.urandom(32), os.urandom(24)
    msg52 = os.urandom(52)
    sig = fr.signing.sign(msg52).signature
    vk = fr.signing.verify_key
    out["sign"] = _per_op(lambda: fr.signing.sign(msg52), b)
    out["verify"] = _per_op(lambda: vk.verify(msg52, sig), b)
    shared = SharedKeys(gs.encryption)
    jp_pub = jp.encryption.public_key
    ids = (("GS", gs.encryption_key_id), ("JP", jp.encryption_key_id))
    digest = os.urandom(32)
    wrapped = shared.wrap(key, jp_pub, LABEL_WRAP_RECIPIENT, *ids, digest)
    out["wrap"] = _per_op(lambda: shared.wrap(key, jp_pub, LABEL_WRAP_RECIPIENT, *ids, digest), b)
    out["unwrap"] = _per_op(
        lambda: shared.unwrap(wrapped, jp_pub, LABEL_WRAP_RECIPIENT, *ids, digest), b
    )
    out["sealedbox_wrap"] = _per_op(lambda: SealedBox(jp_pub).encrypt(key), b)

    router_key = w.directory.current_encryption_key("GS", T0)
    sender = Sender(fr, router_key, store=w.store)
    router = Router(gs, w.directory, w.window(), store=w.store)
    receiver = Receiver(jp, w.directory, w.window(), store=w.store)
    for size, tag in ((1024, "1k"), (65536, "64k")):
        pt = os.urandom(size)
        hb = os.urandom(200)
        ct = crypto_aead_xchacha20poly1305_ietf_encrypt(pt, hb, nonce, key)
        out[f"aead_enc_{tag}"] = _per_op(
            lambda pt=pt, hb=hb: crypto_aead_xchacha20poly1305_ietf_encrypt(pt, hb, nonce, key), b
        )
        out[f"aead_dec_{tag}"] = _per_op(
            lambda ct=ct, hb=hb: crypto_aead_xchacha20poly1305_ietf_decrypt(ct, hb, nonce, key), b
        )
        out[f"blake2b_{tag}"] = _per_op(
            lambda ct=ct: hashlib.blake2b(ct, digest_size=32).digest(), b
        )
        header = Header(
            new_message_id(T0),
            "FR",
            fr.signing_key_id,
            Recipients.to("JP"),
            "POLICE_MESSAGE",
            Precedence.ROUTINE,
            T0,
            T0 + 3_600_000,
            Language.EN,
            PAYLOAD_FP,
        )
        sealed = sender.seal(header, pt)
        inbound = router.open(sealed, record=False)
        delivered = router.deliver(inbound, ["JP"])["JP"]
        out[f"seal_{tag}"] = _per_op(lambda h=header, pt=pt: sender.seal(h, pt), b)
        out[f"route_open_{tag}"] = _per_op(lambda s=sealed: router.open(s, record=False), b)
        out[f"route_deliver1_{tag}"] = _per_op(lambda i=inbound: router.deliver(i, ["JP"]), b)
        out[f"open_{tag}"] = _per_op(lambda d=delivered: receiver.open(d, record=False), b)
        prim_seal = out[f"aead_enc_{tag}"] + out[f"blake2b_{tag}"] + out["sign"] + out["wrap"]
        prim_open = (
            2 * out["verify"] + out[f"blake2b_{tag}"] + out["unwrap"] + out[f"aead_dec_{tag}"]
        )
        out[f"primitives_seal_open_{tag}"] = prim_seal + prim_open
        out[f"ratio_{tag}"] = (out[f"seal_{tag}"] + out[f"open_{tag}"]) / (prim_seal + prim_open)
        others = sorted(MEMBER_COUNTRIES - {"FR"})
        bc = _per_op(lambda i=inbound, o=others: router.deliver(i, o), b * 2)
        out[f"broadcast195_{tag}_total"] = bc
        out[f"broadcast195_{tag}_per_recipient"] = bc / len(others)
        if tag == "1k":
            out["bytes_sender_1k"] = len(sealed)
            out["bytes_delivery_1k"] = len(delivered)
    for suite, tag in ((KemSuite.X25519, "v2x"), (KemSuite.MLKEM768_X25519, "v2h")):
        out.update(_v2_rows(codes, suite, tag, b))
    out.update(_signature_rows(b))
    return out


def _v2_rows(codes: list[str], suite: KemSuite, tag: str, b: float) -> dict[str, float]:
    """Envelope v2 in ``suite`` for every station: the same operations as v1, 1 KiB."""
    w = make_world(codes, kem=suite)
    fr, gs, jp = w.secrets["FR"], w.secrets["GS"], w.secrets["JP"]
    out: dict[str, float] = {}
    key = os.urandom(32)
    info = os.urandom(90)
    peer = w.directory.current_encryption_key("JP", T0, version=2)
    assert jp.kem is not None
    wrapped = v2.wrap(suite, peer.public_key, key, info)  # type: ignore[arg-type]
    out[f"{tag}_hpke_wrap"] = _per_op(
        lambda: v2.wrap(suite, peer.public_key, key, info),  # type: ignore[arg-type]
        b,
    )
    out[f"{tag}_hpke_unwrap"] = _per_op(lambda: v2.unwrap(suite, jp.kem, wrapped, info), b)  # type: ignore[arg-type]
    sender = Sender(fr, w.directory.current_encryption_key("GS", T0, version=2), store=w.store)
    router = Router(gs, w.directory, w.window(), store=w.store)
    receiver = Receiver(jp, w.directory, w.window(), store=w.store)
    pt = os.urandom(1024)
    header = Header(
        new_message_id(T0),
        "FR",
        fr.signing_key_id,
        Recipients.to("JP"),
        "POLICE_MESSAGE",
        Precedence.ROUTINE,
        T0,
        T0 + 3_600_000,
        Language.EN,
        PAYLOAD_FP,
    )
    sealed = sender.seal(header, pt)
    inbound = router.open(sealed, record=False)
    delivered = router.deliver(inbound, ["JP"])["JP"]
    out[f"{tag}_seal_1k"] = _per_op(lambda: sender.seal(header, pt), b)
    out[f"{tag}_route_open_1k"] = _per_op(lambda: router.open(sealed, record=False), b)
    out[f"{tag}_route_deliver1_1k"] = _per_op(lambda: router.deliver(inbound, ["JP"]), b)
    out[f"{tag}_open_1k"] = _per_op(lambda: receiver.open(delivered, record=False), b)
    others = sorted(MEMBER_COUNTRIES - {"FR"})
    bc = _per_op(lambda: router.deliver(inbound, others), b * 2)
    out[f"{tag}_broadcast195_1k_total"] = bc
    out[f"{tag}_broadcast195_1k_per_recipient"] = bc / len(others)
    out[f"{tag}_bytes_sender_1k"] = len(sealed)
    out[f"{tag}_bytes_delivery_1k"] = len(delivered)
    return out


def _signature_rows(b: float) -> dict[str, float]:
    """ML-DSA-65 vs Ed25519 on a 52-byte message (label + digest), and the sizes."""
    msg = os.urandom(52)
    sk = mldsa.MLDSA65PrivateKey.generate()
    pk = sk.public_key()
    sig = sk.sign(msg)
    pk.verify(sig, msg)
    return {
        "mldsa65_sign": _per_op(lambda: sk.sign(msg), b),
        "mldsa65_verify": _per_op(lambda: pk.verify(sig, msg), b),
        "mldsa65_signature_bytes": len(sig),
        "mldsa65_public_key_bytes": len(pk.public_bytes_raw()),
    }


def _table(r: dict[str, Any]) -> str:
    lines = [f"{'measure':<34}{'value':>12}"]
    for k, v in r.items():
        unit = "x" if k.startswith("ratio") else "B" if "bytes" in k else "us"
        lines.append(f"{k:<34}{v:>12.2f} {unit}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_table(run(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)))
