"""``i24net directory build|sign|verify|show``.

- ``build --keys DIR --out FILE``: one ACTIVE record per ``*.public.json`` in DIR
  (station identities from :mod:`i24net.stations`), written unsigned as JSON lines.
- ``sign --records FILE --root-secret F --out DIR``: sign each record with the
  GS root key; DIR gets ``<STATION>.entry`` files (the ``i24.directory`` values).
- ``verify --entries DIR --root-public F [F ...]``: check every entry against the
  trusted roots (one file, or several: a set by key id), after learning the root
  rotations (``*.rotation`` files) in DIR that those roots signed.
- ``show --entries DIR --root-public F [F ...]``: the verified directory as a table.
- ``rotate-root --old F --new F --entries DIR --out DIR [--overlap-hours H]``: the
  root rotation (docs/security.md, "Root rotation"): a ``net.i24.RootRotation``
  signed by the old root and, as proof of possession, the new one; every entry of
  DIR re-signed by the new root under the next serial; a new manifest signed by the
  new root. Written to OUT (``@root-<new key id>.rotation``, ``<STATION>.entry``,
  ``@manifest``) and with ``--bootstrap``/``--kafka-config`` published in that
  order (rotation, entries, manifest).
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
import dataclasses
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.errors import ConfigError, DirectoryError
from i24net.keys import load_public, load_root
from i24net.schemas import SchemaStore
from i24net.stations import station


def register(sub: Any) -> None:
    d = sub.add_parser("directory", help="the GS-signed station directory")
    ds = d.add_subparsers(dest="directory_command", metavar="ACTION", required=True)
    b = ds.add_parser("build", help="records from a folder of *.public.json key files")
    b.add_argument("--keys", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True, help="records file (JSON lines)")
    b.add_argument(
        "--encryption-lifetime",
        type=int,
        default=30,
        metavar="DAYS",
        help="publish valid_until = key creation + DAYS on every encryption and KEM key: the "
        "rotation schedule gateways count down to (default 30; 0: no end, not recommended: "
        "a key that never ends keeps everything wrapped to it exposed)",
    )
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
        p = ds.add_parser(name, help=f"{name} signed entries with the trusted root public keys")
        p.add_argument("--entries", type=Path, required=True)
        p.add_argument(
            "--root-public",
            type=Path,
            required=True,
            nargs="+",
            action="extend",
            help="root public key file(s); a rotation in ENTRIES signed by one extends the set",
        )
        p.set_defaults(func=func)
    r = ds.add_parser(
        "rotate-root",
        help="hand the directory over to a new GS root key (signed rotation, re-signed entries)",
    )
    r.add_argument("--old", type=Path, required=True, help="the current root's secret file")
    r.add_argument("--new", type=Path, required=True, help="the new root's secret file")
    r.add_argument("--entries", type=Path, required=True, help="the entries the old root signed")
    r.add_argument("--out", type=Path, required=True, help="folder for the rotated directory")
    r.add_argument(
        "--overlap-hours",
        type=float,
        default=168.0,
        help="how long the old root still signs (default 7 days: every reader, even one "
        "offline for days, meets the rotation and the re-signed entries in time)",
    )
    r.add_argument("--expires-in-hours", type=float, default=24.0, help="the new manifest's")
    r.add_argument("--bootstrap", help="publish to this broker (host:port, PLAINTEXT)")
    r.add_argument("--kafka-config", type=Path, help="publish with this TOML's [kafka] section")
    r.add_argument("--topic", default="i24.directory")
    r.set_defaults(func=_rotate_root)


def _build(args: argparse.Namespace) -> int:
    now = system_clock()
    files = sorted(args.keys.glob("*.public.json"))
    if not files:
        raise DirectoryError(f"no *.public.json key files in {args.keys}")
    if args.encryption_lifetime < 0:
        raise ConfigError("--encryption-lifetime is 0 (no end) or a number of days")
    store = SchemaStore.default()
    lines = []
    for f in files:
        pub = load_public(f)
        rec = StationRecord.for_station(
            station(pub.station), [pub], valid_from_ms=pub.created_ms, issued_ms=now
        )
        if args.encryption_lifetime:
            until = pub.created_ms + args.encryption_lifetime * 86_400_000
            rec = dataclasses.replace(
                rec,
                encryption_keys=tuple(
                    dataclasses.replace(k, valid_until_ms=until) for k in rec.encryption_keys
                ),
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
    from i24net.directory.reader import directory_from_entries, learn_rotation_files
    from i24net.directory.roots import load_roots

    store = SchemaStore.default()
    roots = learn_rotation_files(args.entries, load_roots(args.root_public), store)
    entries = [p.read_bytes() for p in sorted(args.entries.glob("*.entry"))]
    if not entries:
        raise DirectoryError(f"no *.entry files in {args.entries}")
    return directory_from_entries(entries, roots, store)


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


def _rotate_root(args: argparse.Namespace) -> int:
    import dataclasses

    from i24net.directory import MANIFEST_KEY, sign_manifest, verify_manifest
    from i24net.directory.reader import ROTATION_SUFFIX
    from i24net.directory.roots import sign_rotation

    store = SchemaStore.default()
    old, new = load_root(args.old), load_root(args.new)
    if args.overlap_hours <= 0 or args.expires_in_hours <= 0:
        raise DirectoryError("--overlap-hours and --expires-in-hours must be positive")
    files = {p.stem: p.read_bytes() for p in sorted(args.entries.glob("*.entry"))}
    if not files:
        raise DirectoryError(f"no *.entry files in {args.entries}")
    d = Directory.from_entries(files.values(), old.public, store)
    now = system_clock()
    until = now + int(args.overlap_hours * 3_600_000)
    rotation = sign_rotation(
        old, new, store, new_valid_from_ms=now, old_valid_until_ms=until, issued_ms=now
    )
    # Every record again under the next serial: the same serial with other bytes (another
    # root's signature) would be refused by every reader as an equivocation.
    rotated = Directory([dataclasses.replace(r, serial=r.serial + 1, issued_ms=now) for r in d])
    entries = rotated.sign(new, store)
    previous = 0
    if (args.entries / MANIFEST_KEY).exists():
        old_manifest = (args.entries / MANIFEST_KEY).read_bytes()
        previous = verify_manifest(old_manifest, old.public, store).version
    version = max(previous + 1, now // 1000)
    expires = now + int(args.expires_in_hours * 3_600_000)
    manifest = sign_manifest(
        rotated.manifest(version=version, issued_ms=now, expires_ms=expires), new, store
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.entries.glob("*" + ROTATION_SUFFIX):  # earlier rotations still count
        (args.out / path.name).write_bytes(path.read_bytes())
    (args.out / f"@root-{new.key_id}{ROTATION_SUFFIX}").write_bytes(rotation)
    for code, entry in entries.items():
        (args.out / f"{code}.entry").write_bytes(entry)
    (args.out / MANIFEST_KEY).write_bytes(manifest)
    print(
        f"root rotation {old.key_id} -> {new.key_id}: {new.key_id} signs from now, "
        f"{old.key_id} retires {_day(until)} ({args.overlap_hours:g} h overlap)"
    )
    print(f"{len(entries)} entries re-signed by {new.key_id}, manifest version {version}")
    print(f"written to {args.out}; pin {new.key_id} in new stations' settings")
    if args.bootstrap or args.kafka_config:
        asyncio.run(_publish(args, entries, manifest, {new.key_id: rotation}))
        print(f"published on {args.topic}: the rotation, the entries, the manifest")
    return 0


async def _publish(
    args: argparse.Namespace,
    entries: dict[str, bytes],
    manifest: bytes,
    rotations: dict[str, bytes] | None = None,
) -> None:
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
        await publish(producer, entries, topic=args.topic, manifest=manifest, rotations=rotations)
    finally:
        await producer.stop()
