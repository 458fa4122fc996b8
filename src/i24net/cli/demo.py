"""``i24net demo``: a broker, the router and three gateways exchanging messages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole network locally and show messages going through it",
        description=(
            "Starts a Kafka broker, the GS router and the FR, JP and BR gateways, sends a "
            "Red Notice request to all stations, a diffusion, and a political request that "
            "the router holds and a reviewer rejects; verifies the audit chain; stops it all."
        ),
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("var/demo"),
        help="working folder, wiped at start; logs stay there (default: %(default)s)",
    )
    p.add_argument(
        "--secure",
        action="store_true",
        help="run the broker with TLS, SCRAM credentials per station and ACLs",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="after the script, leave everything running with a held message on the review "
        "desk (the console's URL and demo password are printed) until Ctrl-C",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from i24net.demo import run

    return run(args.dir, secure=args.secure, keep=args.keep)
