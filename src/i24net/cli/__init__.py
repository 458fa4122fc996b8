"""The ``i24net`` command line.

Each sub-command lives in a module of this package with a ``register(subparsers)``
function; the list below is the whole command surface.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from i24net import __version__
from i24net.errors import I24Error

# Module names under i24net.cli, in --help order.
COMMANDS: tuple[str, ...] = (
    "dev",
    "keys",
    "directory",
    "gateway",
    "send",
    "inbox",
    "provision",
    "router",
    "review",
    "policy",
    "audit",
    "report",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="i24net",
        description="i24net: secure police messaging over Apache Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"i24net {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"i24net.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        rc: int = args.func(args)
    except I24Error as exc:
        print(f"i24net: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return rc
