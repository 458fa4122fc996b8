"""A tiny service runtime shared by the gateway and the router.

- :func:`serve_http` runs a uvicorn server **inside the current event loop**
  (no thread, no signal handlers of uvicorn's own), until it is cancelled or
  ``stop`` is set; ``ready`` is set once the socket listens.
- :func:`run_service` is the process entry point: it installs SIGTERM/SIGINT
  handlers that set a stop event, and runs ``main(stop)`` to completion.
- :func:`health_router` gives ``/healthz`` (alive), ``/readyz`` (pluggable
  readiness checks that return a reason when not ready) and ``/metrics`` for
  a **passed-in** ``CollectorRegistry`` (never the global one).
- :func:`build_info` registers ``i24net_build_info{version}`` = 1.

    async def main(stop: asyncio.Event) -> int:
        registry = CollectorRegistry()
        build_info(registry)
        app = FastAPI()
        app.include_router(health_router(registry, {"broker": lambda: None}))
        server = HttpServer(app, "127.0.0.1", 8080)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.serve(stop=stop))
        return 0

    sys.exit(run_service(main))
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any

import uvicorn
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from i24net import __version__

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], "str | Awaitable[str | None] | None"]
"""A readiness check: returns None when ready, else a short reason ("broker unreachable")."""

DEFAULT_GRACEFUL_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    ready: asyncio.Event | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self.ready is not None:
            self.ready.set()


class HttpServer:
    """One uvicorn server in the running loop. ``port`` is the bound port once ready."""

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        *,
        graceful_s: float = DEFAULT_GRACEFUL_S,
        http: Any = "auto",
    ) -> None:
        """``http``: uvicorn's HTTP protocol, a name or a protocol class (the gateway
        passes one that bounds request heads before buffering them)."""
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=http,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=max(1, int(graceful_s)),
        )
        self._server = _Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self.host = host
        self._port = port

    @property
    def port(self) -> int:
        """The listening port (the real one when 0 was asked for), once started."""
        for srv in self._server.servers:
            for sock in srv.sockets:
                return int(sock.getsockname()[1])
        return self._port

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def stop(self) -> None:
        """Ask the server to finish (idempotent)."""
        self._server.should_exit = True

    async def serve(
        self, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None
    ) -> None:
        """Serve until cancelled or ``stop`` is set; shut down gracefully either way."""
        self._server.ready = ready
        task = asyncio.create_task(self._server.serve(), name=f"http:{self.host}:{self._port}")
        watchers: list[asyncio.Task[Any]] = []
        try:
            if stop is not None:
                watchers.append(asyncio.create_task(self._stop_on(stop)))
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self.stop()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            for w in watchers:
                w.cancel()
            for w in watchers:
                with contextlib.suppress(asyncio.CancelledError):
                    await w
        if not self._server.started and not self._server.should_exit:
            raise OSError(f"HTTP server on {self.host}:{self._port} did not start")

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stop()


async def serve_http(
    app: Any,
    host: str,
    port: int,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``app`` with uvicorn in the current loop until cancelled or ``stop`` is set."""
    await HttpServer(app, host, port).serve(ready=ready, stop=stop)


def run_service(
    main: Callable[[asyncio.Event], Awaitable[int | None]],
    *,
    signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
) -> int:
    """Run ``main(stop)`` in a new event loop; SIGTERM/SIGINT set ``stop``.

    A second signal while stopping is logged and ignored: the service's own
    bounded shutdown decides when it is done (systemd's TimeoutStopSec is the
    backstop). Returns ``main``'s exit code (0 when it returns None).
    """

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                log.warning("%s again: already stopping", sig.name)
            else:
                log.info("%s: stopping", sig.name)
            stop.set()

        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            rc = await main(stop)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        return 0 if rc is None else rc

    return asyncio.run(runner())


def health_router(
    registry: CollectorRegistry,
    checks: Mapping[str, ReadinessCheck] | None = None,
) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics`` for one service.

    ``/readyz`` answers 200 ``{"ready": true}`` when every check returns None,
    else 503 ``{"ready": false, "reasons": {"broker": "unreachable", ...}}``.
    ``checks`` is read at each request, so a caller may add to the mapping later.
    """
    router = APIRouter(tags=["health"])
    live_checks = checks if checks is not None else {}

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: every check passes",
        responses={503: {"description": "not ready, with a reason per failing check"}},
    )
    async def readyz() -> JSONResponse:
        reasons: dict[str, str] = {}
        for name, check in list(live_checks.items()):
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:  # a broken check means not ready, not a 500
                result = f"check failed: {exc!r}"
            if result is not None:
                reasons[name] = str(result)
        if reasons:
            return JSONResponse({"ready": False, "reasons": reasons}, status_code=503)
        return JSONResponse({"ready": True})

    @router.get("/metrics", summary="Prometheus metrics (text exposition format)")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def build_info(registry: CollectorRegistry, version: str = __version__) -> Gauge:
    """Register ``i24net_build_info{version}`` = 1 in ``registry``."""
    g = Gauge("i24net_build_info", "i24net build information", ["version"], registry=registry)
    g.labels(version=version).set(1)
    return g
