"""Broker security: a development CA, PEM certificates, SCRAM credentials, secured settings.

The broker's security model (``docs/security.md``):

* clients connect on the ``CLIENT`` listener with **SASL_SSL / SCRAM-SHA-512**;
* brokers talk to each other on ``INTERNAL`` and to the controllers on
  ``CONTROLLER``, both **mutual TLS** (SCRAM is not supported between
  controllers); the certificate's CN is the principal (``User:broker-1``);
* ``StandardAuthorizer`` denies whatever no ACL allows; the brokers and the
  provisioning ``admin`` are the only super users;
* an optional ``PLAIN`` (PLAINTEXT) listener exists only for the throughput
  comparison in ``bench/secured.py``; its principal ``User:ANONYMOUS`` has no ACL.

For development and tests this module makes the whole PKI with ``cryptography``
(keys are PKCS#8 PEM without a password, certificates carry SANs for
``localhost`` and ``127.0.0.1``, as Kafka's PEM keystores and its default host
name verification require). In production an operator's own CA issues the
broker certificates and only ``ca_file`` and the keystore paths change.

``check_connection()`` turns a wrong or missing credential, an untrusted
certificate or an unreachable broker into a clear ``i24net.errors`` exception
within ``timeout_s``, instead of a client that retries forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import secrets
import ssl
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from i24net.errors import (
    BrokerAuthenticationError,
    BrokerTlsError,
    BrokerUnavailableError,
    ConfigError,
)
from i24net.kafka.admin import KafkaConnection

log = logging.getLogger(__name__)

SCRAM_MECHANISM = "SCRAM-SHA-512"
SASL_SSL = "SASL_SSL"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
#: ``O=i24net,CN=broker-1`` (RFC 2253, any RDN order) -> principal ``User:broker-1``.
PRINCIPAL_MAPPING = "RULE:^(.*,)?CN=([^,]+)(,.*)?$/$2/,DEFAULT"
LOOPBACK_DNS: tuple[str, ...] = ("localhost",)
LOOPBACK_IPS: tuple[str, ...] = ("127.0.0.1",)
ADMIN_USER = "admin"

# -- certificates ------------------------------------------------------------


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate (PEM), its PKCS#8 key (PEM, no password) and the issuing CA."""

    common_name: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    ca_pem: bytes = b""

    def keystore_pem(self) -> bytes:
        """Kafka's PEM keystore: the private key, then the certificate chain."""
        return self.key_pem + self.cert_pem + self.ca_pem


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_ca(
    common_name: str = "i24net development CA",
    *,
    valid_days: int = 825,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """A self-signed CA for development and tests (ECDSA P-256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "i24net"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    start = _now(now) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _pkcs8(key))


def issue_certificate(
    ca: CertificateAuthority,
    common_name: str,
    *,
    dns_names: Sequence[str] = LOOPBACK_DNS,
    ip_addresses: Sequence[str] = LOOPBACK_IPS,
    valid_days: int = 397,
    now: dt.datetime | None = None,
) -> IssuedCertificate:
    """A certificate for TLS server and client use (a broker is both), signed by ``ca``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the CA key must be an EC key (as create_ca() makes)")
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now(now) - dt.timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "i24net"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return IssuedCertificate(
        common_name, cert.public_bytes(serialization.Encoding.PEM), _pkcs8(key), ca.cert_pem
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner can read (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


@dataclass(frozen=True)
class BrokerTls:
    """The files a secured broker reads: the CA bundle and its own PEM keystore."""

    ca_file: Path
    keystore_file: Path
    principal: str  # the certificate's CN, e.g. "broker-1"


@dataclass(frozen=True)
class DevPki:
    """A development PKI written to a directory: the CA and one keystore per broker."""

    directory: Path
    ca_file: Path
    ca_key_file: Path
    brokers: Mapping[str, BrokerTls]


def write_dev_pki(
    directory: Path,
    broker_names: Iterable[str] = ("broker-1",),
    *,
    dns_names: Sequence[str] = LOOPBACK_DNS,
    ip_addresses: Sequence[str] = LOOPBACK_IPS,
    now: dt.datetime | None = None,
) -> DevPki:
    """Create (or reuse) ``ca.pem`` and a keystore per broker under ``directory``.

    Reuses an existing CA so that clients' ``ca_file`` stays valid across runs;
    broker keystores are reissued only when missing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, ca_key_file = directory / "ca.pem", directory / "ca-key.pem"
    if ca_file.exists() and ca_key_file.exists():
        ca = CertificateAuthority(ca_file.read_bytes(), ca_key_file.read_bytes())
    else:
        ca = create_ca(now=now)
        _write_private(ca_key_file, ca.key_pem)
        ca_file.write_bytes(ca.cert_pem)
    brokers: dict[str, BrokerTls] = {}
    for name in broker_names:
        keystore = directory / f"{name}.keystore.pem"
        if not keystore.exists():
            issued = issue_certificate(
                ca, name, dns_names=dns_names, ip_addresses=ip_addresses, now=now
            )
            _write_private(keystore, issued.keystore_pem())
        brokers[name] = BrokerTls(ca_file=ca_file, keystore_file=keystore, principal=name)
    return DevPki(directory, ca_file, ca_key_file, brokers)


# -- SCRAM credentials ---------------------------------------------------------


def generate_password(nbytes: int = 24) -> str:
    """A random password (URL-safe characters: safe in ``--add-scram`` and JAAS)."""
    return secrets.token_urlsafe(nbytes)


@dataclass(frozen=True)
class Credential:
    """A SCRAM user name and password. The password never appears in repr or logs."""

    username: str
    password: str = field(repr=False)
    mechanism: str = SCRAM_MECHANISM

    def connection(
        self, bootstrap: str, ca_file: Path, *, client_id: str | None = None
    ) -> KafkaConnection:
        """A SASL_SSL connection authenticating as this user."""
        return KafkaConnection(
            bootstrap=bootstrap,
            security_protocol=SASL_SSL,
            sasl_mechanism=self.mechanism,
            username=self.username,
            password=self.password,
            ca_file=ca_file,
            client_id=client_id or f"i24net-{self.username}",
        )


def password_file(directory: Path, username: str) -> Path:
    """Where provisioning keeps a user's password: ``<directory>/<username>.password``."""
    return directory / f"{username}.password"


def write_password_file(path: Path, password: str) -> None:
    """Write a password (one line) to a 0600 file, atomically.

    The format is what the gateway's ``kafka.password_file`` setting reads.
    """
    _write_private(path, (password + "\n").encode())


def read_password_file(path: Path) -> str:
    """Read a password file, refusing one that group or others can access."""
    try:
        mode = path.stat().st_mode
        password = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(
            f"password file {path} does not exist; `i24net provision` writes it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"password file {path} is unreadable: {exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"password file {path} is accessible to others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    if not password:
        raise ConfigError(f"password file {path} is empty")
    return password


# -- secured server.properties -------------------------------------------------


@dataclass(frozen=True)
class SecuredListeners:
    """Ports of a secured node. ``plaintext_port`` is for the benchmark only."""

    client_port: int
    internal_port: int
    controller_port: int
    plaintext_port: int | None = None


def secured_properties(
    tls: BrokerTls,
    listeners: SecuredListeners,
    *,
    host: str = "127.0.0.1",
    super_users: Iterable[str] = (),
) -> dict[str, str]:
    """server.properties entries for a secured node (merge over the broker's defaults).

    ``super_users`` are user names (``admin``, ``broker-1``), not ``User:`` principals;
    the node's own certificate CN is always a super user (forwarded admin requests
    fail otherwise).
    """
    names = dict.fromkeys([tls.principal, *super_users])
    protocol_map = "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL"
    listen = (
        f"CLIENT://{host}:{listeners.client_port},"
        f"INTERNAL://{host}:{listeners.internal_port},"
        f"CONTROLLER://{host}:{listeners.controller_port}"
    )
    advertised = (
        f"CLIENT://{host}:{listeners.client_port},INTERNAL://{host}:{listeners.internal_port}"
    )
    if listeners.plaintext_port is not None:
        protocol_map += ",PLAIN:PLAINTEXT"
        listen += f",PLAIN://{host}:{listeners.plaintext_port}"
        advertised += f",PLAIN://{host}:{listeners.plaintext_port}"
    return {
        "listeners": listen,
        "advertised.listeners": advertised,
        "listener.security.protocol.map": protocol_map,
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "CONTROLLER",
        # SASL/SCRAM on the client listener only (the server side needs no JAAS options).
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.client.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.client.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        # TLS: PEM keystore (PKCS#8 key + chain, no password) and CA bundle.
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.keystore_file),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "listener.name.client.ssl.client.auth": "none",
        "ssl.principal.mapping.rules": PRINCIPAL_MAPPING,
        # Authorization: deny by default; brokers and the admin are super users.
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(f"User:{n}" for n in names),
    }


# -- startup check -------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def check_connection(conn: KafkaConnection, timeout_s: float = 10.0) -> list[int]:
    """Connect, authenticate and fetch metadata once; return the broker node ids.

    Raises, within about ``timeout_s``:

    * ``ConfigError``: the connection settings are incomplete (no password, no CA);
    * ``BrokerTlsError``: the broker's certificate is not trusted or names another host;
    * ``BrokerAuthenticationError``: the broker refused the user name or password
      (the broker's reason is in the message);
    * ``BrokerUnavailableError`` (retriable): no bootstrap server answered.

    Gateways and the router call it at startup, so a wrong credential stops them
    with a clear message instead of a client that reconnects forever.
    """
    from aiokafka import errors as kafka_errors
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    kwargs = conn.client_kwargs()  # raises ConfigError on missing settings
    hosts = [h.strip() for h in conn.bootstrap.split(",") if h.strip()]
    if not hosts:
        raise ConfigError("the connection has no bootstrap server")
    per_host = max(1.0, timeout_s / len(hosts))
    failures: list[str] = []
    for hostport in hosts:
        host, _, port = hostport.rpartition(":")
        try:
            broker_conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    client_id=conn.client_id,
                    request_timeout_ms=int(per_host * 1000),
                    ssl_context=kwargs.get("ssl_context"),
                    security_protocol=conn.security_protocol,
                    sasl_mechanism=conn.sasl_mechanism or "PLAIN",
                    sasl_plain_username=conn.username,
                    sasl_plain_password=conn.password,
                ),
                per_host,
            )
        except (
            kafka_errors.SaslAuthenticationFailed,
            kafka_errors.AuthenticationFailedError,
        ) as exc:
            raise BrokerAuthenticationError(
                f"broker {hostport} refused user {conn.username!r} "
                f"({conn.sasl_mechanism}): {exc}; check the credential file or re-run "
                "`i24net provision`"
            ) from exc
        except kafka_errors.UnsupportedSaslMechanismError as exc:
            raise BrokerAuthenticationError(
                f"broker {hostport} does not offer SASL mechanism {conn.sasl_mechanism}: {exc}"
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise BrokerTlsError(
                f"TLS to {hostport}: the broker certificate is not trusted by "
                f"{conn.ca_file} or does not name {host!r}: {exc.verify_message}"
            ) from exc
        except ssl.SSLError as exc:
            raise BrokerTlsError(
                f"TLS handshake with {hostport} failed ({_reason(exc)}); is this the "
                f"{conn.security_protocol} listener?"
            ) from exc
        except (OSError, TimeoutError, kafka_errors.KafkaError) as exc:
            failures.append(f"{hostport}: {_reason(exc)}")
            continue
        try:
            metadata = await asyncio.wait_for(broker_conn.send(MetadataRequest([])), per_host)
        except (TimeoutError, kafka_errors.KafkaError) as exc:
            failures.append(f"{hostport}: metadata request failed: {_reason(exc)}")
            continue
        finally:
            broker_conn.close()
        return sorted(b[0] for b in metadata.brokers)
    if any("unexpected" in f.lower() or "closed" in f.lower() for f in failures) and (
        conn.security_protocol == "PLAINTEXT"
    ):
        hint = " (a secured listener refuses PLAINTEXT clients: use SASL_SSL and a credential)"
    else:
        hint = ""
    raise BrokerUnavailableError(
        f"no bootstrap server answered within {timeout_s:.0f}s: {'; '.join(failures)}{hint}"
    )


__all__ = [
    "ADMIN_USER",
    "AUTHORIZER",
    "SASL_SSL",
    "SCRAM_MECHANISM",
    "BrokerTls",
    "CertificateAuthority",
    "Credential",
    "DevPki",
    "IssuedCertificate",
    "SecuredListeners",
    "check_connection",
    "create_ca",
    "generate_password",
    "issue_certificate",
    "password_file",
    "read_password_file",
    "secured_properties",
    "write_dev_pki",
    "write_password_file",
]
