"""Development PKI, password files and the secured broker properties."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from i24net.errors import ConfigError
from i24net.kafka.security import (
    AUTHORIZER,
    SecuredListeners,
    create_ca,
    issue_certificate,
    read_password_file,
    secured_properties,
    write_dev_pki,
    write_password_file,
)


def test_leaf_certificate_has_loopback_sans_and_a_pkcs8_key_without_password() -> None:
    ca = create_ca()
    leaf = issue_certificate(ca, "broker-1")
    cert = x509.load_pem_x509_certificate(leaf.cert_pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert leaf.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    serialization.load_pem_private_key(leaf.key_pem, password=None)
    assert cert.issuer == x509.load_pem_x509_certificate(ca.cert_pem).subject
    # key first, then the chain: Kafka's PEM keystore layout
    assert leaf.keystore_pem().index(b"PRIVATE KEY") < leaf.keystore_pem().index(b"CERTIFICATE")


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> None:
    """A full TLS handshake in memory (no socket, no port): raises what the client raises."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    tls_client = client.wrap_bio(c_in, c_out, server_hostname=host)
    tls_server = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = 0
        for end in (tls_client, tls_server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if done == 2:
            return
    raise AssertionError("the handshake did not finish in 10 rounds")


def test_python_tls_client_trusts_the_dev_ca(tmp_path: Path) -> None:
    """A default-verifying client completes a handshake with a broker certificate, by name and
    by address, and refuses it under another name or without the dev CA."""
    pki = write_dev_pki(tmp_path, ["broker-1"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.brokers["broker-1"].keystore_file)  # key + chain in one PEM
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    handshake(server, ctx, "localhost")
    handshake(server, ctx, "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(server, ctx, "broker.example.org")
    stranger = tmp_path / "other-ca.pem"
    stranger.write_bytes(create_ca("another CA").cert_pem)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(server, ssl.create_default_context(cafile=str(stranger)), "localhost")


def test_dev_pki_is_reused_and_keys_are_private(tmp_path: Path) -> None:
    first = write_dev_pki(tmp_path, ["broker-1"])
    ca = first.ca_file.read_bytes()
    second = write_dev_pki(tmp_path, ["broker-1", "broker-2"])
    assert second.ca_file.read_bytes() == ca
    for path in (first.ca_key_file, *(b.keystore_file for b in second.brokers.values())):
        assert path.stat().st_mode & 0o777 == 0o600


def test_password_file_roundtrip_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "creds" / "FR.password"
    write_password_file(path, "s3cret")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_password_file(path) == "s3cret"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_password_file(path)
    with pytest.raises(ConfigError, match="does not exist"):
        read_password_file(tmp_path / "missing.password")


def test_secured_properties(tmp_path: Path) -> None:
    tls = write_dev_pki(tmp_path, ["broker-1"]).brokers["broker-1"]
    props = secured_properties(tls, SecuredListeners(9092, 9093, 9094), super_users=["admin"])
    assert props["listener.security.protocol.map"] == "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == AUTHORIZER
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker-1;User:admin"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert "PLAIN" not in props["listeners"]
    with_plain = secured_properties(tls, SecuredListeners(1, 2, 3, plaintext_port=4))
    assert with_plain["listener.security.protocol.map"].endswith(",PLAIN:PLAINTEXT")
