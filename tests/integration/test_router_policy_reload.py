"""The screening policy changes without a restart, and every decision names its policy.

Issue 13, item 4 (in part): the router reloads its policy file when it changes
(and on SIGHUP, ``router/server.py``), records the policy's digest in every
screened decision's audit entry and exports it as ``i24net_router_policy_info``.
A file that does not load leaves the policy in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from i24net.audit import SCHEMA as AUDIT_SCHEMA
from i24net.router.testing import hints

pytestmark = pytest.mark.kafka
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


async def until(check: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def audited_policy(w: Any, message_id: str, want: int) -> str | None:
    """The ``policy`` recorded in the audit entry of ``message_id``."""
    for r in await w.read(w.topics.audit, want):
        _, rec = w.net.store.decode_single(r.value, expected=AUDIT_SCHEMA)
        if rec["message_id"] == message_id:
            return json.loads(rec["reason"]).get("policy")
    raise AssertionError(f"no audit entry for {message_id}")


async def test_an_edited_policy_applies_without_restart(router_world: Any, tmp_path: Path) -> None:
    w = router_world
    policy = tmp_path / "article3.toml"
    shutil.copy(SHIPPED, policy)
    r = await w.router(policy=policy)
    reg = r.registry

    def sample(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, labels) or 0.0

    first = digest(policy)
    assert sample("i24net_router_policy_info", digest=first) == 1
    a_h, a = w.message("theft of a car")
    await w.send(a, list(hints(a_h)))
    assert w.msgids(await w.read(w.topics.inbox("JP"), 1)) == [a_h.message_id]
    assert await audited_policy(w, a_h.message_id, 1) == first

    # an operator holds everything that no rule decides
    text = policy.read_text(encoding="utf-8")
    assert '\ndefault = "deliver"' in text
    policy.write_text(text.replace('\ndefault = "deliver"', '\ndefault = "hold"'), "utf-8")
    second = digest(policy)
    await until(lambda: sample("i24net_router_policy_info", digest=second) == 1, 30, "reload")
    assert sample("i24net_router_policy_info", digest=first) == 0
    assert sample("i24net_router_policy_reloads_total", outcome="reloaded") == 1
    b_h, b = w.message("theft of a bicycle")
    await w.send(b, list(hints(b_h)))
    assert w.msgids(await w.read(w.topics.quarantine, 1)) == [b_h.message_id]
    assert await audited_policy(w, b_h.message_id, 2) == second

    # a broken file is refused: the policy in force stays
    policy.write_text("this is not a policy", "utf-8")
    await until(
        lambda: sample("i24net_router_policy_reloads_total", outcome="failed") == 1, 30, "refusal"
    )
    assert sample("i24net_router_policy_info", digest=second) == 1
    c_h, c = w.message("theft of a boat")
    await w.send(c, list(hints(c_h)))
    held = w.msgids(await w.read(w.topics.quarantine, 2))
    assert sorted(held) == sorted([b_h.message_id, c_h.message_id])
