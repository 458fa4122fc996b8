"""Seal, route and open envelopes (docs/envelope.md §2–6, and part 2 for v2).

Both versions go through the same classes: a ``Sender`` seals v1 or v2 as
its router key says (a v1 X25519 key or a v2 KEM key), ``Router.open`` and
``Receiver.open`` dispatch on the 10-byte version prefix, and
``Router.deliver`` answers in the version it received (a station is
delivered v2 with its own suite). The v2 wire and crypto are in ``_v2``.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from i24net.directory import Directory, PeerKey
from i24net.envelope import _crypto as c
from i24net.envelope import _v2 as v2
from i24net.envelope import _wire as wire
from i24net.envelope._addressing import check_addressed
from i24net.envelope._header import Header
from i24net.errors import (
    CodecError,
    EnvelopeError,
    OversizedError,
    Reason,
    VerificationError,
)
from i24net.keys import StationSecrets
from i24net.replay import DEFAULT_MAX_LIFETIME_MS, ReplayWindow
from i24net.schemas import MAGIC, SchemaStore
from i24net.stations import GS

ENVELOPE = "net.i24.Envelope"
HEADER = "net.i24.Header"
ATTESTATION = "net.i24.Attestation"
PREFIX_SIZE = 10
VERSIONS = (1, 2)
"""Envelope versions this code reads and writes."""

Rng = Callable[[int], bytes]


@functools.cache
def _default_prefixes() -> dict[bytes, int]:
    store = SchemaStore.default()
    return {MAGIC + store.fingerprint(ENVELOPE): 1, MAGIC + store.fingerprint(v2.ENVELOPE_V2): 2}


def envelope_version(data: bytes) -> int | None:
    """The version an envelope's prefix names (unverified: for metrics labels), or None."""
    return _default_prefixes().get(bytes(data[:PREFIX_SIZE]))


@dataclass(frozen=True, slots=True)
class Limits:
    """Size and lifetime bounds (docs/envelope.md §5).

    The budget: a payload of ``max_payload`` under a header of ``max_header`` makes a
    sender envelope under 1 MiB - 15 KiB, and its delivery envelope (plus the
    attestation: under 2 KiB even when it lists every station) stays under ``max_envelope``,
    which every topic takes with room to spare (``max.message.bytes`` 2 MiB)."""

    max_envelope: int = (1 << 20) + (16 << 10)
    max_payload: int = (1 << 20) - (32 << 10)
    max_header: int = 16 << 10
    max_lifetime_ms: int = DEFAULT_MAX_LIFETIME_MS


class Decision(enum.StrEnum):
    SCREEN_PASSED = "SCREEN_PASSED"
    REVIEW_APPROVED = "REVIEW_APPROVED"


@dataclass(frozen=True, slots=True)
class Attestation:
    """The router's signed statement (``net.i24.Attestation``)."""

    router: str
    router_key_id: str
    message_id: str
    message_digest: bytes
    decision: Decision
    recipients: tuple[str, ...]
    decided_ms: int
    review_id: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "router_key_id": self.router_key_id,
            "message_id": self.message_id,
            "message_digest": self.message_digest,
            "decision": self.decision.value,
            "recipients": list(self.recipients),
            "decided_ms": self.decided_ms,
            "review_id": self.review_id,
        }

    @classmethod
    def from_avro(cls, d: Mapping[str, Any]) -> Attestation:
        return cls(
            d["router"],
            d["router_key_id"],
            d["message_id"],
            d["message_digest"],
            Decision(d["decision"]),
            tuple(d["recipients"]),
            d["decided_ms"],
            d["review_id"],
        )


@dataclass(frozen=True, slots=True)
class Opened:
    """What a recipient gateway gets from a verified delivery envelope."""

    header: Header
    payload: bytes = field(repr=False)
    attestation: Attestation
    message_digest: bytes
    version: int = 1


@dataclass(frozen=True, slots=True)
class Inbound:
    """A verified sender envelope, opened at the router (pass it to ``Router.deliver``)."""

    header: Header
    payload: bytes = field(repr=False)
    message_digest: bytes
    _header_bytes: bytes = field(repr=False)
    _signature: bytes = field(repr=False)
    _nonce: bytes = field(repr=False)
    _ciphertext: bytes = field(repr=False)
    _content_key: bytes = field(repr=False)
    version: int = 1


