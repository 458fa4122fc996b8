"""The router process: RouterApp + HTTP (health, metrics, review API) under one task group."""

from __future__ import annotations

import asyncio
import logging
import signal

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from i24net.router.app import RouterApp
from i24net.router.settings import RouterSettings
from i24net.service import HttpServer, build_info, health_router

log = logging.getLogger(__name__)


async def serve(settings: RouterSettings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; the HTTP server is up before the broker is (``/readyz``)."""
    registry = CollectorRegistry()
    build_info(registry)
    app = RouterApp(settings, registry)
    checks = {
        "router": lambda: None if app.ready.is_set() else "starting",
        "directory": lambda: None if len(app.directory) else "directory not loaded",
    }
    api = FastAPI(title="i24net router")
    api.include_router(health_router(registry, checks))
    review = None
    if settings.review.enabled:
        from i24net.router.review import ReviewService, review_router

        review = ReviewService(app, settings)
        api.include_router(review_router(review))
    http = HttpServer(api, settings.http.host, settings.http.port)
    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tg:
        # SIGHUP: reload the screening policy (a bad file leaves the old one in force)
        loop.add_signal_handler(
            signal.SIGHUP, lambda: tg.create_task(app.reload_policy(), name="policy-reload")
        )
        tg.create_task(http.serve(stop=stop), name="http")
        try:
            async with app:
                log.info("router %s routing", settings.router.instance)
                if review is not None:
                    tg.create_task(review.run(stop), name="review")
                await app.run(stop)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            stop.set()
