"""``i24net audit verify``: walk ``i24.audit`` and report every edit, gap or reordering."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from i24net.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="verify the hash-chained audit log (i24.audit)")
    sp = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = sp.add_parser(
        "verify",
        help="walk the topic; exit 1 on any edit, gap, reordering, duplicate or truncation",
    )
    v.add_argument("--config", type=Path, help="router.toml (Kafka connection and topic prefix)")
    v.add_argument("--bootstrap", help="host:port (instead of --config)")
    v.add_argument("--topic", help="topic name (default: i24.audit with the config's prefix)")
    v.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="CHAIN=LENGTH:HASH",
        help="a chain's length and head hash recorded earlier (detects a removed tail)",
    )
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from i24net.kafka import KafkaConnection

    if args.config:
        from i24net.router.settings import load_settings

        s = load_settings(args.config)
        conn = s.kafka.connection("i24net-audit")
        topic = args.topic or s.topics.audit
    elif args.bootstrap:
        conn = KafkaConnection(bootstrap=args.bootstrap, client_id="i24net-audit")
        topic = args.topic or "i24.audit"
    else:
        raise ConfigError("give --config or --bootstrap")
    expect: dict[str, tuple[int, bytes]] = {}
    for e in args.expect:
        try:
            chain, rest = e.split("=", 1)
            n, h = rest.split(":", 1)
            expect[chain] = (int(n), bytes.fromhex(h))
        except ValueError as exc:
            raise ConfigError(f"--expect {e!r}: expected CHAIN=LENGTH:HEXHASH") from exc
    report = asyncio.run(_run(conn, topic, expect))
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "chains": {
                        c: {"length": s.head.next_sequence, "head": s.head.last_hash.hex()}
                        for c, s in report.chains.items()
                    },
                    "problems": [
                        {
                            "kind": p.kind.value,
                            "chain": p.chain,
                            "sequence": p.sequence,
                            "offset": p.offset,
                            "detail": p.detail,
                        }
                        for p in report.problems
                    ],
                },
                indent=2,
            )
        )
    else:
        print(f"{topic}: {report.records} records, {len(report.chains)} chains")
        for c, s in sorted(report.chains.items()):
            print(f"  {c}: length {s.head.next_sequence}, head {s.head.last_hash.hex()}")
        for p in report.problems:
            print(f"  {p}")
        print("OK: chain intact" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


async def _run(conn: Any, topic: str, expect: dict[str, tuple[int, bytes]]) -> Any:
    from aiokafka import AIOKafkaConsumer

    from i24net.audit import read_records, verify_chain
    from i24net.schemas import SchemaStore

    c = AIOKafkaConsumer(
        **conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await c.start()
    try:
        records = [r async for r in read_records(c, topic=topic)]
    finally:
        await c.stop()
    return verify_chain(records, SchemaStore.default(), expect=expect)