@dataclass(slots=True)
class _Parsed:
    header_bytes: bytes
    header: Header
    signature: bytes
    nonce: bytes
    ciphertext: bytes
    wrap: dict[str, Any]
    attestation: bytes | None
    attestation_signature: bytes | None


def _avro_bytes(b: bytes) -> bytes:
    return wire.long_bytes(len(b)) + b


class _Codec:
    """Envelope framing: hand-written strict Avro (``_wire``), or the generic SchemaStore.

    The hand-written path is used whenever the store's envelope, header and
    attestation have the v1 field layout (``_wire.layout_matches``); both
    paths accept and produce exactly the same bytes (tests/unit/test_envelope_wire.py).
    """

    def __init__(
        self, store: SchemaStore | None, limits: Limits, *, fast: bool | None = None
    ) -> None:
        self.store = store or SchemaStore.default()
        self.limits = limits
        self.env_prefix = MAGIC + self.store.fingerprint(ENVELOPE)
        self.hdr_prefix = MAGIC + self.store.fingerprint(HEADER)
        self.fast = wire.layout_matches(self.store) if fast is None else fast
        if self.fast:
            self._hdr = wire.HeaderCodec(self.store)
            self._att = wire.AttestationCodec(self.store, Decision)
        try:
            self.v2_prefix: bytes | None = MAGIC + self.store.fingerprint(v2.ENVELOPE_V2)
        except Exception:  # a store without the v2 schemas reads v1 only
            self.v2_prefix = None
        self._v2: v2.CodecV2 | None = None

    @property
    def codec2(self) -> v2.CodecV2:
        if self._v2 is None:
            self._v2 = v2.CodecV2(self.store, self.limits.max_envelope, self.limits.max_header)
        return self._v2

    def is_v2(self, data: bytes) -> bool:
        return self.v2_prefix is not None and bytes(data[:PREFIX_SIZE]) == self.v2_prefix

    def encode_header(self, header: Header) -> bytes:
        problems = header.problems(self.limits.max_lifetime_ms)
        if problems:
            raise EnvelopeError(f"invalid header: {'; '.join(problems)}")
        if self.fast:
            try:
                hb = self._hdr.encode(header)
            except (wire.WireError, AttributeError, TypeError) as exc:
                raise EnvelopeError(f"header does not match net.i24.Header: {exc}") from exc
        else:
            try:
                hb = self.store.encode_single(HEADER, header.to_avro())
            except CodecError as exc:
                raise EnvelopeError(f"header does not match net.i24.Header: {exc}") from exc
        if len(hb) > self.limits.max_header or len(hb) > self.store.max_size:
            raise OversizedError(f"header is {len(hb)} bytes, over {self.limits.max_header}")
        return hb

    def encode_attestation(self, att: Attestation) -> bytes:
        if not self.fast:
            return self.store.encode(ATTESTATION, att.to_avro())
        try:
            return self._att.encode(
                att.router,
                att.router_key_id,
                att.message_id,
                att.message_digest,
                att.decision,
                att.recipients,
                att.decided_ms,
                att.review_id,
            )
        except (wire.WireError, AttributeError, TypeError) as exc:
            raise EnvelopeError(f"attestation does not match {ATTESTATION}: {exc}") from exc

    def decode_attestation(self, ab: bytes) -> Attestation:
        """Strict decode; raises VerificationError(MALFORMED)."""
        try:
            if self.fast:
                if len(ab) > self.store.max_size:
                    raise wire.WireError("attestation over the store's size bound")
                return Attestation(*self._att.decode(ab))
            return Attestation.from_avro(self.store.decode(ATTESTATION, ab))
        except (CodecError, ValueError, KeyError) as exc:
            raise VerificationError(Reason.MALFORMED, f"attestation: {exc}") from None

    def body_parts(self, hb: bytes, sig: bytes, nonce: bytes, ct: bytes) -> tuple[bytes, ...]:
        """The envelope up to the wrap, as parts to join (the ciphertext is not copied)."""
        return (
            self.env_prefix + _avro_bytes(hb) + _avro_bytes(sig) + _avro_bytes(nonce),
            wire.long_bytes(len(ct)),
            ct,
        )

    def body_prefix(self, hb: bytes, sig: bytes, nonce: bytes, ct: bytes) -> bytes:
        return b"".join(self.body_parts(hb, sig, nonce, ct))

    def wrap(self, wrapper: tuple[str, str], recipient: tuple[str, str], wrapped: bytes) -> bytes:
        """Avro binary of a ``net.i24.KeyWrap`` (five length-prefixed fields), written directly."""
        return b"".join(
            (
                _avro_bytes(wrapper[0].encode()),
                _avro_bytes(wrapper[1].encode()),
                _avro_bytes(recipient[0].encode()),
                _avro_bytes(recipient[1].encode()),
                _avro_bytes(wrapped),
            )
        )

    def parse(self, data: bytes) -> _Parsed:
        lim = self.limits
        if len(data) > lim.max_envelope:
            raise VerificationError(Reason.OVERSIZED, f"{len(data)} bytes > {lim.max_envelope}")
        if bytes(data[:PREFIX_SIZE]) != self.env_prefix:
            raise VerificationError(Reason.BAD_VERSION, f"prefix {bytes(data[:10]).hex()}")
        if not self.fast:
            return self._parse_generic(data)
        if len(data) > self.store.max_size:
            raise VerificationError(Reason.OVERSIZED, f"{len(data)} bytes > {self.store.max_size}")
        d = data if type(data) is bytes else bytes(data)
        try:
            hb, p = wire.read_bytes(d, PREFIX_SIZE)
            sig, p = wire.read_bytes(d, p)
            nonce, p = wire.read_bytes(d, p)
            ct, p = wire.read_bytes(d, p)
            wrapper, p = wire.read_str(d, p)
            wrapper_key_id, p = wire.read_str(d, p)
            recipient, p = wire.read_str(d, p)
            recipient_key_id, p = wire.read_str(d, p)
            wrapped, p = wire.read_bytes(d, p)
            att, p = wire.read_optional_bytes(d, p)
            att_sig, p = wire.read_optional_bytes(d, p)
            wire.done(d, p)
        except wire.WireError as exc:
            raise VerificationError(Reason.MALFORMED, f"envelope: {exc}") from None
        wrap = {
            "wrapper": wrapper,
            "wrapper_key_id": wrapper_key_id,
            "recipient": recipient,
            "recipient_key_id": recipient_key_id,
            "wrapped": wrapped,
        }
        self._check_sizes(sig, nonce, ct, wrap, att, att_sig)
        self._check_header_prefix(hb)
        try:
            header = self._hdr.decode(hb)
        except (wire.WireError, ValueError) as exc:
            raise VerificationError(Reason.MALFORMED, f"header: {exc}") from None
        return self._finish(hb, header, sig, nonce, ct, wrap, att, att_sig)

    def _check_sizes(
        self,
        sig: bytes,
        nonce: bytes,
        ct: bytes,
        wrap: dict[str, Any],
        att: bytes | None,
        att_sig: bytes | None,
    ) -> None:
        if (
            len(sig) != c.SIG_SIZE
            or len(nonce) != c.NONCE_SIZE
            or len(ct) < c.TAG_SIZE
            or len(wrap["wrapped"]) != c.WRAPPED_SIZE
            or (att is None) != (att_sig is None)
            or (att_sig is not None and len(att_sig) != c.SIG_SIZE)
        ):
            raise VerificationError(Reason.MALFORMED, "a field has the wrong size")

    def _check_header_prefix(self, hb: bytes) -> None:
        if len(hb) > self.limits.max_header:
            raise VerificationError(Reason.MALFORMED, f"header over {self.limits.max_header} bytes")
        if hb[:PREFIX_SIZE] != self.hdr_prefix:
            raise VerificationError(Reason.BAD_VERSION, f"header prefix {hb[:10].hex()}")

    def _finish(
        self,
        hb: bytes,
        header: Header,
        sig: bytes,
        nonce: bytes,
        ct: bytes,
        wrap: dict[str, Any],
        att: bytes | None,
        att_sig: bytes | None,
    ) -> _Parsed:
        problems = header.problems(self.limits.max_lifetime_ms)
        if problems:
            raise VerificationError(Reason.MALFORMED, "; ".join(problems))
        return _Parsed(hb, header, sig, nonce, ct, wrap, att, att_sig)

    def _parse_generic(self, data: bytes) -> _Parsed:
        """The same checks through the generic SchemaStore codec (decode, then re-encode)."""
        try:
            _, d = self.store.decode_single(data, expected=ENVELOPE)
        except OversizedError as exc:
            raise VerificationError(Reason.OVERSIZED, str(exc)) from None
        except CodecError as exc:
            raise VerificationError(Reason.MALFORMED, f"envelope: {exc}") from None
        wrap = d["wrap"]
        att, att_sig = d["attestation"], d["attestation_signature"]
        self._check_sizes(d["sender_signature"], d["nonce"], d["ciphertext"], wrap, att, att_sig)
        hb = d["header"]
        self._check_header_prefix(hb)
        try:
            _, hd = self.store.decode_single(hb, expected=HEADER)
            header = Header.from_avro(hd)
        except (CodecError, ValueError, KeyError) as exc:
            raise VerificationError(Reason.MALFORMED, f"header: {exc}") from None
        return self._finish(
            hb, header, d["sender_signature"], d["nonce"], d["ciphertext"], wrap, att, att_sig
        )


