"""``i24net gateway --config FILE``: run one station's gateway daemon until SIGTERM.

``i24net gateway integrators add|list|renew|revoke --config FILE`` manages who may
use its API (``gateway/auth.py``), in the store under the gateway's
``data_dir``, while the gateway runs: a change is in force from its next
request on.

    i24net gateway integrators add border-control --config gw.toml \\
        --scope send:DB_QUERY --scope inbox:read:DB_RESPONSE --scope status:read \\
        --token-file /etc/i24net/border.token
    i24net gateway integrators add analyst --config gw.toml --scope inbox:read \\
        --cert-cn analyst-ws-1 --no-token
    i24net gateway integrators add ops --config gw.toml --scope operator \\
        --cert-file ops-ws.pem --token-file ops.token
    i24net gateway integrators list --config gw.toml
    i24net gateway integrators renew border-control --config gw.toml --token-file new.token
    i24net gateway integrators revoke border-control --config gw.toml
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from i24net.clock import system_clock
from i24net.errors import ConfigError
from i24net.gateway import Gateway, load_settings
from i24net.gateway.auth import (
    DEFAULT_EXPIRY_S,
    create_integrator,
    describe,
    list_integrators,
    parse_duration,
    renew_integrator,
    revoke_integrator,
)
from i24net.service import run_service


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gateway",
        help="run a bureau gateway (intake API, outbox drain, verified inbox); "
        "manage its integrators",
        description="Runs until SIGTERM/SIGINT; see deploy/gateway/gateway.toml and "
        "docs/gateway.md. With `integrators`, manages who may use its API.",
    )
    p.add_argument("--config", type=Path, help="gateway TOML settings file")
    p.set_defaults(func=_run)
    actions = p.add_subparsers(dest="gateway_command", metavar="{integrators}")
    ip = actions.add_parser(
        "integrators",
        help="add, list or revoke the systems allowed to use the API (no restart needed)",
    )
    ops = ip.add_subparsers(dest="integrators_command", metavar="ACTION", required=True)

    def config(q: argparse.ArgumentParser) -> None:
        # SUPPRESS: a --config given before the sub-command is not overwritten by None
        q.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="gateway TOML")

    add = ops.add_parser("add", help="add an integrator; prints its bearer token once")
    config(add)
    add.add_argument("name", help="a-z, 0-9, '.', '_', '-' (never reused, even once revoked)")
    add.add_argument(
        "--scope",
        action="append",
        default=[],
        required=True,
        help="send, send:<KIND>, inbox:read, inbox:read:<KIND>, status:read, operator (repeatable)",
    )
    exp = add.add_mutually_exclusive_group()
    exp.add_argument(
        "--expires",
        default=f"{DEFAULT_EXPIRY_S // 86_400}d",
        help="lifetime: 90d, 12h, 30m (default %(default)s)",
    )
    exp.add_argument("--no-expiry", action="store_true", help="never expires (think twice)")
    add.add_argument("--cert-cn", help="bind to client certificates with this subject CN")
    cert = add.add_mutually_exclusive_group()
    cert.add_argument(
        "--cert-sha256",
        help="bind to the one client certificate with this SHA-256 fingerprint (of its DER: "
        "`openssl x509 -in CERT.pem -noout -fingerprint -sha256`)",
    )
    cert.add_argument(
        "--cert-file",
        type=Path,
        help="bind to the one client certificate in this PEM file (its SHA-256 is stored)",
    )
    add.add_argument(
        "--no-token", action="store_true", help="no bearer token: the certificate alone"
    )
    add.add_argument("--rate", type=float, help="requests per second (default: [auth])")
    add.add_argument("--burst", type=int, help="requests at once when idle (default: [auth])")
    add.add_argument(
        "--token-file",
        type=Path,
        help="write the token to this file (mode 0600) instead of printing it",
    )
    add.set_defaults(func=_add)

    ls = ops.add_parser("list", help="list integrators (never their tokens)")
    config(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=_list)

    rn = ops.add_parser(
        "renew", help="a new expiry and a new token (the old token stops working at once)"
    )
    config(rn)
    rn.add_argument("name")
    rexp = rn.add_mutually_exclusive_group()
    rexp.add_argument("--expires", default=f"{DEFAULT_EXPIRY_S // 86_400}d")
    rexp.add_argument("--no-expiry", action="store_true")
    rn.add_argument("--token-file", type=Path, help="write the new token here (mode 0600)")
    rn.set_defaults(func=_renew)

    rv = ops.add_parser("revoke", help="revoke an integrator (from its next request on)")
    config(rv)
    rv.add_argument("name")
    rv.set_defaults(func=_revoke)


def _settings_path(args: argparse.Namespace) -> Path:
    path: Path | None = getattr(args, "config", None)
    if path is None:
        raise ConfigError("--config FILE is required (the gateway's TOML settings)")
    return path


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(_settings_path(args))

    async def main(stop: asyncio.Event) -> int:
        await Gateway(settings).run(stop)
        return 0

    return run_service(main)


def _store(args: argparse.Namespace) -> Path:
    return load_settings(_settings_path(args)).integrators_path


def _add(args: argparse.Namespace) -> int:
    path = _store(args)
    token = create_integrator(
        path,
        args.name,
        args.scope,
        expires_s=None if args.no_expiry else parse_duration(args.expires),
        token=not args.no_token,
        cert_cn=args.cert_cn,
        cert_sha256=_fingerprint(args.cert_file) if args.cert_file else args.cert_sha256,
        rate_per_s=args.rate,
        burst=args.burst,
    )
    print(f"integrator {args.name} added", file=sys.stderr)
    return _show_token(token, args.token_file)


def _fingerprint(path: Path) -> str:
    """The SHA-256 of the (first) certificate in a PEM file, as the TLS layer computes it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from i24net.gateway.tls import peer_cert

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--cert-file {path}: not a PEM certificate ({exc})") from exc
    return peer_cert(cert.public_bytes(Encoding.DER)).sha256


def _renew(args: argparse.Namespace) -> int:
    token = renew_integrator(
        _store(args),
        args.name,
        expires_s=None if args.no_expiry else parse_duration(args.expires),
    )
    print(f"integrator {args.name} renewed", file=sys.stderr)
    return _show_token(token, args.token_file)


def _show_token(token: str | None, token_file: Path | None) -> int:
    if token is None:
        return 0
    if token_file is not None:
        _write_private(token_file, token + "\n")
        print(f"its token is in {token_file} (mode 0600)", file=sys.stderr)
    else:
        print("its token (shown once, keep it secret):", file=sys.stderr)
        print(token)
    return 0


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _list(args: argparse.Namespace) -> int:
    now = system_clock()
    for i in list_integrators(_store(args)):
        if args.json:
            print(json.dumps(describe(i, now)))
            continue
        creds = ["token"] if i.token_id else []
        if i.cert_cn:
            creds.append(f"cert CN={i.cert_cn}")
        if i.cert_sha256:
            creds.append(f"cert sha256={i.cert_sha256[:16]}...")
        print(
            f"{i.name:<24} {i.state(now):<8} expires {_when(i.expires_ms):<16} "
            f"{' + '.join(creds):<28} {' '.join(i.scopes.encode())}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if revoke_integrator(_store(args), args.name):
        print(f"integrator {args.name} revoked")
    else:
        print(f"integrator {args.name} was already revoked")
    return 0
