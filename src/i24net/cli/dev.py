"""``i24net dev``: a local Kafka broker for development, the demo and benchmarks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from i24net.kafka.broker import Broker, BrokerSettings, probe_metadata, run_sync
from i24net.kafka.dist import KafkaDistribution

DEFAULT_DATA_DIR = Path("var/kafka")


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help="development tools: a local Kafka broker")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="TOOL", required=True)
    broker = dev_sub.add_parser(
        "broker",
        help="fetch, start, stop or inspect a local single-node Kafka broker",
        description=(
            "Runs Apache Kafka (KRaft, broker+controller in one JVM) on loopback from the "
            "jars on Maven Central, cached under ~/.cache/i24net/kafka/<version>/."
        ),
    )
    broker.add_argument("action", choices=["fetch", "start", "stop", "status"], help="what to do")
    broker.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="storage, server.properties, broker.log and broker.json (default: %(default)s)",
    )
    broker.add_argument("--port", type=int, default=0, help="client port (default: a free one)")
    broker.add_argument("--heap", default="512m", help="JVM heap (default: %(default)s)")
    broker.set_defaults(func=_broker)


def _broker(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if args.action == "fetch":
        libs = KafkaDistribution().ensure()
        print(f"Kafka jars ready in {libs}")
        return 0
    running = Broker.from_state(data_dir)
    if args.action == "start":
        if running is not None and running.is_running():
            print(f"already running: {running.bootstrap} (pid {running.pid})")
            return 0
        broker = Broker(BrokerSettings(data_dir=data_dir, port=args.port, heap=args.heap))
        broker.start(attached=False)
        print(f"broker ready at {broker.bootstrap} in {broker.started_in_s:.1f}s")
        print(f"  pid {broker.pid}, log {broker.log_path}")
        print(f"  stop it with: i24net dev broker stop --data-dir {data_dir}")
        return 0
    if running is None or not running.is_running():
        print(f"no broker running from {data_dir}")
        return 0 if args.action == "stop" else 1
    if args.action == "stop":
        pid = running.pid
        running.stop()
        print(f"stopped broker pid {pid}")
        return 0
    try:
        nodes = run_sync(probe_metadata(running.bootstrap))
    except Exception as exc:
        print(f"broker pid {running.pid} at {running.bootstrap} does not answer: {exc!r}")
        return 1
    print(f"broker pid {running.pid} at {running.bootstrap}: up, nodes {nodes}", file=sys.stdout)
    return 0