def _encrypt_and_sign(
    s: StationSecrets, codec: _Codec, rng: Rng, header: Header, payload: bytes
) -> Inbound:
    """Encrypt the payload under a fresh content key and sign it as ``s`` (sender side)."""
    if (header.sender, header.sender_key_id) != (s.station, s.signing_key_id):
        raise EnvelopeError(
            f"header names sender {header.sender}/{header.sender_key_id}, "
            f"the keys are {s.station}/{s.signing_key_id}"
        )
    if len(payload) > codec.limits.max_payload:
        raise OversizedError(f"payload is {len(payload)} bytes, over {codec.limits.max_payload}")
    hb = codec.encode_header(header)
    key = rng(c.KEY_SIZE)
    nonce = rng(c.NONCE_SIZE)
    ct = c.seal_body(key, nonce, payload, hb)
    digest = c.message_digest(hb, nonce, ct)
    sig = s.signing.sign(c.LABEL_SENDER_SIG + digest).signature
    return Inbound(header, payload, digest, hb, sig, nonce, ct, key)


def _encrypt_and_sign_v2(
    s: StationSecrets, codec: _Codec, rng: Rng, header: Header, payload: bytes
) -> Inbound:
    """The v2 sender side: commit to a fresh content key, encrypt the hidden header
    fields with the payload, sign the clear header, nonce and ciphertext."""
    if (header.sender, header.sender_key_id) != (s.station, s.signing_key_id):
        raise EnvelopeError(
            f"header names sender {header.sender}/{header.sender_key_id}, "
            f"the keys are {s.station}/{s.signing_key_id}"
        )
    lim = codec.limits
    if len(payload) > lim.max_payload:
        raise OversizedError(f"payload is {len(payload)} bytes, over {lim.max_payload}")
    problems = header.problems(lim.max_lifetime_ms)
    if problems:
        raise EnvelopeError(f"invalid header: {'; '.join(problems)}")
    c2 = codec.codec2
    key = rng(c.KEY_SIZE)
    nonce = rng(c.NONCE_SIZE)
    try:
        size = c2.metadata_size(header)
        hb = c2.encode_header(header, v2.key_commitment(key))
        content = c2.encode_content(header, payload)
    except (wire.WireError, AttributeError, TypeError) as exc:
        raise EnvelopeError(f"header does not match {v2.HEADER_V2}: {exc}") from exc
    if size > lim.max_header:
        raise OversizedError(f"header is {size} bytes, over {lim.max_header}")
    ct = c.seal_body(v2.body_key(key), nonce, content, hb)
    digest = v2.message_digest(hb, nonce, ct)
    sig = s.signing.sign(v2.LABEL_SENDER_SIG + digest).signature
    return Inbound(header, payload, digest, hb, sig, nonce, ct, key, version=2)


