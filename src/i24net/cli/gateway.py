"""``i24net gateway --config FILE``: run one station's gateway daemon until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from i24net.gateway import Gateway, load_settings
from i24net.service import run_service


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gateway",
        help="run a bureau gateway (intake API, outbox drain, verified inbox)",
        description="Runs until SIGTERM/SIGINT; see deploy/gateway/gateway.toml and "
        "docs/gateway.md.",
    )
    p.add_argument("--config", type=Path, required=True, help="gateway TOML settings file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)

    async def main(stop: asyncio.Event) -> int:
        await Gateway(settings).run(stop)
        return 0

    return run_service(main)
