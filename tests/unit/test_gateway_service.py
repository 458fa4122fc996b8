"""The shared service runtime (i24net.service): HTTP in the loop, health, metrics."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from i24net.service import HttpServer, build_info, health_router


async def test_health_ready_metrics_and_stop() -> None:
    registry = CollectorRegistry()
    build_info(registry, "9.9.9")
    state: dict[str, str | None] = {"broker": "unreachable"}
    app = FastAPI()

    async def broker() -> str | None:
        return state["broker"]

    app.include_router(health_router(registry, {"broker": broker, "dir": lambda: None}))
    server = HttpServer(app, "127.0.0.1", 0)
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(server.serve(ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 10)
    base = f"http://127.0.0.1:{server.port}"
    async with httpx.AsyncClient(base_url=base) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert r.json() == {"ready": False, "reasons": {"broker": "unreachable"}}
        state["broker"] = None
        assert (await c.get("/readyz")).status_code == 200
        text = (await c.get("/metrics")).text
        assert 'i24net_build_info{version="9.9.9"} 1.0' in text
    stop.set()
    await asyncio.wait_for(task, 10)


async def test_cancel_stops_server() -> None:
    """Cancelling ``serve`` closes the listening socket and propagates the cancellation."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    server = HttpServer(app, "127.0.0.1", 0)
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    port = server.port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        assert (await c.get("/ping")).json() == {"pong": "yes"}
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert task.cancelled()  # serve re-raised the cancellation, it did not swallow it
    with pytest.raises(ConnectionRefusedError):  # nothing listens any more
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
