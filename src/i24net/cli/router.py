"""``i24net router --config FILE``: run one GS router instance."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "router",
        help="run the GS router (verify, screen, deliver; review API; metrics)",
        description="Consumes i24.out.*, screens with the neutrality policy and delivers, "
        "in one Kafka transaction per batch. See docs/router.md.",
    )
    p.add_argument("--config", type=Path, required=True, help="router.toml")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from i24net.router.settings import load_settings
    from i24net.service import run_service

    settings = load_settings(args.config)

    async def main(stop: asyncio.Event) -> int:
        from i24net.router.server import serve

        await serve(settings, stop)
        return 0

    return run_service(main)
