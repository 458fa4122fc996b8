"""Envelope v2: HPKE wraps, key commitment, encrypted metadata (docs/envelope.md, part 2).

What changes from v1, and why (the spec gives the full argument):

- **Wraps** are HPKE (RFC 9180) Base mode to the reader's KEM key, under a
  fresh ephemeral key per wrap: no static-static secret exists, so a
  station's long-term keys open nothing it *sent*, and once a KEM secret is
  destroyed nothing wrapped to it opens. The hybrid suite (ML-KEM-768 +
  X25519) also holds against a recorder who later has a quantum computer.
- **Key commitment**: Base mode is unauthenticated (anyone can seal a key to
  a station), so the wrap cannot say *which* key is the message's. The
  signed header carries ``key_commitment = BLAKE2b-256(key=K,
  "i24net/v2/key-commitment")`` and the body is encrypted under
  ``BLAKE2b-256(key=K, "i24net/v2/body-key")``: one signed (H, N, C) has
  exactly one content key, hence one plaintext, whoever made the wrap.
- **Metadata**: the clear header keeps what a reader needs before
  decrypting; addressing, language, handling, grading, offence categories
  and the payload fingerprint travel encrypted with the payload
  (``net.i24.SealedContent``).

This module is the wire and the crypto; ``_envelope`` puts them in the
verification order of the spec. The codec is hand-written strict Avro like
``_wire`` (tests/unit/test_envelope_v2.py checks it against the generic
SchemaStore codec).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hpke

from i24net.envelope import _crypto as c
from i24net.envelope import _wire as wire
from i24net.envelope._header import Header, Language, Precedence, Recipients, RecipientsMode
from i24net.errors import Reason, VerificationError
from i24net.keys import KemPrivate, KemPublic, KemSuite
from i24net.schemas import MAGIC, SchemaStore

ENVELOPE_V2 = "net.i24.EnvelopeV2"
HEADER_V2 = "net.i24.HeaderV2"
SEALED_CONTENT = "net.i24.SealedContent"
KEM_SUITE = "net.i24.KemSuite"

LABEL_MESSAGE = b"i24net/v2/message"
LABEL_SENDER_SIG = b"i24net/v2/sender-sig"
LABEL_ATTESTATION = b"i24net/v2/attestation"
LABEL_WRAP_GS = b"i24net/v2/wrap-gs"
LABEL_WRAP_RECIPIENT = b"i24net/v2/wrap-recipient"
LABEL_KEY_COMMITMENT = b"i24net/v2/key-commitment"
LABEL_BODY_KEY = b"i24net/v2/body-key"

COMMITMENT_SIZE = 32
_HPKE = {
    KemSuite.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    KemSuite.MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305
    ),
}
WRAPPED_SIZE = {
    KemSuite.X25519: 32 + c.KEY_SIZE + c.TAG_SIZE,  # 80
    KemSuite.MLKEM768_X25519: 1120 + c.KEY_SIZE + c.TAG_SIZE,  # 1168
}


def symbol(suite: KemSuite) -> str:
    """The ``net.i24.KemSuite`` symbol of a suite: ``hpke-x25519`` -> ``HPKE_X25519``."""
    return suite.value.upper().replace("-", "_")


# --- crypto --------------------------------------------------------------------


def key_commitment(key: bytes) -> bytes:
    """Commits to the content key: collision resistance of BLAKE2b (the key is its first
    block) means no second key gives the same value."""
    return hashlib.blake2b(LABEL_KEY_COMMITMENT, digest_size=COMMITMENT_SIZE, key=key).digest()


def body_key(key: bytes) -> bytes:
    """The body's AEAD key, derived (not ``K`` itself): ``K`` is then only ever a BLAKE2b
    key, and the commitment says nothing about the AEAD key (PRF outputs under distinct
    labels)."""
    return hashlib.blake2b(LABEL_BODY_KEY, digest_size=c.KEY_SIZE, key=key).digest()


def message_digest(header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    """As v1 (§3), with the v2 label: no v1 signature verifies as a v2 one."""
    h = hashlib.blake2b(LABEL_MESSAGE, digest_size=c.DIGEST_SIZE)
    h.update(len(header).to_bytes(4, "big"))
    h.update(header)
    h.update(nonce)
    h.update(ciphertext)
    return h.digest()


def wrap_info(
    label: bytes, wrapper: str, recipient: str, recipient_key_id: str, digest: bytes
) -> bytes:
    """HPKE ``info``: label || lp(wrapping station) || lp(recipient) || lp(key id) || digest."""
    return label + c._lp(wrapper) + c._lp(recipient) + c._lp(recipient_key_id) + digest


def wrap(suite: KemSuite, public: KemPublic, content_key: bytes, info: bytes) -> bytes:
    """HPKE Base-mode single-shot seal of the content key: enc || ct."""
    return _HPKE[suite].encrypt(content_key, public, info=info)


def unwrap(suite: KemSuite, private: KemPrivate, wrapped: bytes, info: bytes) -> bytes:
    try:
        key = _HPKE[suite].decrypt(wrapped, private, info=info)
    except Exception:  # cryptography raises InvalidTag or ValueError: one opaque reason
        raise VerificationError(Reason.DECRYPT_FAILED, "content key does not unwrap") from None
    if len(key) != c.KEY_SIZE:
        raise VerificationError(Reason.DECRYPT_FAILED, "content key has the wrong size")
    return key


def check_commitment(key: bytes, commitment: bytes) -> None:
    """Step 10a: the unwrapped key is the one the sender signed for, else DECRYPT_FAILED."""
    if not hmac.compare_digest(key_commitment(key), commitment):
        raise VerificationError(
            Reason.DECRYPT_FAILED, "key commitment: the wrapped key is not the message's"
        )


# --- wire ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClearHeader:
    """``net.i24.HeaderV2``: the fields a reader needs before decrypting."""

    message_id: str
    sender: str
    sender_key_id: str
    kind: str
    precedence: Precedence
    created_ms: int
    expires_ms: int
    key_commitment: bytes

    def placeholder(self) -> Header:
        """A full :class:`Header` with neutral values for the encrypted fields, to apply the
        rules of §2.3 that concern the clear ones before decrypting."""
        return Header(
            self.message_id,
            self.sender,
            self.sender_key_id,
            Recipients(RecipientsMode.ALL),
            self.kind,
            self.precedence,
            self.created_ms,
            self.expires_ms,
            Language.EN,
            bytes(8),
        )


@dataclass(slots=True)
class ParsedV2:
    header_bytes: bytes
    header: ClearHeader
    signature: bytes
    nonce: bytes
    ciphertext: bytes
    suite: KemSuite
    recipient: str
    recipient_key_id: str
    wrapped: bytes
    attestation: bytes | None
    attestation_signature: bytes | None


class CodecV2:
    """Strict hand-written Avro of the v2 records (same rules as ``_wire``)."""

    def __init__(self, store: SchemaStore, max_envelope: int, max_header: int) -> None:
        self.store = store
        self.max_envelope = max_envelope
        self.max_header = max_header
        self.env_prefix = MAGIC + store.fingerprint(ENVELOPE_V2)
        self.hdr_prefix = MAGIC + store.fingerprint(HEADER_V2)
        self.content_prefix = MAGIC + store.fingerprint(SEALED_CONTENT)
        self._h = wire.HeaderCodec(store)  # the shared enums' tables
        suites = list(store.schema(KEM_SUITE)["symbols"])
        by_symbol = {symbol(s): s for s in KemSuite}
        self.suites: list[KemSuite | None] = [by_symbol.get(x) for x in suites]
        self.w_suites = {s: i for i, s in enumerate(self.suites) if s is not None}

    # -- header ---------------------------------------------------------------

    def encode_header(self, h: Header, commitment: bytes) -> bytes:
        """The clear header of ``h`` (raises WireError when it does not fit the schema)."""
        sym = self._h._sym
        if not isinstance(h.created_ms, int) or not isinstance(h.expires_ms, int):
            raise wire.WireError("created_ms and expires_ms must be ints")
        return b"".join(
            (
                self.hdr_prefix,
                wire.str_field(h.message_id),
                wire.str_field(h.sender),
                wire.str_field(h.sender_key_id),
                sym(self._h.w_kinds, h.kind, "message kind"),
                sym(self._h.w_precedences, h.precedence, "precedence"),
                wire.long_bytes(h.created_ms),
                wire.long_bytes(h.expires_ms),
                wire.bytes_field(commitment),
            )
        )

    def decode_header(self, hb: bytes) -> ClearHeader:
        d, p = hb, len(self.hdr_prefix)
        message_id, p = wire.read_str(d, p)
        sender, p = wire.read_str(d, p)
        sender_key_id, p = wire.read_str(d, p)
        kind, p = self._h._enum(d, p, self._h.kinds)
        precedence, p = self._h._enum(d, p, self._h.precedences)
        created_ms, p = wire.read_long(d, p)
        expires_ms, p = wire.read_long(d, p)
        commitment, p = wire.read_bytes(d, p)
        wire.done(d, p)
        if len(commitment) != COMMITMENT_SIZE:
            raise wire.WireError("key commitment must be 32 bytes")
        return ClearHeader(
            message_id, sender, sender_key_id, kind, precedence, created_ms, expires_ms, commitment
        )

    # -- sealed content -----------------------------------------------------------

    def encode_content(self, h: Header, payload: bytes) -> bytes:
        """``net.i24.SealedContent`` (single-object) of the header's hidden fields and
        the payload."""
        hc = self._h
        sym = hc._sym
        r = h.recipients
        acc = h.source_accuracy
        if acc is not None and (not isinstance(acc, int) or not -(1 << 31) <= acc < 1 << 31):
            raise wire.WireError("source_accuracy must be an int")
        parts = [
            self.content_prefix,
            sym(hc.w_modes, r.mode, "recipients mode"),
            wire.str_array_field(r.stations),
            wire.optional_str_field(r.region),
            sym(hc.w_languages, h.language, "language"),
        ]
        if h.handling:
            parts.append(wire.long_bytes(len(h.handling)))
            for x in h.handling:
                parts.append(sym(hc.w_handlings, x.code, "handling code"))
                parts.append(wire.optional_str_field(x.text))
        parts.append(b"\x00")
        parts.append(wire.str_array_field(h.excluded))
        rel = h.source_reliability
        parts.append(
            b"\x00" if rel is None else b"\x02" + sym(hc.w_reliabilities, rel, "reliability")
        )
        parts.append(b"\x00" if acc is None else b"\x02" + wire.long_bytes(acc))
        if h.offence_categories:
            parts.append(wire.long_bytes(len(h.offence_categories)))
            parts.extend(sym(hc.w_offences, o, "offence category") for o in h.offence_categories)
        parts.append(b"\x00")
        parts.append(wire.bytes_field(h.payload_fingerprint))
        parts.append(wire.long_bytes(len(payload)))
        parts.append(payload)
        return b"".join(parts)

    def decode_content(self, clear: ClearHeader, data: bytes) -> tuple[Header, bytes]:
        """The full header (clear fields + hidden ones) and the payload."""
        hc = self._h
        if data[: len(self.content_prefix)] != self.content_prefix:
            raise wire.WireError("sealed content prefix")
        d, p = data, len(self.content_prefix)
        mode, p = hc._enum(d, p, hc.modes)
        stations, p = wire.read_array(d, p, wire.read_str)
        region, p = wire.read_optional_str(d, p)
        language, p = hc._enum(d, p, hc.languages)
        handling, p = wire.read_array(d, p, hc._handling)
        excluded, p = wire.read_array(d, p, wire.read_str)
        i, p = wire.read_index(d, p, 2)
        reliability = None
        if i:
            reliability, p = hc._enum(d, p, hc.reliabilities)
        i, p = wire.read_index(d, p, 2)
        accuracy = None
        if i:
            accuracy, p = wire.read_int(d, p)
        offences, p = wire.read_array(d, p, hc._offence)
        fingerprint, p = wire.read_bytes(d, p)
        payload, p = wire.read_bytes(d, p)
        wire.done(d, p)
        header = Header(
            clear.message_id,
            clear.sender,
            clear.sender_key_id,
            Recipients(mode, tuple(stations), region),
            clear.kind,
            clear.precedence,
            clear.created_ms,
            clear.expires_ms,
            language,
            fingerprint,
            tuple(handling),
            tuple(excluded),
            reliability,
            accuracy,
            tuple(offences),
        )
        return header, payload

    def metadata_size(self, h: Header) -> int:
        """Bytes the header costs in v2 (clear header + the hidden fields): bounded by
        ``max_header`` like a v1 header."""
        return len(self.encode_header(h, bytes(COMMITMENT_SIZE))) + len(self.encode_content(h, b""))

    # -- envelope -------------------------------------------------------------------

    def wrap_record(
        self, suite: KemSuite, recipient: str, recipient_key_id: str, wrapped: bytes
    ) -> bytes:
        return b"".join(
            (
                wire.long_bytes(self.w_suites[suite]),
                wire.str_field(recipient),
                wire.str_field(recipient_key_id),
                wire.long_bytes(len(wrapped)),
                wrapped,
            )
        )

    def body_parts(self, hb: bytes, sig: bytes, nonce: bytes, ct: bytes) -> tuple[bytes, ...]:
        return (
            self.env_prefix,
            wire.bytes_field(hb),
            wire.bytes_field(sig),
            wire.bytes_field(nonce),
            wire.long_bytes(len(ct)),
            ct,
        )

    def parse(self, data: bytes) -> ParsedV2:
        """Steps 1–3 of part 2 §6 (the caller has matched the prefix)."""
        if len(data) > self.max_envelope or len(data) > self.store.max_size:
            raise VerificationError(Reason.OVERSIZED, f"{len(data)} bytes > {self.max_envelope}")
        if bytes(data[:10]) != self.env_prefix:
            raise VerificationError(Reason.BAD_VERSION, f"prefix {bytes(data[:10]).hex()}")
        d = data if type(data) is bytes else bytes(data)
        try:
            hb, p = wire.read_bytes(d, 10)
            sig, p = wire.read_bytes(d, p)
            nonce, p = wire.read_bytes(d, p)
            ct, p = wire.read_bytes(d, p)
            si, p = wire.read_index(d, p, len(self.suites))
            suite = self.suites[si]
            if suite is None:
                raise wire.WireError(f"suite #{si} is unknown to this code")
            recipient, p = wire.read_str(d, p)
            recipient_key_id, p = wire.read_str(d, p)
            wrapped, p = wire.read_bytes(d, p)
            att, p = wire.read_optional_bytes(d, p)
            att_sig, p = wire.read_optional_bytes(d, p)
            wire.done(d, p)
        except wire.WireError as exc:
            raise VerificationError(Reason.MALFORMED, f"envelope: {exc}") from None
        if (
            len(sig) != c.SIG_SIZE
            or len(nonce) != c.NONCE_SIZE
            or len(ct) < c.TAG_SIZE
            or len(wrapped) != WRAPPED_SIZE[suite]
            or (att is None) != (att_sig is None)
            or (att_sig is not None and len(att_sig) != c.SIG_SIZE)
        ):
            raise VerificationError(Reason.MALFORMED, "a field has the wrong size")
        if len(hb) > self.max_header:
            raise VerificationError(Reason.MALFORMED, f"header over {self.max_header} bytes")
        if hb[:10] != self.hdr_prefix:
            raise VerificationError(Reason.BAD_VERSION, f"header prefix {hb[:10].hex()}")
        try:
            header = self.decode_header(hb)
        except (wire.WireError, ValueError) as exc:
            raise VerificationError(Reason.MALFORMED, f"header: {exc}") from None
        return ParsedV2(
            hb, header, sig, nonce, ct, suite, recipient, recipient_key_id, wrapped, att, att_sig
        )
