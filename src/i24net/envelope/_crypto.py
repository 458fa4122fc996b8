"""Labels, digests and the content-key wrap of docs/envelope.md §3–4."""

from __future__ import annotations

import hashlib
import struct

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
    crypto_box_beforenm,
)
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey

from i24net.errors import Reason, VerificationError

LABEL_MESSAGE = b"i24net/v1/message"
LABEL_SENDER_SIG = b"i24net/v1/sender-sig"
LABEL_ATTESTATION = b"i24net/v1/attestation"
LABEL_WRAP_GS = b"i24net/v1/wrap-gs"
LABEL_WRAP_RECIPIENT = b"i24net/v1/wrap-recipient"

KEY_SIZE = 32
NONCE_SIZE = 24
TAG_SIZE = 16
SIG_SIZE = 64
DIGEST_SIZE = 32
WRAPPED_SIZE = KEY_SIZE + TAG_SIZE
_ZERO_NONCE = bytes(NONCE_SIZE)


def message_digest(header: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
    h = hashlib.blake2b(LABEL_MESSAGE, digest_size=DIGEST_SIZE)
    h.update(struct.pack(">I", len(header)))
    h.update(header)
    h.update(nonce)
    h.update(ciphertext)
    return h.digest()


def _lp(s: str) -> bytes:
    b = s.encode()
    return bytes((len(b),)) + b


def seal_body(key: bytes, nonce: bytes, payload: bytes, header: bytes) -> bytes:
    return crypto_aead_xchacha20poly1305_ietf_encrypt(payload, header, nonce, key)


def open_body(key: bytes, nonce: bytes, ciphertext: bytes, header: bytes) -> bytes:
    try:
        return crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, header, nonce, key)
    except CryptoError:
        raise VerificationError(Reason.DECRYPT_FAILED, "body does not decrypt") from None


class SharedKeys:
    """Static-static X25519 shared keys of one own key with its peers, cached.

    ``crypto_box_beforenm`` (HSalsa20 of X25519) costs ~50 µs; afterwards a
    wrap is one keyed BLAKE2b and one 32-byte AEAD. The cache is bounded by
    ``max_peers`` (cleared when full); peers come from the verified directory.
    """

    def __init__(self, own: PrivateKey, *, max_peers: int = 4096) -> None:
        self._own = own
        self._max = max_peers
        self._cache: dict[bytes, bytes] = {}

    def shared(self, peer: object) -> bytes:
        """``peer`` must be a v1 X25519 key: a v2 KEM key named as a v1 wrapper is refused."""
        if not isinstance(peer, PublicKey):
            raise VerificationError(Reason.DECRYPT_FAILED, "not a v1 X25519 key")
        pk = bytes(peer)
        s = self._cache.get(pk)
        if s is None:
            try:
                s = crypto_box_beforenm(pk, bytes(self._own))
            except (CryptoError, ValueError) as exc:  # low-order point
                raise VerificationError(Reason.DECRYPT_FAILED, "bad X25519 peer key") from exc
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[pk] = s
        return s

    def _wrap_key(
        self,
        peer: object,
        label: bytes,
        wrapper: tuple[str, str],
        recipient: tuple[str, str],
        digest: bytes,
    ) -> bytes:
        data = (
            label + _lp(wrapper[0]) + _lp(wrapper[1]) + _lp(recipient[0]) + _lp(recipient[1])
        ) + digest
        return hashlib.blake2b(data, digest_size=KEY_SIZE, key=self.shared(peer)).digest()

    def wrap(
        self,
        content_key: bytes,
        peer: object,
        label: bytes,
        wrapper: tuple[str, str],
        recipient: tuple[str, str],
        digest: bytes,
    ) -> bytes:
        wk = self._wrap_key(peer, label, wrapper, recipient, digest)
        return crypto_aead_xchacha20poly1305_ietf_encrypt(content_key, b"", _ZERO_NONCE, wk)

    def unwrap(
        self,
        wrapped: bytes,
        peer: object,
        label: bytes,
        wrapper: tuple[str, str],
        recipient: tuple[str, str],
        digest: bytes,
    ) -> bytes:
        wk = self._wrap_key(peer, label, wrapper, recipient, digest)
        try:
            return crypto_aead_xchacha20poly1305_ietf_decrypt(wrapped, b"", _ZERO_NONCE, wk)
        except CryptoError:
            raise VerificationError(Reason.DECRYPT_FAILED, "content key does not unwrap") from None
