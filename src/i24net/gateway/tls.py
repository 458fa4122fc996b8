"""The integrator API over TLS, and the verified client certificate handed to the app.

uvicorn terminates TLS (``ssl_certfile``/``ssl_keyfile``; with
``ssl_ca_certs`` and ``ssl_cert_reqs`` it asks for a client certificate and
fails the handshake on one that does not chain to that CA), but it does not
tell the application which certificate the client presented. The protocol
class made by :func:`with_peer_cert` reads it once per connection, after the
handshake, and puts a :class:`~i24net.gateway.auth.PeerCert` (SHA-256
fingerprint and subject CN) in each request's
``scope["extensions"]["i24net.client_cert"]``; the authentication middleware
(``gateway/api.py``) reads it there. A certificate that was not verified by
the handshake is never there: with ``client_cert = "none"`` the server does
not ask for one.
"""

from __future__ import annotations

import hashlib
import ssl
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from i24net.gateway.auth import PEER_CERT_KEY, PeerCert
from i24net.gateway.settings import TlsSettings

CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def peer_cert(der: bytes) -> PeerCert:
    """Fingerprint and subject CN of a DER certificate."""
    cn: str | None = None
    try:
        attrs = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
        cn = str(attrs[0].value) if attrs else None
    except ValueError:
        cn = None
    return PeerCert(hashlib.sha256(der).hexdigest(), cn)


def with_peer_cert(protocol: type[Any]) -> type[Any]:
    """A subclass of uvicorn's HTTP ``protocol`` that records the client certificate."""

    class PeerCertProtocol(protocol):  # type: ignore[misc]
        _peer: PeerCert | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            obj = transport.get_extra_info("ssl_object")
            der = obj.getpeercert(binary_form=True) if obj is not None else None
            self._peer = peer_cert(der) if der else None

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._peer is not None:
                self.scope["extensions"] = {PEER_CERT_KEY: self._peer}

    PeerCertProtocol.__name__ = protocol.__name__ + "WithPeerCert"
    return PeerCertProtocol


def uvicorn_ssl(tls: TlsSettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` keyword arguments for these settings."""
    reqs = tls.client_cert if tls.client_ca_file is not None else "none"
    return {
        "ssl_certfile": str(tls.cert_file),
        "ssl_keyfile": str(tls.key_file),
        "ssl_ca_certs": None if tls.client_ca_file is None else str(tls.client_ca_file),
        "ssl_cert_reqs": CERT_REQS[reqs],
    }


__all__ = ["CERT_REQS", "peer_cert", "uvicorn_ssl", "with_peer_cert"]
