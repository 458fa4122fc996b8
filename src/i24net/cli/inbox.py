"""``i24net inbox``: list, fetch, follow and acknowledge a gateway's stored messages.

i24net inbox                 # unacknowledged messages
i24net inbox --follow        # long-poll, print each new message as one JSON line
i24net inbox --show ID       # one message with its payload
i24net inbox --ack ID ...

Credentials as for ``i24net send`` (``--token-file`` or ``$I24NET_TOKEN_FILE``,
``--cert``/``--key``, ``--cacert``).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from i24net.cli.send import DEFAULT_URL, add_credentials, client


def register(sub: Any) -> None:
    p = sub.add_parser("inbox", help="read a gateway's verified inbox (its HTTP API)")
    p.add_argument(
        "--url",
        default=os.environ.get("I24NET_GATEWAY", DEFAULT_URL),
        help="gateway API (default: $I24NET_GATEWAY or %(default)s)",
    )
    add_credentials(p)
    p.add_argument("--all", action="store_true", help="acknowledged messages too")
    p.add_argument("--after", type=int, default=0, help="cursor to start after")
    p.add_argument("--follow", action="store_true", help="wait for new messages (Ctrl-C ends)")
    p.add_argument("--show", metavar="ID", help="print one message with its payload")
    p.add_argument("--ack", nargs="+", metavar="ID", help="acknowledge messages")
    p.set_defaults(func=_inbox)


def _inbox(args: argparse.Namespace) -> int:
    with client(args) as gw:
        if args.show:
            print(json.dumps(gw.fetch(args.show), indent=2))
            return 0
        if args.ack:
            print(f"acknowledged {gw.ack(args.ack)}")
            return 0
        cursor = args.after
        while True:
            res = gw.inbox(after=cursor, unacked=not args.all, wait=25 if args.follow else 0)
            for m in res["messages"]:
                if args.follow:
                    print(json.dumps(m), flush=True)
                else:
                    print(
                        f"{m['cursor']:>8}  {m['message_id']}  {m['sender']:<4} "
                        f"{m['precedence']:<10} {m['kind']}"
                    )
            cursor = res["cursor"]
            if not args.follow and not res["messages"]:
                return 0
            if not args.follow and len(res["messages"]) < 100:
                return 0
