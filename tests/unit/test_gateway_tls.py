"""The integrator API over real TLS sockets (no broker): mutual TLS with the project's
development CA, bearer tokens over TLS, and the handshake refusing a certificate from
another CA before any request is read."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from i24net.client import AsyncGatewayClient
from i24net.directory import Directory, StationRecord
from i24net.errors import ConfigError, IntakeRefusedError, ServiceError
from i24net.gateway import Gateway, Settings
from i24net.gateway.auth import create_integrator
from i24net.kafka.security import IssuedCertificate, create_ca, issue_certificate
from i24net.keys import RootSecrets, StationSecrets
from i24net.schemas import SchemaStore
from i24net.stations import station

STORE = SchemaStore.default()
EVERY_SCOPE = ["send", "inbox:read", "status:read", "operator"]


@pytest.fixture(scope="module")
def world() -> tuple[dict[str, StationSecrets], Directory, RootSecrets]:
    t = int(time.time() * 1000) - 60_000
    root = RootSecrets.generate(now_ms=t)
    secrets = {c: StationSecrets.generate(c, now_ms=t) for c in ("FR", "GS", "JP")}
    d = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=t, issued_ms=t)
        for c, s in secrets.items()
    )
    return secrets, d, root


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server: Pem
    border: Pem  # a client certificate from the gateway's CA (CN border-ws-1)
    stranger: Pem  # the same CN, from another CA


def write(tmp: Path, name: str, issued: IssuedCertificate) -> Pem:
    cert, key = tmp / f"{name}.pem", tmp / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(issued.key_pem)
    return Pem(cert, key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    ca, other = create_ca(), create_ca("another CA")
    (tmp / "ca.pem").write_bytes(ca.cert_pem)
    return Pki(
        tmp / "ca.pem",
        write(tmp, "server", issue_certificate(ca, "gateway-FR")),
        write(tmp, "border", issue_certificate(ca, "border-ws-1", dns_names=(), ip_addresses=())),
        write(
            tmp, "stranger", issue_certificate(other, "border-ws-1", dns_names=(), ip_addresses=())
        ),
    )


def tls_settings(world: Any, gateway_settings: Any, pki: Pki, client_cert: str) -> Settings:
    return gateway_settings(  # type: ignore[no-any-return]
        world,
        STORE,
        shutdown_grace_s=2,
        api={
            "tls": {
                "cert_file": str(pki.server.cert),
                "key_file": str(pki.server.key),
                "client_ca_file": str(pki.ca_file),
                "client_cert": client_cert,
            }
        },
    )


@pytest.fixture
async def gw(world: Any, gateway_settings: Any, pki: Pki) -> AsyncIterator[Gateway]:
    settings = tls_settings(world, gateway_settings, pki, "optional")
    async with Gateway(settings, store=STORE) as g:
        yield g


def client(gw: Gateway, pki: Pki, pem: Pem | None = None, **kw: Any) -> AsyncGatewayClient:
    return AsyncGatewayClient(
        f"https://127.0.0.1:{gw.port}",
        timeout=10,
        ca_file=pki.ca_file,
        cert_file=None if pem is None else pem.cert,
        key_file=None if pem is None else pem.key,
        **kw,
    )


async def test_client_certificate_bound_to_an_integrator(gw: Gateway, pki: Pki) -> None:
    create_integrator(
        gw.settings.integrators_path, "border", ["status:read"], token=False, cert_cn="border-ws-1"
    )
    async with client(gw, pki, pki.border) as c:
        assert (await c.summary())["station"] == "FR"
    # no certificate and no token: the handshake passes (optional), the request is 401
    async with client(gw, pki) as c:
        with pytest.raises(IntakeRefusedError) as err:
            await c.summary()
        assert err.value.http_status == 401
    assert gw.registry.get_sample_value("i24net_gateway_auth_failures_total", {"reason": "missing"})


async def test_a_certificate_from_another_ca_fails_the_handshake(gw: Gateway, pki: Pki) -> None:
    """Same CN as a bound integrator, another CA: refused by TLS, nothing reaches the app."""
    create_integrator(
        gw.settings.integrators_path, "border", ["status:read"], token=False, cert_cn="border-ws-1"
    )
    async with client(gw, pki, pki.stranger) as c:
        with pytest.raises(ServiceError):
            await c.summary()
    # the same refusal, seen from a raw TLS client: the server's alert, no HTTP answer
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.load_cert_chain(str(pki.stranger.cert), str(pki.stranger.key))
    async with httpx.AsyncClient(verify=ctx) as h:
        with pytest.raises(httpx.TransportError):
            await h.get(f"https://127.0.0.1:{gw.port}/v1/status")
    assert not gw.registry.get_sample_value(
        "i24net_gateway_auth_failures_total", {"reason": "unknown"}
    )


async def test_an_expired_client_certificate_from_the_right_ca_fails_the_handshake(
    gw: Gateway, pki: Pki, tmp_path: Path
) -> None:
    """The gateway's own CA, the bound CN, but past its validity: refused by TLS."""
    import datetime as dt

    # the fixture keeps no CA key: a second gateway trusts the fixture's CA and one of ours
    ca = create_ca(now=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    (tmp_path / "ca.pem").write_bytes(pki.ca_file.read_bytes() + ca.cert_pem)
    old = issue_certificate(
        ca,
        "border-ws-1",
        dns_names=(),
        ip_addresses=(),
        valid_days=30,
        now=dt.datetime.now(dt.UTC) - dt.timedelta(days=60),
    )
    expired = write(tmp_path, "expired", old)
    fresh = write(
        tmp_path, "fresh", issue_certificate(ca, "border-ws-1", dns_names=(), ip_addresses=())
    )
    settings = gw.settings.model_copy(
        update={
            "data_dir": tmp_path / "gw2",
            "api": gw.settings.api.model_copy(
                update={
                    "port": 0,
                    "tls": gw.settings.api.tls.model_copy(  # type: ignore[union-attr]
                        update={"client_ca_file": tmp_path / "ca.pem"}
                    ),
                }
            ),
        }
    )
    create_integrator(
        settings.integrators_path, "border", ["status:read"], token=False, cert_cn="border-ws-1"
    )
    async with Gateway(settings, store=STORE) as g2:
        async with client(g2, pki, fresh) as c:  # the same CA, in its validity: served
            assert (await c.summary())["station"] == "FR"
        async with client(g2, pki, expired) as c:
            with pytest.raises(ServiceError):
                await c.summary()


async def test_the_cli_binds_an_integrator_to_a_certificate_file(
    gw: Gateway, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--cert-file`` stores the fingerprint the TLS layer computes (a new user has no
    fingerprint at hand: the docs' ``5f:3a:...:9c`` only told them one was needed)."""
    from i24net.cli import main as cli

    s = gw.settings
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'station = "{s.station}"\ndata_dir = "{s.data_dir}"\n'
        f'[keys]\nsecret = "{s.keys.secret}"\nroot_public = "{s.keys.root_public}"\n'
        f'[directory]\nentries = "{s.directory.entries}"\n'
        f'[kafka]\nbootstrap = "{s.kafka.bootstrap}"\n'
    )
    base = ["gateway", "integrators", "add", "--config", str(config), "--scope", "status:read"]
    assert cli([*base, "ws", "--no-token", "--cert-file", str(pki.border.cert)]) == 0
    async with client(gw, pki, pki.border) as c:
        assert (await c.summary())["station"] == "FR"
    async with client(gw, pki, pki.server) as c:  # another certificate of the same CA
        with pytest.raises(IntakeRefusedError):
            await c.summary()
    capsys.readouterr()
    assert cli([*base, "bad", "--no-token", "--cert-sha256", "5f:3a:9c"]) == 2
    assert "openssl x509" in capsys.readouterr().err


def test_a_missing_or_wrong_ca_or_certificate_file_is_a_clear_error(
    pki: Pki, tmp_path: Path
) -> None:
    """``i24net send --cacert ca.pem`` with no such file ended in a bare
    ``FileNotFoundError`` traceback that named no file."""
    from i24net.client import GatewayClient

    url = "https://127.0.0.1:1"
    missing = tmp_path / "nowhere.pem"
    not_pem = tmp_path / "junk.pem"
    not_pem.write_text("not a certificate\n")
    cases = [
        ({"ca_file": missing}, str(missing)),
        ({"ca_file": not_pem}, str(not_pem)),
        ({"ca_file": pki.ca_file, "cert_file": missing}, str(missing)),
        ({"ca_file": pki.ca_file, "cert_file": pki.border.cert}, "--key"),  # key elsewhere
    ]
    for kw, named in cases:
        with pytest.raises(ConfigError) as err:
            GatewayClient(url, **kw)  # type: ignore[arg-type]
        assert named in str(err.value), str(err.value)


async def test_bearer_token_over_tls_from_a_private_token_file(
    gw: Gateway, pki: Pki, tmp_path: Path
) -> None:
    token = create_integrator(gw.settings.integrators_path, "cms", EVERY_SCOPE)
    assert token is not None
    token_file = tmp_path / "cms.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="accessible to others"):
        client(gw, pki, token_file=token_file)
    token_file.chmod(0o600)
    async with client(gw, pki, token_file=token_file) as c:
        assert (await c.inbox())["messages"] == []
    # plain HTTP to the TLS port gets no answer an HTTP client accepts
    async with httpx.AsyncClient() as h:
        with pytest.raises(httpx.TransportError):
            await h.get(f"http://127.0.0.1:{gw.port}/healthz")


async def test_required_client_certificates(world: Any, gateway_settings: Any, pki: Pki) -> None:
    settings = tls_settings(world, gateway_settings, pki, "required")
    token = create_integrator(settings.integrators_path, "cms", EVERY_SCOPE)
    async with Gateway(settings, store=STORE) as gw:
        # a valid token is not enough: no certificate, no handshake
        async with client(gw, pki, token=token) as c:
            with pytest.raises(ServiceError):
                await c.summary()
        create_integrator(
            settings.integrators_path, "border", ["status:read"], token=False, cert_cn="border-ws-1"
        )
        async with client(gw, pki, pki.border) as c:
            assert (await c.summary())["station"] == "FR"
