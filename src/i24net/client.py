"""A small Python client for a gateway's integrator API (sync and async, over httpx).

    from i24net.client import GatewayClient
    with GatewayClient("https://gw.bureau.example:8024", token=token, ca_file="ca.pem") as gw:
        mid = gw.send("POLICE_MESSAGE", to=["JP"], payload={...}, precedence="FLASH")
        gw.status(mid)["status"]
        for m in gw.inbox(wait=30)["messages"]: ...

Every request authenticates (docs/gateway.md, "Setting up a bureau's
integrators"): ``token`` (or ``token_file``, read once) is sent as
``Authorization: Bearer``; ``cert_file``/``key_file`` are a client
certificate for mutual TLS; ``ca_file`` is the CA the gateway's own
certificate must chain to (default: the system's). The token is never in
``repr``, logs or error messages.

Refusals raise :class:`i24net.errors.IntakeRefusedError` (``code``,
``http_status``: 401 ``unauthenticated``, 403 ``forbidden``, 429
``rate_limited`` with ``retriable`` true, ...); a full outbox or a stopping
gateway raises it with 503 and ``retriable`` true; an unreachable gateway
(or a refused TLS handshake) raises ``ServiceError``.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import httpx

from i24net.errors import ConfigError, IntakeRefusedError, ServiceError

TOKEN_FILE_ENV = "I24NET_TOKEN_FILE"
"""The environment variable the CLI reads a token file's path from (``--token-file``)."""


class _Retriable(IntakeRefusedError):
    retriable = True


def _body(
    kind: str | None,
    to: list[str] | None,
    payload: dict[str, Any] | None,
    payload_avro: bytes | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"to": list(to or []), **options}
    if kind is not None:
        body["kind"] = kind
    if payload is not None:
        body["payload"] = payload
    if payload_avro is not None:
        body["payload_avro"] = base64.b64encode(payload_avro).decode()
    return body


def _check(r: httpx.Response) -> Any:
    if r.status_code < 400:
        return r.json()
    try:
        err = r.json()
        code, detail = str(err["error"]), str(err["detail"])
    except (ValueError, KeyError, TypeError):
        code, detail = "http_error", r.text[:500]
    cls = _Retriable if r.status_code in (429, 503) else IntakeRefusedError
    raise cls(code, detail, http_status=r.status_code)


def _headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def read_token_file(path: Path) -> str:
    """The token in ``path`` (one line), which must be private to its owner (0600)."""
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"token file {path} is unreadable: {type(exc).__name__}") from None
    if mode & 0o077:
        raise ConfigError(f"token file {path} is accessible to others; run `chmod 600 {path}`")
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


class _Credentials:
    """What both clients pass to httpx: the bearer header and the TLS context."""

    def __init__(
        self,
        token: str | None,
        token_file: Path | None,
        cert_file: Path | None,
        key_file: Path | None,
        ca_file: Path | None,
    ) -> None:
        if token is None and token_file is not None:
            token = read_token_file(token_file)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.verify: ssl.SSLContext | bool = True
        if ca_file is not None or cert_file is not None:
            try:
                ctx = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file {ca_file}: {_why(exc)}") from None
            if cert_file is not None:
                try:
                    ctx.load_cert_chain(str(cert_file), None if key_file is None else str(key_file))
                except (OSError, ssl.SSLError) as exc:
                    key = "" if key_file is None else f" with key {key_file}"
                    raise ConfigError(
                        f"client certificate {cert_file}{key}: {_why(exc)} (PEM; give the key "
                        "with --key / key_file when it is not in the certificate's file)"
                    ) from None
            self.verify = ctx


def _why(exc: Exception) -> str:
    """An OS or TLS error in a few words, without the file's content."""
    if isinstance(exc, ssl.SSLError):
        return f"not usable ({exc.reason or type(exc).__name__})"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


class GatewayClient:
    """Synchronous client."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        token: str | None = None,
        token_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        cred = _Credentials(token, token_file, cert_file, key_file, ca_file)
        self._http = httpx.Client(
            base_url=base_url, timeout=timeout, headers=cred.headers, verify=cred.verify
        )

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _req(self, method: str, url: str, **kw: Any) -> Any:
        try:
            return _check(self._http.request(method, url, **kw))
        except httpx.TransportError as exc:
            raise ServiceError(f"gateway {self._http.base_url} unreachable: {exc!r}") from exc

    def send(
        self,
        kind: str | None = None,
        *,
        to: list[str] | None = None,
        payload: dict[str, Any] | None = None,
        payload_avro: bytes | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> str:
        """Submit a message; returns its message id once it is durably accepted."""
        body = _body(kind, to, payload, payload_avro, options)
        res = self._req("POST", "/v1/messages", json=body, headers=_headers(idempotency_key))
        return str(res["message_id"])

    def status(self, message_id: str, *, wait: float = 0, since: str | None = None) -> Any:
        params: dict[str, Any] = {"wait": wait}
        if since is not None:
            params["since"] = since
        return self._req("GET", f"/v1/messages/{message_id}", params=params)

    def inbox(
        self, *, after: int = 0, limit: int = 100, unacked: bool = False, wait: float = 0
    ) -> Any:
        params = {"after": after, "limit": limit, "unacked": unacked, "wait": wait}
        return self._req("GET", "/v1/inbox", params=params)

    def fetch(self, message_id: str) -> Any:
        return self._req("GET", f"/v1/inbox/{message_id}")

    def ack(self, message_ids: list[str]) -> int:
        return int(self._req("POST", "/v1/inbox/ack", json={"message_ids": message_ids})["acked"])

    def summary(self) -> Any:
        return self._req("GET", "/v1/status")


class AsyncGatewayClient:
    """Asynchronous client, same methods and credentials as :class:`GatewayClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        max_connections: int = 100,
        token: str | None = None,
        token_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        cred = _Credentials(token, token_file, cert_file, key_file, ca_file)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
            headers=cred.headers,
            verify=cred.verify,
        )

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _req(self, method: str, url: str, **kw: Any) -> Any:
        try:
            return _check(await self._http.request(method, url, **kw))
        except httpx.TransportError as exc:
            raise ServiceError(f"gateway {self._http.base_url} unreachable: {exc!r}") from exc

    async def send(
        self,
        kind: str | None = None,
        *,
        to: list[str] | None = None,
        payload: dict[str, Any] | None = None,
        payload_avro: bytes | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> str:
        body = _body(kind, to, payload, payload_avro, options)
        res = await self._req("POST", "/v1/messages", json=body, headers=_headers(idempotency_key))
        return str(res["message_id"])

    async def status(self, message_id: str, *, wait: float = 0, since: str | None = None) -> Any:
        params: dict[str, Any] = {"wait": wait}
        if since is not None:
            params["since"] = since
        return await self._req("GET", f"/v1/messages/{message_id}", params=params)

    async def inbox(
        self, *, after: int = 0, limit: int = 100, unacked: bool = False, wait: float = 0
    ) -> Any:
        params = {"after": after, "limit": limit, "unacked": unacked, "wait": wait}
        return await self._req("GET", "/v1/inbox", params=params)

    async def fetch(self, message_id: str) -> Any:
        return await self._req("GET", f"/v1/inbox/{message_id}")

    async def ack(self, message_ids: list[str]) -> int:
        res = await self._req("POST", "/v1/inbox/ack", json={"message_ids": message_ids})
        return int(res["acked"])

    async def summary(self) -> Any:
        return await self._req("GET", "/v1/status")
