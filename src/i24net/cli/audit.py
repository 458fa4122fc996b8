"""``i24net audit verify``: walk ``i24.audit`` and report every edit, gap or reordering.

Every signed chain head is checked against the GS signing key valid at its
time (:class:`i24net.audit.HeadCheck`): a head that does not verify (a
rewritten prefix with recomputed hashes) or an unsigned tail fails the
verification. The directory for that is read from its topic, with the
router's roots (``--config``) or ``--root-public`` (with ``--bootstrap``).
Heads are checked by default with ``--config``; ``--no-heads`` (or a
``--bootstrap`` without ``--root-public``) checks the hash chain alone, and
the output says so: the hash chain alone is unkeyed.

Where the audit topic is (``--config``/``--bootstrap``/``--topic``) and which chain heads
were recorded earlier (``--expect``) are read here for every command that reads the
chain (``i24net report transparency`` too), so that both read the same topic the same
way and refuse the same removed tail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i24net.errors import ConfigError

if TYPE_CHECKING:
    from i24net.directory import Directory
    from i24net.kafka import KafkaConnection


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="verify the hash-chained audit log (i24.audit)")
    sp = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    v = sp.add_parser(
        "verify",
        help="walk the topic; exit 1 on any edit, gap, reordering, duplicate or truncation",
    )
    add_audit_source(v, expect_help="detects a removed tail")
    v.add_argument(
        "--heads",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="check every signed chain head against the GS signing key in the directory "
        "(read from its topic; roots from --config or --root-public); default: on with "
        "--config or --root-public, off otherwise",
    )
    v.add_argument(
        "--root-public",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        help="trusted GS root public key file(s) to read the directory with (implies "
        "--heads; default with --config: the router's)",
    )
    v.add_argument("--directory-topic", help="default: i24.directory (with the config's prefix)")
    v.add_argument("--signer", default="GS", help="the station whose key signs heads (GS)")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.set_defaults(func=_verify)


def add_audit_source(p: argparse.ArgumentParser, *, expect_help: str) -> None:
    """``--config``/``--bootstrap``/``--topic`` and ``--expect`` (read by :func:`audit_source`
    and :func:`parse_expect`); ``expect_help`` says what a recorded head is for there."""
    p.add_argument("--config", type=Path, help="router.toml (Kafka connection and topic prefix)")
    p.add_argument("--bootstrap", help="host:port (instead of --config)")
    p.add_argument("--topic", help="topic name (default: i24.audit with the config's prefix)")
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="CHAIN=LENGTH:HASH",
        help=f"a chain's length and head hash recorded earlier ({expect_help})",
    )


def audit_source(args: argparse.Namespace, client_id: str) -> tuple[KafkaConnection, str]:
    """The connection and the audit topic: the router's (``--config``, its prefix and
    security) or a plain broker's (``--bootstrap``); ``--topic`` overrides the name."""
    from i24net.kafka import KafkaConnection

    if args.config:
        from i24net.router.settings import load_settings

        s = load_settings(args.config)
        return s.kafka.connection(client_id), args.topic or s.topics.audit
    if args.bootstrap:
        conn = KafkaConnection(bootstrap=args.bootstrap, client_id=client_id)
        return conn, args.topic or "i24.audit"
    raise ConfigError("give --config or --bootstrap")


def parse_expect(values: list[str]) -> dict[str, tuple[int, bytes]]:
    """``--expect CHAIN=LENGTH:HEXHASH`` values: chain -> (length, head hash)."""
    out: dict[str, tuple[int, bytes]] = {}
    for e in values:
        try:
            chain, rest = e.split("=", 1)
            n, h = rest.split(":", 1)
            out[chain] = (int(n), bytes.fromhex(h))
        except ValueError as exc:
            raise ConfigError(f"--expect {e!r}: expected CHAIN=LENGTH:HEXHASH") from exc
    return out


def head_roots(args: argparse.Namespace) -> tuple[list[Path], str | None]:
    """The root public files and the directory topic to check signed heads with (no files:
    heads are not checked)."""
    heads = args.heads
    if heads is None:
        heads = bool(args.config or args.root_public)
    if not heads:
        return [], None
    if args.config:
        from i24net.router.settings import load_settings

        s = load_settings(args.config)
        files = args.root_public or [s.keys.root_public, *s.keys.roots]
        return files, args.directory_topic or s.topics.directory
    if not args.root_public:
        raise ConfigError("--heads needs --config or --root-public (the directory's roots)")
    return list(args.root_public), args.directory_topic or "i24.directory"


async def read_directory(conn: KafkaConnection, files: list[Path], topic: str) -> Directory:
    """The verified directory from its topic (the same reader rules as every service)."""
    from aiokafka import AIOKafkaConsumer

    from i24net.directory import read_all
    from i24net.directory.roots import load_roots
    from i24net.schemas import SchemaStore

    roots = load_roots(files)
    c = AIOKafkaConsumer(
        **conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
    )
    await c.start()
    try:
        return await read_all(c, roots, SchemaStore.default(), topic=topic)
    finally:
        await c.stop()


def _verify(args: argparse.Namespace) -> int:
    from i24net.audit import HeadCheck, verify_chain
    from i24net.report import read_audit
    from i24net.schemas import SchemaStore

    conn, topic = audit_source(args, "i24net-audit")
    expect = parse_expect(args.expect)
    files, dir_topic = head_roots(args)
    heads = None
    if files and dir_topic:
        directory = asyncio.run(read_directory(conn, files, dir_topic))
        heads = HeadCheck(args.signer, directory.signing_key)
    records = asyncio.run(read_audit(conn, topic))
    report = verify_chain(records, SchemaStore.default(), expect=expect, heads=heads)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "heads_checked": heads is not None,
                    "chains": {
                        c: {
                            "length": s.head.next_sequence,
                            "head": s.head.last_hash.hex(),
                            "signed_through": s.signed_through,
                        }
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
            line = f"  {c}: length {s.head.next_sequence}, head {s.head.last_hash.hex()}"
            if heads is not None:
                through = "none" if s.signed_through is None else f"seq {s.signed_through}"
                line += f", signed through {through} ({s.signed_heads} signed heads)"
            print(line)
        if heads is None:
            print(
                "  signed heads: not checked (--no-heads, or no --config/--root-public): "
                "the hash chain alone does not "
                "show a rewritten prefix"
            )
        for p in report.problems:
            print(f"  {p}")
        print("OK: chain intact" if report.ok else f"FAILED: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1