def _decrypt_v2(codec: _Codec, p: v2.ParsedV2, key: bytes) -> tuple[Header, bytes]:
    """Steps 10a–12 of part 2 §6: commitment, body, then the hidden fields' rules."""
    v2.check_commitment(key, p.header.key_commitment)
    content = c.open_body(v2.body_key(key), p.nonce, p.ciphertext, p.header_bytes)
    try:
        header, payload = codec.codec2.decode_content(p.header, content)
    except (wire.WireError, ValueError) as exc:
        raise VerificationError(Reason.MALFORMED, f"sealed content: {exc}") from None
    problems = header.problems(codec.limits.max_lifetime_ms)
    if problems:
        raise VerificationError(Reason.MALFORMED, "; ".join(problems))
    return header, payload


def _parse_v2(codec: _Codec, data: bytes) -> v2.ParsedV2:
    """Steps 1–3 of part 2 §6, with the rules of §2.3 that concern the clear fields."""
    p = codec.codec2.parse(data)
    problems = p.header.placeholder().problems(codec.limits.max_lifetime_ms)
    if problems:
        raise VerificationError(Reason.MALFORMED, "; ".join(problems))
    return p


def _unwrap_and_decrypt(
    p: _Parsed, shared: c.SharedKeys, peer: PeerKey, label: bytes, digest: bytes
) -> tuple[bytes, bytes]:
    """Unwrap the content key from ``p``'s wrap (already checked to be ours), then decrypt."""
    w = p.wrap
    key = shared.unwrap(
        w["wrapped"],
        peer.public_key,
        label,
        (w["wrapper"], w["wrapper_key_id"]),
        (w["recipient"], w["recipient_key_id"]),
        digest,
    )
    return key, c.open_body(key, p.nonce, p.ciphertext, p.header_bytes)


