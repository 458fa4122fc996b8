"""``i24net directory build|sign|verify|show``.

- ``build --keys DIR --out FILE``: one ACTIVE record per ``*.public.json`` in DIR
  (station identities from :mod:`i24net.stations`), written unsigned as JSON lines.
- ``sign --records FILE --root-secret F --out DIR``: sign each record with the
  GS root key; DIR gets ``<STATION>.entry`` files (the ``i24.directory`` values).
- ``verify --entries DIR --root-public F``: check every entry against the pinned root key.
- ``show --entries DIR --root-public F``: the verified directory as a table.
- ``manifest --entries DIR --root-secret F [--expires-in-hours H] [--version N]``:
  sign the manifest naming every entry in DIR (each station's serial and
  digest) with a new version and expiry, write it to ``DIR/@manifest``, and
  with ``--bootstrap`` or ``--kafka-config`` publish it on the directory topic
  (``--with-entries``: the entries first, e.g. right after a revocation). The
  GS runs it periodically (a systemd timer, docs/security.md) so that readers
  can tell a current directory from a frozen one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.errors import ConfigError, DirectoryError
from i24net.keys import load_public, load_root, load_root_public
from i24net.schemas import SchemaStore
from i24net.stations import station


def register(sub: Any) -> None:
    d = sub.add_parser("directory", help="the GS-signed station directory")
    ds = d.add_subparsers(dest="directory_command", metavar="ACTION", required=True)
    b = ds.add_parser("build", help="records from a folder of *.public.json key files")
    b.add_argument("--keys", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True, help="records file (JSON lines)")
    b.set_defaults(func=_build)
    s = ds.add_parser("sign", help="sign records with the GS root secret key")
    s.add_argument("--records", type=Path, required=True)
    s.add_argument("--root-secret", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True, help="folder for <STATION>.entry files")
    s.set_defaults(func=_sign)
    m = ds.add_parser("manifest", help="(re-)sign and optionally publish the directory manifest")
    m.add_argument("--entries", type=Path, required=True, help="folder of <STATION>.entry files")
    m.add_argument("--root-secret", type=Path, required=True)
    m.add_argument("--expires-in-hours", type=float, default=24.0)
    m.add_argument(
        "--version",
        type=int,
        help="default: the signing time in seconds, and above the version in --out",
    )
    m.add_argument("--out", type=Path, help="manifest file (default: ENTRIES/@manifest)")
    m.add_argument("--bootstrap", help="publish to this broker (host:port, PLAINTEXT)")
    m.add_argument(
        "--kafka-config", type=Path, help="publish with the [kafka] section of this TOML file"
    )
    m.add_argument("--topic", default="i24.directory")
    m.add_argument("--with-entries", action="store_true", help="publish the entries too")
    m.set_defaults(func=_manifest)
    for name, func in (("verify", _verify), ("show", _show)):
        p = ds.add_parser(name, help=f"{name} signed entries with the pinned root public key")
        p.add_argument("--entries", type=Path, required=True)
        p.add_argument("--root-public", type=Path, required=True)
        p.set_defaults(func=func)


def _build(args: argparse.Namespace) -> int:
    now = system_clock()
    files = sorted(args.keys.glob("*.public.json"))
    if not files:
        raise DirectoryError(f"no *.public.json key files in {args.keys}")
    store = SchemaStore.default()
    lines = []
    for f in files:
        pub = load_public(f)
        rec = StationRecord.for_station(
            station(pub.station), [pub], valid_from_ms=pub.created_ms, issued_ms=now
        )
        lines.append(store.encode("net.i24.DirectoryRecord", rec.to_avro()).hex())
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} records written to {args.out} (unsigned; next: directory sign)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    store = SchemaStore.default()
    root = load_root(args.root_secret)
    records = [
        StationRecord.from_avro(store.decode("net.i24.DirectoryRecord", bytes.fromhex(line)))
        for line in args.records.read_text(encoding="utf-8").split()
    ]
    entries = Directory(records).sign(root, store)
    args.out.mkdir(parents=True, exist_ok=True)
    for code, entry in entries.items():
        (args.out / f"{code}.entry").write_bytes(entry)
    print(f"{len(entries)} entries signed by {root.key_id} in {args.out}")
    return 0


def _load(args: argparse.Namespace) -> Directory:
    store = SchemaStore.default()
    root = load_root_public(args.root_public)
    entries = [p.read_bytes() for p in sorted(args.entries.glob("*.entry"))]
    if not entries:
        raise DirectoryError(f"no *.entry files in {args.entries}")
    return Directory.from_entries(entries, root, store)


def _verify(args: argparse.Namespace) -> int:
    d = _load(args)
    print(f"OK: {len(d)} directory entries carry valid GS root signatures")
    return 0


def _day(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _show(args: argparse.Namespace) -> int:
    d = _load(args)
    print(f"{'STATION':<16}{'KIND':<22}{'REGION':<26}{'STATUS':<10}{'KEY':<28}{'FROM':<11}UNTIL")
    for r in d:
        for k in (*r.signing_keys, *r.encryption_keys):
            print(
                f"{r.station:<16}{r.kind.value:<22}{r.region or '-':<26}{k.status.value:<10}"
                f"{k.key_id:<28}{_day(k.valid_from_ms):<11}{_day(k.valid_until_ms)}"
            )
    print(json.dumps({"stations": len(d)}))
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from i24net.directory import MANIFEST_KEY, sign_manifest, verify_manifest

    store = SchemaStore.default()
    root = load_root(args.root_secret)
    entries = {p.stem: p.read_bytes() for p in sorted(args.entries.glob("*.entry"))}
    if not entries:
        raise DirectoryError(f"no *.entry files in {args.entries}")
    d = Directory.from_entries(entries.values(), root.public, store)
    if sorted(entries) != sorted(r.station for r in d):
        raise DirectoryError(f"{args.entries}: each <STATION>.entry must hold STATION's record")
    out: Path = args.out or args.entries / MANIFEST_KEY
    previous = 0
    if out.exists():
        previous = verify_manifest(out.read_bytes(), root.public, store).version
    now = system_clock()
    version = args.version if args.version is not None else max(previous + 1, now // 1000)
    if version <= previous:
        raise DirectoryError(f"version {version} is not above the previous {previous} in {out}")
    if args.expires_in_hours <= 0:
        raise DirectoryError("--expires-in-hours must be positive")
    expires = now + int(args.expires_in_hours * 3_600_000)
    value = sign_manifest(
        d.manifest(version=version, issued_ms=now, expires_ms=expires), root, store
    )
    out.write_bytes(value)
    print(f"manifest version {version} of {len(d)} stations, expires {_day(expires)}: {out}")
    if args.bootstrap or args.kafka_config:
        asyncio.run(_publish(args, entries if args.with_entries else {}, value))
        print(f"published on {args.topic}" + (" with the entries" if args.with_entries else ""))
    return 0


async def _publish(args: argparse.Namespace, entries: dict[str, bytes], manifest: bytes) -> None:
    from aiokafka import AIOKafkaProducer
    from pydantic import ValidationError

    from i24net.directory import publish
    from i24net.kafka import KafkaConnection
    from i24net.kafka.settings import KafkaSettings

    if args.kafka_config:
        try:
            with args.kafka_config.open("rb") as f:
                kafka = KafkaSettings.model_validate(tomllib.load(f).get("kafka", {}))
        except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ConfigError(f"{args.kafka_config}: no valid [kafka] section: {exc}") from exc
        conn = kafka.connection("i24net-directory")
    else:
        conn = KafkaConnection(bootstrap=args.bootstrap, client_id="i24net-directory")
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **conn.client_kwargs())
    await producer.start()
    try:
        await publish(producer, entries, topic=args.topic, manifest=manifest)
    finally:
        await producer.stop()
