"""``i24net send``: submit one message to a gateway's API (a one-line try for integrators).

    i24net send --to JP --kind POLICE_MESSAGE \\
        --json '{"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}'
    i24net send --to JP --avro message.avro --precedence FLASH

Credentials (docs/gateway.md, "Setting up a bureau's integrators"):
``--token-file`` (default ``$I24NET_TOKEN_FILE``), and for mutual TLS
``--cert``/``--key``; ``--cacert`` is the CA of the gateway's certificate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from i24net.client import TOKEN_FILE_ENV, GatewayClient

DEFAULT_URL = "http://127.0.0.1:8024"


def add_credentials(p: argparse.ArgumentParser) -> None:
    """``--token-file``, ``--cert``, ``--key``, ``--cacert`` (shared with ``i24net inbox``)."""
    env = os.environ.get(TOKEN_FILE_ENV)
    p.add_argument(
        "--token-file",
        type=Path,
        default=Path(env) if env else None,
        help=f"file holding the integrator's bearer token, mode 0600 (default: ${TOKEN_FILE_ENV})",
    )
    p.add_argument("--cert", type=Path, help="client certificate (PEM) for mutual TLS")
    p.add_argument("--key", type=Path, help="its private key (PEM), if not in --cert")
    p.add_argument("--cacert", type=Path, help="CA bundle the gateway's certificate chains to")


def client(args: argparse.Namespace) -> GatewayClient:
    return GatewayClient(
        args.url,
        token_file=args.token_file,
        cert_file=args.cert,
        key_file=args.key,
        ca_file=args.cacert,
    )


def register(sub: Any) -> None:
    p = sub.add_parser("send", help="submit a message to a gateway (its HTTP API)")
    p.add_argument(
        "--url",
        default=os.environ.get("I24NET_GATEWAY", DEFAULT_URL),
        help="gateway API (default: $I24NET_GATEWAY or %(default)s)",
    )
    add_credentials(p)
    p.add_argument("--to", action="append", default=[], help="recipient station (repeatable)")
    p.add_argument("--all", action="store_true", help="every station")
    p.add_argument("--region", help="a regional group, e.g. EUROPE")
    p.add_argument("--kind", help="MessageKind (implied by --avro)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--json", help="payload as JSON text, or @FILE")
    src.add_argument("--avro", type=Path, help="file holding Avro single-object encoding")
    p.add_argument("--precedence", default="ROUTINE")
    p.add_argument("--language", default="en")
    p.add_argument("--expires-in", type=int, help="lifetime in seconds")
    p.add_argument("--handling", action="append", default=[], help="CODE or OTHER:text")
    p.add_argument("--idempotency-key")
    p.add_argument(
        "--wait",
        type=float,
        default=0,
        help="then wait up to this many seconds for DELIVERED/RECEIPTED",
    )
    p.set_defaults(func=_send)


def _send(args: argparse.Namespace) -> int:
    payload = None
    avro = None
    if args.json is not None:
        text = Path(args.json[1:]).read_text("utf-8") if args.json.startswith("@") else args.json
        payload = json.loads(text)
    else:
        avro = args.avro.read_bytes()
    handling = []
    for h in args.handling:
        code, _, t = h.partition(":")
        handling.append({"code": code, "text": t or None})
    options: dict[str, Any] = {
        "precedence": args.precedence,
        "language": args.language,
        "to_all": args.all,
        "handling": handling,
    }
    if args.region:
        options["region"] = args.region
    if args.expires_in:
        options["expires_in_s"] = args.expires_in
    with client(args) as gw:
        mid = gw.send(
            args.kind,
            to=args.to,
            payload=payload,
            payload_avro=avro,
            idempotency_key=args.idempotency_key,
            **options,
        )
        print(mid)
        status = "ACCEPTED"
        remaining = args.wait
        while remaining > 0 and status not in ("RECEIPTED", "REFUSED", "REJECTED", "EXPIRED"):
            st = gw.status(mid, wait=min(remaining, 30), since=status)
            if st["status"] != status:
                status = st["status"]
                print(
                    f"  {status}" + (f" ({st['reason']})" if st.get("reason") else ""),
                    file=sys.stderr,
                )
            remaining -= 30
    return 0