def _verify_sender(
    p: _Parsed | v2.ParsedV2,
    directory: Directory,
    replay: ReplayWindow,
    appended_ms: int | None = None,
) -> bytes:
    """Steps 4–7: sender key, signature, time, replay. Returns the message digest.

    ``appended_ms`` is a time the sender does not choose (the broker's append time at
    the router): a key revoked (or suspended) by then refuses the message, however far
    back the sender dated ``created_ms``. The same steps for both versions, with each
    version's digest and label."""
    h = p.header
    vk = directory.signing_key(h.sender, h.sender_key_id, h.created_ms)
    if appended_ms is not None and appended_ms > h.created_ms:
        try:
            directory.signing_key(h.sender, h.sender_key_id, appended_ms)
        except VerificationError as exc:
            if exc.reason in (Reason.REVOKED_KEY, Reason.SUSPENDED_KEY):
                raise
    if isinstance(p, v2.ParsedV2):
        digest, label = (
            v2.message_digest(p.header_bytes, p.nonce, p.ciphertext),
            v2.LABEL_SENDER_SIG,
        )
    else:
        digest, label = c.message_digest(p.header_bytes, p.nonce, p.ciphertext), c.LABEL_SENDER_SIG
    try:
        vk.verify(label + digest, p.signature)
    except BadSignatureError:
        raise VerificationError(Reason.BAD_SIGNATURE, f"sender {h.sender}") from None
    replay.check(h.message_id, h.created_ms, h.expires_ms)
    return digest


class _Holder:
    """Own keys (current first, then older ones during rotation), with shared-key caches."""

    def __init__(self, secrets: StationSecrets, previous: Sequence[StationSecrets]) -> None:
        self.secrets = secrets
        self._by_enc = {s.encryption_key_id: (s, c.SharedKeys(s.encryption)) for s in previous}
        self._by_enc[secrets.encryption_key_id] = (secrets, c.SharedKeys(secrets.encryption))
        self._by_kem = {s.kem_key_id: s for s in (*previous, secrets) if s.kem_key_id is not None}

    def own(self, key_id: str) -> tuple[StationSecrets, c.SharedKeys] | None:
        return self._by_enc.get(key_id)

    def own_kem(self, key_id: str, suite: object) -> StationSecrets | None:
        """The key set holding KEM key ``key_id`` of ``suite`` (v2), or None."""
        s = self._by_kem.get(key_id)
        return s if s is not None and s.kem is not None and s.kem_suite == suite else None


class Sender:
    """A gateway's sealer: ``Sender(secrets, router_key).seal(header, payload) -> bytes``."""

    def __init__(
        self,
        secrets: StationSecrets,
        router_key: PeerKey,
        *,
        store: SchemaStore | None = None,
        rng: Rng = os.urandom,
        limits: Limits = Limits(),
    ) -> None:
        self.secrets = secrets
        self.router_key = router_key
        self.rng = rng
        self._codec = _Codec(store, limits)
        self._shared = c.SharedKeys(secrets.encryption)

    @property
    def version(self) -> int:
        """The envelope version this sender seals (its router key's)."""
        return 1 if self.router_key.suite is None else 2

    def seal(self, header: Header, payload: bytes) -> bytes:
        s = self.secrets
        rk = self.router_key
        if rk.suite is not None:
            m = _encrypt_and_sign_v2(s, self._codec, self.rng, header, payload)
            c2 = self._codec.codec2
            info = v2.wrap_info(
                v2.LABEL_WRAP_GS, s.station, rk.station, rk.key_id, m.message_digest
            )
            wrapped = v2.wrap(rk.suite, rk.public_key, m._content_key, info)  # type: ignore[arg-type]
            return b"".join(
                (
                    *c2.body_parts(m._header_bytes, m._signature, m._nonce, m._ciphertext),
                    c2.wrap_record(rk.suite, rk.station, rk.key_id, wrapped),
                    b"\x00\x00",
                )
            )
        m = _encrypt_and_sign(s, self._codec, self.rng, header, payload)
        wrapper = (s.station, s.encryption_key_id)
        recipient = (rk.station, rk.key_id)
        wrapped = self._shared.wrap(
            m._content_key, rk.public_key, c.LABEL_WRAP_GS, wrapper, recipient, m.message_digest
        )
        return b"".join(
            (
                *self._codec.body_parts(m._header_bytes, m._signature, m._nonce, m._ciphertext),
                self._codec.wrap(wrapper, recipient, wrapped),
                b"\x00\x00",
            )
        )


