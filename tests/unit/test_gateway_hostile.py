"""Malformed and hostile requests against the gateway's running API (real HTTP, no broker).

Every refusal is a 4xx (or the 500 of last resort) with the documented body
``{"error": <code>, "detail": <text>}``: never FastAPI's ``{"detail": ...}``,
never a bare 500, and a request head is never buffered past its bound (the
connection is closed). Raw sockets where the HTTP client would not send it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from i24net.directory import Directory, StationRecord
from i24net.gateway import Gateway, Settings
from i24net.keys import RootSecrets, StationSecrets
from i24net.schemas import SchemaStore
from i24net.stations import station

STORE = SchemaStore.default()
PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}
MAX_REQUEST = 64 << 10
MAX_HEAD = 4096
MAX_HEADERS = 50


@pytest.fixture(scope="module")
def world() -> tuple[dict[str, StationSecrets], Directory, RootSecrets]:
    import time

    t = int(time.time() * 1000) - 60_000
    root = RootSecrets.generate(now_ms=t)
    secrets = {c: StationSecrets.generate(c, now_ms=t) for c in ("FR", "GS", "JP", "IT")}
    d = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=t, issued_ms=t)
        for c, s in secrets.items()
    )
    return secrets, d, root


@pytest.fixture
def settings(world: Any, gateway_settings: Any) -> Settings:
    return gateway_settings(  # type: ignore[no-any-return]
        world,
        STORE,
        shutdown_grace_s=2,
        api={
            "max_request_bytes": MAX_REQUEST,
            "max_header_bytes": MAX_HEAD,
            "max_headers": MAX_HEADERS,
        },
    )


@pytest.fixture
def headers(settings: Settings, authorize: Any) -> dict[str, str]:
    """The ``Authorization`` header of an integrator with every scope."""
    return authorize(settings)  # type: ignore[no-any-return]


@pytest.fixture
async def gw(settings: Settings, headers: dict[str, str]) -> AsyncIterator[Gateway]:
    async with Gateway(settings, store=STORE) as g:
        yield g


@pytest.fixture
async def client(gw: Gateway, headers: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gw.port}", timeout=20, headers=headers
    ) as c:
        yield c


def refused(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The documented refusal: this status, and exactly {"error": code, "detail": text}."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail"} and isinstance(body["detail"], str), body
    assert body["error"] == code, body
    return dict(body)


def message(**kw: Any) -> dict[str, Any]:
    return {"kind": "POLICE_MESSAGE", "to": ["JP"], "payload": PM, **kw}


async def raw(gw: Gateway, data: bytes) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; the whole answer, and whether the server closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1 << 16), 10)
        try:
            rest = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:
            rest = b""
        return answer + rest, reader.at_eof()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def refusal_of(gw: Gateway, reason: str) -> float:
    got = gw.registry.get_sample_value("i24net_gateway_intake_refusals_total", {"reason": reason})
    return got or 0.0


# --- request heads: bounded before they are buffered -------------------------------


async def test_one_huge_header_is_431_and_closed(gw: Gateway) -> None:
    head = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 * MAX_HEAD)
    data, closed = await raw(gw, head)
    status, headers, body = parse_response(data)
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body)["error"] == "headers_too_large"
    assert closed
    assert refusal_of(gw, "headers_too_large") == 1


async def test_too_many_headers_is_431_and_closed(gw: Gateway) -> None:
    lines = b"".join(b"x-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    assert len(lines) < MAX_HEAD  # refused for the count, not the size
    data, closed = await raw(gw, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    status, _, body = parse_response(data)
    assert status == 431 and closed
    assert json.loads(body) == {
        "error": "headers_too_large",
        "detail": f"more than {MAX_HEADERS} headers",
    }


async def test_a_header_flood_is_cut_off_not_buffered(gw: Gateway) -> None:
    """16 MiB of one header value: the server closes the connection long before it is
    all sent (it never reads past its bound), where it used to buffer it all."""
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    sent = 0
    chunk = b"a" * (64 << 10)
    try:
        with pytest.raises((ConnectionError, OSError)):
            writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(256):  # 16 MiB
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 10)
                sent += len(chunk)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert sent < 16 << 20
    assert refusal_of(gw, "headers_too_large") == 1


async def test_heads_within_bounds_and_keep_alive_still_work(gw: Gateway) -> None:
    """Several requests on one connection, each head under the bound but together over it."""
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (MAX_HEAD // 2) + b"\r\n\r\n"
    data, _ = await raw(
        gw, one * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert data.count(b"HTTP/1.1 200 OK") == 4


# --- bodies: the documented refusal, not FastAPI's ------------------------------------


async def test_chunked_body_over_the_limit_is_413(gw: Gateway, headers: dict[str, str]) -> None:
    body = json.dumps(message(payload={**PM, "text": "x" * (2 * MAX_REQUEST)})).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192])
        for i in range(0, len(body), 8192)
    )
    data, _ = await raw(
        gw,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: {headers['Authorization']}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"0\r\n\r\n",
    )
    status, _, resp = parse_response(data)
    assert status == 413
    assert json.loads(resp)["error"] == "oversized"


async def test_content_length_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/messages", content=b"{" * (MAX_REQUEST + 1))
    refused(r, 413, "oversized")


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 30_000 + b"]" * 30_000,  # nesting deeper than the parser's recursion
        b'{"kind": "POLICE_MESSAGE", "to": ["JP"], "payload": "\xff\xfe"}',  # not UTF-8
        b'{"kind": "POLICE_MESSAGE", "to": ',  # truncated
        b"not json at all",
        b"",
    ],
    ids=["deep_nesting", "invalid_utf8", "truncated", "not_json", "empty"],
)
async def test_unparseable_bodies_get_the_documented_refusal(
    client: httpx.AsyncClient, content: bytes
) -> None:
    r = await client.post(
        "/v1/messages", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422)
    refused(r, r.status_code, "bad_request")


async def test_unknown_path_and_method(client: httpx.AsyncClient) -> None:
    refused(await client.get("/v1/nowhere"), 404, "not_found")
    refused(await client.delete("/v1/messages"), 405, "method_not_allowed")


# --- text and numbers the storage and the wire cannot hold -----------------------------


async def test_lone_surrogate_in_handling_text(client: httpx.AsyncClient) -> None:
    body = json.dumps(message(handling=[{"code": "OTHER", "text": "ok \ud800 no"}]))
    assert "\\ud800" in body  # json escapes it; the server's parser makes it a lone surrogate
    r = await client.post(
        "/v1/messages", content=body, headers={"content-type": "application/json"}
    )
    refused(r, 422, "bad_header")


async def test_lone_surrogate_in_payload_and_categories(client: httpx.AsyncClient) -> None:
    for body in (
        message(payload={**PM, "text": "\udfff"}),
        message(offence_categories=["\ud800"]),
    ):
        r = await client.post(
            "/v1/messages",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        assert r.json()["error"] in ("schema_mismatch", "bad_header")


async def test_numbers_out_of_range(client: httpx.AsyncClient) -> None:
    for big in (1 << 63, -(1 << 63) - 1, 1 << 200):
        r = await client.post("/v1/messages", json=message(expires_ms=big))
        assert r.status_code in (400, 422) and set(r.json()) == {"error", "detail"}
        r = await client.post("/v1/messages", json=message(expires_in_s=big))
        assert r.status_code in (400, 422) and set(r.json()) == {"error", "detail"}
    r = await client.post("/v1/messages", json=message(source_accuracy=1 << 70))
    refused(r, 422, "bad_header")


@pytest.mark.parametrize("path", ["/v1/inbox", "/v1/rejected"])
async def test_cursor_over_64_bits(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path, params={"after": (1 << 63) - 1})).status_code == 200
    for after in (1 << 63, 1 << 64, 10**30):
        refused(await client.get(path, params={"after": after}), 400, "bad_request")


async def test_ack_with_lone_surrogate_or_odd_ids(client: httpx.AsyncClient) -> None:
    for ids in (['"\\ud800"'], ['"' + "A" * 65 + '"'], ['"a b"'], ["1"]):
        r = await client.post(
            "/v1/inbox/ack",
            content='{"message_ids": [' + ",".join(ids) + "]}",
            headers={"content-type": "application/json"},
        )
        refused(r, 400, "bad_request")
    r = await client.post("/v1/inbox/ack", json={"message_ids": ["01HZZZZZZZZZZZZZZZZZZZZZZZ"]})
    assert r.status_code == 200 and r.json() == {"acked": 0}


async def test_unknown_labels_do_not_grow_the_metrics(
    gw: Gateway, client: httpx.AsyncClient
) -> None:
    """Refused requests label their metrics with known kinds and precedences only."""
    for i in range(20):
        r = await client.post(
            "/v1/messages", json=message(to=["XX"], precedence=f"P{i}", kind=f"K{i}")
        )
        assert r.status_code == 422
    samples = [
        s
        for m in gw.registry.collect()
        if m.name == "i24net_gateway_intake"
        for s in m.samples
        if s.labels.get("outcome") == "refused"
    ]
    assert {(s.labels["kind"], s.labels["precedence"]) for s in samples} == {("unknown", "unknown")}


# --- station codes: only the characters a code is made of ---------------------------


@pytest.mark.parametrize("code", ["ıt", "ﬁ", "İT", "j\u200bp", "ＪＰ", "JP\n", "-JP", "J P"])
async def test_case_mapping_creates_no_station_code(client: httpx.AsyncClient, code: str) -> None:
    r = await client.post("/v1/messages", json=message(to=[code]))
    refused(r, 422, "unknown_recipient")
    r = await client.post("/v1/messages", json=message(to_all=True, to=[], excluded=[code]))
    refused(r, 422, "unknown_recipient")
    r = await client.post(
        "/v1/messages/avro",
        params={"to": code},
        content=b"\xc3\x01" + b"\0" * 8,
        headers={"content-type": "application/vnd.apache.avro.binary"},
    )
    refused(r, 422, "unknown_recipient")


async def test_recipients_to_self_and_repeated(client: httpx.AsyncClient) -> None:
    """Documented in docs/gateway.md: a message to its own sender is routed back to it
    (loop-back, to test the path end to end); a repeated code is one recipient."""
    r = await client.post("/v1/messages", json=message(to=["FR"]))
    assert r.status_code == 202
    st = (await client.get(f"/v1/messages/{r.json()['message_id']}")).json()
    assert st["recipients"] == ["FR"]
    r = await client.post("/v1/messages", json=message(to=["JP", "jp", " JP "]))
    assert r.status_code == 202
    st = (await client.get(f"/v1/messages/{r.json()['message_id']}")).json()
    assert st["recipients"] == ["JP"]
    assert [s["station"] for s in st["stations"]] == ["JP"]


# --- the 500 of last resort -----------------------------------------------------------


async def test_unexpected_failure_is_500_with_the_body_and_no_content_logged(
    gw: Gateway, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "PLATE-AB-123-CD"

    async def broken(fn: Any) -> Any:
        raise RuntimeError(f"storage exploded near {secret}")

    gw.db.read = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        r = await client.get(f"/v1/messages/{secret}")
    refused(r, 500, "internal_error")
    assert secret not in r.text
    assert "RuntimeError" in caplog.text
    assert secret not in caplog.text
