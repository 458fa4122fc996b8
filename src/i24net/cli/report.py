"""``i24net report transparency``: the public transparency report from ``i24.audit``.

The whole topic is read and verified first (as ``i24net audit verify`` does, with its
options for where the topic is: :func:`i24net.cli.audit.add_audit_source`);
a broken chain is an error (exit 2) and no file is written.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from i24net.cli.audit import add_audit_source, audit_source, parse_expect
from i24net.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="public reports built from the verified audit chain")
    sp = p.add_subparsers(dest="report_command", metavar="REPORT", required=True)
    t = sp.add_parser(
        "transparency",
        help="decisions by outcome, rule, grounds, kind, region and month; review turnaround",
    )
    t.add_argument("--from", dest="first", required=True, metavar="DATE", help="YYYY-MM-DD (UTC)")
    t.add_argument("--to", dest="last", required=True, metavar="DATE", help="YYYY-MM-DD, included")
    t.add_argument("--format", choices=("html", "csv", "json"), default="html")
    t.add_argument("--out", type=Path, help="write here (default: standard output)")
    add_audit_source(t, expect_help="a removed tail is refused")
    t.set_defaults(func=_transparency)


def _date(value: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected a date YYYY-MM-DD") from None


def _transparency(args: argparse.Namespace) -> int:
    from i24net.clock import system_clock
    from i24net.report import Period, build_report, read_audit, render_csv, render_html, render_json
    from i24net.schemas import SchemaStore

    first, last = _date(args.first, "--from"), _date(args.last, "--to")
    try:
        period = Period(first, last)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    conn, topic = audit_source(args, "i24net-report")
    expect = parse_expect(args.expect)
    records = asyncio.run(read_audit(conn, topic))
    report = build_report(records, SchemaStore.default(), period, system_clock(), expect=expect)
    render = {"html": render_html, "csv": render_csv, "json": render_json}[args.format]
    text = render(report)
    if args.out is None:
        sys.stdout.write(text)
    else:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, args.out)
        print(
            f"{args.out}: {args.format} transparency report, {first} to {last}, "
            f"from {report.audit.records} verified audit records",
            file=sys.stderr,
        )
    return 0