class Router:
    """The GS side: ``open`` verifies and decrypts a sender envelope, ``deliver`` re-wraps.

    ``deliver`` signs **one** attestation listing every recipient and makes
    one envelope per recipient (a symmetric wrap each). ``originate`` makes
    the delivery envelopes of a message the GS itself sends (status notices)
    directly, without sealing it to itself and opening it again.
    """

    def __init__(
        self,
        secrets: StationSecrets,
        directory: Directory,
        replay: ReplayWindow,
        *,
        previous: Sequence[StationSecrets] = (),
        store: SchemaStore | None = None,
        limits: Limits = Limits(),
        rng: Rng = os.urandom,
    ) -> None:
        self.directory = directory
        self.replay = replay
        self.rng = rng
        self._holder = _Holder(secrets, previous)
        self._codec = _Codec(store, limits)

    @property
    def station(self) -> str:
        return self._holder.secrets.station

    def open(self, data: bytes, *, record: bool = True, appended_ms: int | None = None) -> Inbound:
        """Steps 1–11 at the router. ``record=False`` leaves ``replay.record`` to the caller;
        ``appended_ms``: the broker's append time of the record (see ``_verify_sender``)."""
        if self._codec.is_v2(data):
            return self._open_v2(data, record, appended_ms)
        p = self._codec.parse(data)
        h = p.header
        digest = _verify_sender(p, self.directory, self.replay, appended_ms)
        if p.attestation is not None:
            raise VerificationError(Reason.MALFORMED, "a sender envelope carries an attestation")
        w = p.wrap
        mine = self._holder.own(w["recipient_key_id"])
        if w["recipient"] != self.station or w["wrapper"] != h.sender or mine is None:
            raise VerificationError(Reason.WRONG_RECIPIENT, f"wrap for {w['recipient']}")
        peer = self.directory.encryption_key(h.sender, w["wrapper_key_id"], h.created_ms)
        key, payload = _unwrap_and_decrypt(p, mine[1], peer, c.LABEL_WRAP_GS, digest)
        if record:
            self.replay.record(h.message_id, h.expires_ms)
        return Inbound(h, payload, digest, p.header_bytes, p.signature, p.nonce, p.ciphertext, key)

    def _open_v2(self, data: bytes, record: bool, appended_ms: int | None) -> Inbound:
        """Part 2 §6 at the router."""
        p = _parse_v2(self._codec, data)
        h = p.header
        digest = _verify_sender(p, self.directory, self.replay, appended_ms)
        if p.attestation is not None:
            raise VerificationError(Reason.MALFORMED, "a sender envelope carries an attestation")
        mine = self._holder.own_kem(p.recipient_key_id, p.suite)
        if p.recipient != self.station or mine is None or mine.kem is None:
            raise VerificationError(Reason.WRONG_RECIPIENT, f"wrap for {p.recipient}")
        info = v2.wrap_info(v2.LABEL_WRAP_GS, h.sender, p.recipient, p.recipient_key_id, digest)
        key = v2.unwrap(p.suite, mine.kem, p.wrapped, info)
        header, payload = _decrypt_v2(self._codec, p, key)
        if record:
            self.replay.record(h.message_id, h.expires_ms)
        return Inbound(
            header, payload, digest, p.header_bytes, p.signature, p.nonce, p.ciphertext, key, 2
        )

    def originate(
        self,
        header: Header,
        payload: bytes,
        recipients: Iterable[str],
        *,
        version: int | None = None,
        decision: Decision = Decision.SCREEN_PASSED,
        review_id: str | None = None,
    ) -> dict[str, bytes]:
        """Delivery envelopes, keyed by station, of a message the GS itself sends.

        ``header.sender`` must be this router's station and signing key. The
        result is byte for byte what ``Sender(gs).seal`` -> ``open`` ->
        ``deliver`` would give for the same content key and nonce (the same
        sender signature, one attestation, one wrap per recipient), without
        the wrap to the GS and the verification of its own envelope.

        ``version`` None: 2 when every recipient has a usable v2 key now, else 1.
        """
        stations = list(recipients)
        if version is None:
            now = self.replay.clock()
            version = (
                2
                if stations
                and all(2 in self.directory.envelope_versions(st, now) for st in stations)
                else 1
            )
        if version not in VERSIONS:
            raise EnvelopeError(f"envelope version {version} does not exist")
        make = _encrypt_and_sign if version == 1 else _encrypt_and_sign_v2
        inbound = make(self._holder.secrets, self._codec, self.rng, header, payload)
        return self.deliver(inbound, stations, decision=decision, review_id=review_id)

    def deliver(
        self,
        inbound: Inbound,
        recipients: Iterable[str],
        *,
        decision: Decision = Decision.SCREEN_PASSED,
        review_id: str | None = None,
        suspended_ok: bool = False,
    ) -> dict[str, bytes]:
        """One delivery envelope per recipient station, keyed by station code
        (``suspended_ok``: see ``Directory.current_encryption_key``), in ``inbound.version``:
        in v2 each recipient's wrap is made to its own current KEM key and suite."""
        now = self.replay.clock()
        version = inbound.version
        stations = tuple(sorted(set(recipients)))
        peers = []
        for st in stations:
            try:
                peers.append(
                    self.directory.current_encryption_key(
                        st, now, version=version, suspended_ok=suspended_ok
                    )
                )
            except VerificationError as exc:
                raise VerificationError(Reason.UNKNOWN_RECIPIENT, f"{st}: {exc.detail}") from None
        s = self._holder.secrets
        att = Attestation(
            s.station,
            s.signing_key_id,
            inbound.header.message_id,
            inbound.message_digest,
            decision,
            stations,
            now,
            review_id,
        )
        ab = self._codec.encode_attestation(att)
        label = c.LABEL_ATTESTATION if version == 1 else v2.LABEL_ATTESTATION
        asig = s.signing.sign(label + ab).signature
        tail = b"\x02" + _avro_bytes(ab) + b"\x02" + _avro_bytes(asig)
        if version == 2:
            return self._deliver_v2(inbound, peers, tail)
        head = self._codec.body_parts(
            inbound._header_bytes, inbound._signature, inbound._nonce, inbound._ciphertext
        )
        shared = self._holder.own(s.encryption_key_id)
        assert shared is not None
        wrapper = (s.station, s.encryption_key_id)
        out: dict[str, bytes] = {}
        for peer in peers:
            recipient = (peer.station, peer.key_id)
            wrapped = shared[1].wrap(
                inbound._content_key,
                peer.public_key,
                c.LABEL_WRAP_RECIPIENT,
                wrapper,
                recipient,
                inbound.message_digest,
            )
            out[peer.station] = b"".join(
                (*head, self._codec.wrap(wrapper, recipient, wrapped), tail)
            )
        return out

    def _deliver_v2(self, inbound: Inbound, peers: list[PeerKey], tail: bytes) -> dict[str, bytes]:
        """One HPKE wrap per recipient, to its own suite; the rest is shared bytes."""
        c2 = self._codec.codec2
        head = b"".join(
            c2.body_parts(
                inbound._header_bytes, inbound._signature, inbound._nonce, inbound._ciphertext
            )
        )
        me = self.station
        key, digest = inbound._content_key, inbound.message_digest
        out: dict[str, bytes] = {}
        for peer in peers:
            assert peer.suite is not None
            info = v2.wrap_info(v2.LABEL_WRAP_RECIPIENT, me, peer.station, peer.key_id, digest)
            wrapped = v2.wrap(peer.suite, peer.public_key, key, info)  # type: ignore[arg-type]
            out[peer.station] = b"".join(
                (head, c2.wrap_record(peer.suite, peer.station, peer.key_id, wrapped), tail)
            )
        return out


