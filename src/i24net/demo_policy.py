"""The demo's Article 3 steps: a predominance case held with its reasons, and a policy reload.

``i24net demo`` (``demo.py``) calls :func:`run` once its router and gateways
are up, with the router started on a *copy* of the shipped policy (the copy
is what an operator edits)::

    live = base / "policy.toml"
    shutil.copy(POLICY, live)            # before the router starts, policy=live
    ...
    failures += demo_policy.run(clients["FR"], router_url, live, say=say)

What it shows, as an operator and a GS reviewer would see it:

1. FR asks for the arrest of a former minister for embezzlement after a change
   of government: an ordinary charge, a person of political status, a
   political context. The router holds it (never delivered unreviewed, never
   refused by a machine); the reviewer's view names the rule, the reasons and
   the hits (concept, language, the words of the text that matched).
2. The operator's change: a police message about an ombudsman accused of
   fraud is delivered (the vocabulary has no such status). The operator
   writes a candidate policy that adds it, checks it (``i24net policy check``:
   the digest), measures it on the corpus (``i24net policy eval --policy``:
   exit 0), and puts it in place. The router reloads it without a restart
   (``i24net_router_policy_info`` shows the new digest) and the same message
   is now held, by the new term.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from i24net.client import GatewayClient
from i24net.router.testing import police_message, red_notice

PREDOMINANCE_FACTS = (
    "Embezzlement of public funds: EUR 12 million of the national water programme diverted "
    "to private accounts. The subject, a former Minister of Finance, left the country after "
    "the change of government that followed the 2024 elections."
)
OMBUDSMAN_TEXT = (
    "The national ombudsman is accused of fraud in the award of office contracts; "
    "please send any information on his accounts abroad."
)
ADDED_INDICATOR = """
# Added by the operator (demo): an office the vocabulary lacked.
[[indicators]]
id = "status.ombudsman"
category = "status"
description = "The national ombudsman (an independent office holder)."
terms.en = ["ombudsman"]
terms.fr = ["médiateur ~2 république", "défenseur ~2 droits"]
terms.es = ["defensor ~2 pueblo"]
terms.ar = ["امين المظالم", "ديوان المظالم"]
"""
_INFO = re.compile(r'i24net_router_policy_info\{digest="([0-9a-f]+)"\} 1\.0')


def _poll(check: Callable[[], Any], within_s: float, what: str) -> Any:
    """``check()`` until it returns something true, or a ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + within_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _status(client: GatewayClient, message_id: str, within_s: float = 30) -> str:
    def settled() -> str | None:
        s: str = client.status(message_id, wait=2)["status"]
        return None if s in ("ACCEPTED", "SENT") else s

    return str(_poll(settled, within_s, f"the router's decision on {message_id}"))


def policy_digest(router_url: str) -> str | None:
    """The digest the router reports in ``i24net_router_policy_info``."""
    m = _INFO.search(httpx.get(f"{router_url}/metrics", timeout=5).text)
    return m.group(1) if m else None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "i24net", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def run(
    fr: GatewayClient,
    router_url: str,
    live_policy: Path,
    *,
    say: Callable[[str], None] = print,
    to: str = "JP",
) -> list[str]:
    """Both steps (module docstring); the problems found (empty: all went as shown)."""
    failures: list[str] = []
    review = httpx.Client(base_url=router_url, headers={"X-I24-Reviewer": "gs-reviewer-1"})
    with review:
        say("  a predominance case: FR asks for the arrest of a former minister ...")
        payload = red_notice(
            PREDOMINANCE_FACTS,
            category="CORRUPTION",
            family_name="Durand",
            forenames="Marc",
            nationalities=["FR"],
        )
        mid = fr.send(
            "RED_NOTICE_REQUEST", to=[to], payload=payload, offence_categories=["CORRUPTION"]
        )
        status = _status(fr, mid)
        say(f"    FR status: {status} (held before any delivery, never refused by a machine)")
        if status != "HELD_FOR_REVIEW":
            failures.append(f"the predominance case was {status}, not held")
        else:
            screen = review.get(f"/review/held/{mid}").json().get("screen", {})
            say(f"    rule {screen.get('rule')}; reasons {screen.get('reasons')}")
            for h in screen.get("hits", []):
                say(f"      {h['category']:<16} {h['indicator']:<32} [{h['lang']}] {h['words']}")
            say(f"    also matched: {screen.get('also_matched')}")

        say("  a policy change, as an operator makes it, without a restart ...")
        before = policy_digest(router_url)
        first = fr.send("POLICE_MESSAGE", to=[to], payload=police_message(OMBUDSMAN_TEXT))
        say(f"    with policy {before}: the ombudsman message is {_status(fr, first)}")
        candidate = live_policy.with_name("candidate.toml")
        candidate.write_text(
            live_policy.read_text(encoding="utf-8") + ADDED_INDICATOR, encoding="utf-8"
        )
        check = _cli("policy", "check", str(candidate))
        say(f"    $ i24net policy check candidate.toml\n      {check.stdout.strip()}")
        ev = _cli("policy", "eval", "--policy", str(candidate))
        summary = [ln for ln in ev.stdout.splitlines() if ln.startswith(("==", "recall", "false"))]
        say(f"    $ i24net policy eval --policy candidate.toml  (exit {ev.returncode})")
        for ln in summary:
            say(f"      {ln}")
        if check.returncode or ev.returncode:
            failures.append("the candidate policy did not pass check and eval")
            return failures
        shutil.copy(candidate, live_policy)  # the router notices the change (or: kill -HUP)
        after = _poll(
            lambda: (d := policy_digest(router_url)) != before and d, 60, "the policy reload"
        )
        say(f"    the router reloaded it: i24net_router_policy_info digest {before} -> {after}")
        second = fr.send("POLICE_MESSAGE", to=[to], payload=police_message(OMBUDSMAN_TEXT))
        status = _status(fr, second)
        say(f"    the same message now: {status}")
        if status != "HELD_FOR_REVIEW":
            failures.append(f"after the reload the ombudsman message was {status}, not held")
        else:
            screen = review.get(f"/review/held/{second}").json().get("screen", {})
            say(f"    rule {screen.get('rule')}; reasons {screen.get('reasons')}")
    return failures
