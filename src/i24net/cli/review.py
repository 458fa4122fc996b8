"""``i24net review``: list, show, approve, reject, confirm and withdraw held messages through
the router's API; ``i24net review reviewers add`` manages the console's reviewers file.

With four-eyes on (``[review] four_eyes_refusals``, the default), ``reject`` only
proposes: the answer names the proposal, and another reviewer runs
``confirm ID --proposal P`` for it to take effect."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from i24net.errors import ConfigError, ServiceError
from i24net.grounds import GROUNDS


def register(sub: Any) -> None:
    p = sub.add_parser("review", help="review messages held by the neutrality screen")
    p.add_argument("--url", default="http://127.0.0.1:8470", help="router HTTP address")
    p.add_argument(
        "--token-file",
        type=Path,
        help="file holding the reviewer's bearer token (or env I24NET_REVIEW_TOKEN)",
    )
    p.add_argument("--as", dest="reviewer", help="identity for X-I24-Reviewer (proxy mode)")
    sp = p.add_subparsers(dest="review_command", metavar="ACTION", required=True)
    sp.add_parser("list", help="held messages, oldest first").set_defaults(func=_list)
    s = sp.add_parser("show", help="one held message, decrypted, with the screen's reasons")
    s.add_argument("message_id")
    s.set_defaults(func=_show)
    a = sp.add_parser("approve", help="deliver (attestation names the review)")
    a.add_argument("message_id")
    a.add_argument("--reason", default="", help="why (recorded in the audit)")
    a.set_defaults(func=_approve)
    r = sp.add_parser("reject", help="refuse; the sender gets the grounds and reason")
    r.add_argument("message_id")
    r.add_argument("--grounds", choices=GROUNDS, required=True)
    r.add_argument("--reason", required=True, help="explanation sent to the sender")
    r.set_defaults(func=_reject)
    c = sp.add_parser("confirm", help="four-eyes: confirm another reviewer's proposal")
    c.add_argument("message_id")
    c.add_argument("--proposal", required=True, help="the proposal id (see list/show)")
    c.set_defaults(func=_confirm)
    w = sp.add_parser("withdraw", help="drop a pending four-eyes proposal")
    w.add_argument("message_id")
    w.add_argument("--proposal", required=True)
    w.set_defaults(func=_withdraw)
    rv = sp.add_parser("reviewers", help="the console's reviewers file (argon2 hashes, 0600)")
    rsp = rv.add_subparsers(dest="reviewers_command", metavar="ACTION", required=True)
    add = rsp.add_parser("add", help="add or replace a reviewer (restart the router after)")
    add.add_argument("name", help="the reviewer's identity, as audited (e.g. reviewer.alice)")
    add.add_argument("--file", type=Path, required=True, help="[review] reviewers_file")
    add.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file (else one line piped on standard input, "
        "or it is asked for, twice, in a terminal)",
    )
    add.add_argument("--language", choices=("ar", "en", "es", "fr"), help="console language")
    add.set_defaults(func=_reviewers_add)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    import httpx

    headers: dict[str, str] = {}
    token = os.environ.get("I24NET_REVIEW_TOKEN")
    if args.token_file:
        try:
            token = args.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.token_file}: {exc.strerror}") from exc
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if args.reviewer:
        headers["X-I24-Reviewer"] = args.reviewer
    try:
        r = httpx.request(
            method, args.url.rstrip("/") + path, json=body, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        raise ServiceError(f"router at {args.url} unreachable: {exc}") from exc
    if r.status_code >= 400:
        raise ServiceError(f"{method} {path}: {r.status_code} {r.text}")
    return r.json()


def _list(args: argparse.Namespace) -> int:
    items = _call(args, "GET", "/review/held")
    for i in items:
        late = "OVERDUE " if i.get("overdue") else ""
        print(
            f"{i['message_id']}  {i['sender']:>4}  {i['kind']:<28} {late}{i['rule']}: {i['reason']}"
        )
        p = i.get("proposal")
        if p:
            print(
                f"    proposed by {p['reviewer']}: {p['verdict']} {p['grounds'] or ''}"
                f" (confirm with --proposal {p['proposal_id']})"
            )
    print(f"{len(items)} held")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(
        json.dumps(
            _call(args, "GET", f"/review/held/{args.message_id}"), indent=2, ensure_ascii=False
        )
    )
    return 0


def _approve(args: argparse.Namespace) -> int:
    out = _call(
        args, "POST", f"/review/held/{args.message_id}/approve", {"explanation": args.reason}
    )
    print(json.dumps(out))
    return 0


def _reject(args: argparse.Namespace) -> int:
    out = _call(
        args,
        "POST",
        f"/review/held/{args.message_id}/reject",
        {"grounds": args.grounds, "explanation": args.reason},
    )
    print(json.dumps(out))
    return 0


def _confirm(args: argparse.Namespace) -> int:
    out = _call(
        args,
        "POST",
        f"/review/held/{args.message_id}/confirm",
        {"proposal_id": args.proposal},
    )
    print(json.dumps(out))
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    out = _call(
        args,
        "POST",
        f"/review/held/{args.message_id}/withdraw",
        {"proposal_id": args.proposal},
    )
    print(json.dumps(out))
    return 0


def _reviewers_add(args: argparse.Namespace) -> int:
    from i24net.router.console.auth import add_reviewer

    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read {args.password_file}: {exc.strerror}") from exc
    elif not sys.stdin.isatty():  # piped (a script, a secrets manager): one line, once
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ConfigError(
                "no password on standard input: pipe one line, give --password-file FILE, "
                "or run this in a terminal to be asked for it"
            )
    else:
        import getpass

        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    add_reviewer(args.file, args.name, password, args.language)
    print(f"{args.file}: reviewer {args.name} added (argon2id hash, mode 0600)")
    return 0