class Receiver:
    """A recipient gateway: ``Receiver(secrets, directory, replay).open(data) -> Opened``."""

    def __init__(
        self,
        secrets: StationSecrets,
        directory: Directory,
        replay: ReplayWindow,
        *,
        router: str = GS,
        previous: Sequence[StationSecrets] = (),
        store: SchemaStore | None = None,
        limits: Limits = Limits(),
    ) -> None:
        self.directory = directory
        self.replay = replay
        self.router = router
        self._holder = _Holder(secrets, previous)
        self._codec = _Codec(store, limits)

    def open(self, data: bytes, *, record: bool = True) -> Opened:
        """Steps 1–11 for a delivery envelope (part 2 §6 for v2)."""
        if self._codec.is_v2(data):
            return self._open_v2(data, record)
        p = self._codec.parse(data)
        h = p.header
        digest = _verify_sender(p, self.directory, self.replay)
        att = self._attestation(p, digest)
        w = p.wrap
        me = self._holder.secrets.station
        mine = self._holder.own(w["recipient_key_id"])
        if (
            w["recipient"] != me
            or mine is None
            or me not in att.recipients
            or w["wrapper"] != self.router
        ):
            raise VerificationError(Reason.WRONG_RECIPIENT, f"wrap for {w['recipient']}")
        check_addressed(h, me, self.directory)
        peer = self.directory.encryption_key(self.router, w["wrapper_key_id"], att.decided_ms)
        _, payload = _unwrap_and_decrypt(p, mine[1], peer, c.LABEL_WRAP_RECIPIENT, digest)
        if record:
            self.replay.record(h.message_id, h.expires_ms)
        return Opened(h, payload, att, digest)

    def _open_v2(self, data: bytes, record: bool) -> Opened:
        """Part 2 §6 at a recipient: addressing is checked on the decrypted header."""
        p = _parse_v2(self._codec, data)
        h = p.header
        digest = _verify_sender(p, self.directory, self.replay)
        att = self._attestation(p, digest)
        me = self._holder.secrets.station
        mine = self._holder.own_kem(p.recipient_key_id, p.suite)
        if p.recipient != me or mine is None or mine.kem is None or me not in att.recipients:
            raise VerificationError(Reason.WRONG_RECIPIENT, f"wrap for {p.recipient}")
        info = v2.wrap_info(v2.LABEL_WRAP_RECIPIENT, self.router, me, p.recipient_key_id, digest)
        key = v2.unwrap(p.suite, mine.kem, p.wrapped, info)
        header, payload = _decrypt_v2(self._codec, p, key)
        check_addressed(header, me, self.directory)
        if record:
            self.replay.record(h.message_id, h.expires_ms)
        return Opened(header, payload, att, digest, 2)

    def _attestation(self, p: _Parsed | v2.ParsedV2, digest: bytes) -> Attestation:
        if p.attestation is None or p.attestation_signature is None:
            raise VerificationError(Reason.BAD_ATTESTATION, "delivery without attestation")
        att = self._codec.decode_attestation(p.attestation)
        if att.router != self.router:
            raise VerificationError(Reason.BAD_ATTESTATION, f"attested by {att.router}")
        vk: VerifyKey = self.directory.signing_key(att.router, att.router_key_id, att.decided_ms)
        label = v2.LABEL_ATTESTATION if isinstance(p, v2.ParsedV2) else c.LABEL_ATTESTATION
        try:
            vk.verify(label + p.attestation, p.attestation_signature)
        except BadSignatureError:
            raise VerificationError(Reason.BAD_ATTESTATION, "bad router signature") from None
        skew = self.replay.skew_ms
        if (
            att.message_id != p.header.message_id
            or att.message_digest != digest
            or not p.header.created_ms - skew <= att.decided_ms <= self.replay.clock() + skew
        ):
            raise VerificationError(Reason.BAD_ATTESTATION, "attestation is for another message")
        return att


def seal(
    header: Header,
    payload: bytes,
    sender: StationSecrets,
    router_key: PeerKey,
    *,
    store: SchemaStore | None = None,
    rng: Rng = os.urandom,
    limits: Limits = Limits(),
) -> bytes:
    """One-shot :meth:`Sender.seal` (a long-lived ``Sender`` caches the shared key)."""
    return Sender(sender, router_key, store=store, rng=rng, limits=limits).seal(header, payload)


def open_delivery(
    data: bytes,
    recipient: StationSecrets,
    directory: Directory,
    replay: ReplayWindow,
    *,
    router: str = GS,
    store: SchemaStore | None = None,
    limits: Limits = Limits(),
    record: bool = True,
) -> Opened:
    """One-shot :meth:`Receiver.open`."""
    return Receiver(recipient, directory, replay, router=router, store=store, limits=limits).open(
        data, record=record
    )
