"""``i24net provision``: topics, station credentials and ACLs on a secured broker."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from i24net.errors import ConfigError
from i24net.kafka.security import (
    ADMIN_USER,
    SCRAM_MECHANISM,
    Credential,
    check_connection,
    read_password_file,
)
from i24net.provision import QuotaPolicy, TopicPolicy, provision


def register(sub: Any) -> None:
    p = sub.add_parser(
        "provision",
        help="create topics, station credentials and ACLs (idempotent)",
        description=(
            "Converge the broker to the station list: every topic, a SCRAM-SHA-512 "
            "credential per station and service (passwords written to "
            "CREDENTIALS_DIR/<user>.password, mode 0600, never printed) and the ACLs "
            "of docs/security.md. Re-running changes nothing; a station left out "
            "loses its credential and ACLs (its topics are kept)."
        ),
    )
    p.add_argument("--bootstrap", required=True, help="host:port of the SASL_SSL listener")
    p.add_argument("--ca-file", type=Path, required=True, help="CA bundle (PEM) of the broker")
    p.add_argument("--admin-user", default=ADMIN_USER, help="super user (default: %(default)s)")
    p.add_argument(
        "--admin-password-file",
        type=Path,
        required=True,
        help="file holding the super user's password (mode 0600)",
    )
    p.add_argument(
        "--credentials-dir", type=Path, required=True, help="where <user>.password files go"
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stations", help="comma-separated station codes (default: every station)")
    group.add_argument("--stations-file", type=Path, help="a file with one station code a line")
    p.add_argument(
        "--brokers", type=int, default=1, help="brokers in the cluster (3: RF 3, min ISR 2)"
    )
    p.add_argument("--rotate", default="", help="comma-separated users to give new passwords")
    p.add_argument(
        "--legacy-out-topics",
        action="store_true",
        help="also keep the per-station i24.out.<station> topics and their ACLs, while "
        "gateways of an older release still write them (migration: docs/topics.md)",
    )
    p.add_argument(
        "--producer-byte-rate",
        type=int,
        default=QuotaPolicy.producer_byte_rate,
        metavar="BYTES",
        help="Kafka producer quota of each station principal, bytes/s "
        "(default: %(default)s; docs/security.md)",
    )
    p.set_defaults(func=_run)


def _stations(args: argparse.Namespace) -> list[str]:
    if args.stations:
        return [c.strip() for c in args.stations.split(",") if c.strip()]
    if args.stations_file:
        try:
            lines = args.stations_file.read_text().splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.stations_file}: {exc}") from exc
        return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    from i24net.stations import all_stations

    return sorted(all_stations())


def _run(args: argparse.Namespace) -> int:
    admin = Credential(
        args.admin_user, read_password_file(args.admin_password_file), SCRAM_MECHANISM
    ).connection(args.bootstrap, args.ca_file, client_id="i24net-provision")
    stations = _stations(args)

    async def go() -> str:
        await check_connection(admin, timeout_s=15)
        report = await provision(
            admin,
            stations,
            args.credentials_dir,
            policy=TopicPolicy.for_brokers(args.brokers, legacy_out_topics=args.legacy_out_topics),
            quotas=QuotaPolicy(producer_byte_rate=args.producer_byte_rate),
            rotate=[u.strip() for u in args.rotate.split(",") if u.strip()],
        )
        lines = [report.summary()]
        for label, items in (
            ("topics created", report.topics_created),
            ("topics reconfigured", report.topics_reconfigured),
            ("topics with fewer partitions than the policy", report.topics_underpartitioned),
            ("credentials created", report.users_created),
            ("credentials revoked", report.users_removed),
        ):
            if items:
                lines.append(f"  {label}: {', '.join(items)}")
        if report.acls_created or report.acls_removed:
            lines.append(
                f"  ACLs: +{len(report.acls_created)} -{len(report.acls_removed)} "
                "(run with -v for each)"
            )
        lines.append(f"  passwords in {args.credentials_dir}/<user>.password (mode 0600)")
        return "\n".join(lines)

    print(asyncio.run(go()))
    return 0
