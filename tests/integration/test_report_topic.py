"""``i24net report transparency`` against a real broker: a running router's audit topic.

FR sends three police messages through an in-process router; the command reads
``i24.audit`` from the broker, verifies it and counts the three decisions. A
duplicated audit record appended to the topic then makes it refuse (exit 2,
no file). ``router_world`` is in conftest.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from i24net.cli import main

pytestmark = pytest.mark.kafka


async def test_report_from_the_audit_topic(router_world: Any, tmp_path: Path) -> None:
    w = router_world
    await w.router("a")
    sent: list[str] = []
    for i in range(3):
        header, data = w.message(f"stolen vehicle report {i}")
        sent.append(header.message_id)
        await w.send(data, [])
    # Wait for the router's three DELIVERED audit records (and whatever else it wrote).
    audit = await w.read(w.topics.audit, 3)
    today = dt.datetime.now(dt.UTC).date()
    args = [
        "report",
        "transparency",
        "--from",
        (today - dt.timedelta(days=1)).isoformat(),
        "--to",
        (today + dt.timedelta(days=1)).isoformat(),
        "--bootstrap",
        w.conn.bootstrap,
        "--topic",
        w.topics.audit,
    ]
    out = tmp_path / "report.json"
    rc = await asyncio.to_thread(main, [*args, "--format", "json", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["audit"]["records"] == len(audit)
    # Three decisions (delivered or held: that is the screen's business, not this test's),
    # all of kind POLICE_MESSAGE from a European bureau.
    assert report["totals"]["total"] == 3
    (kind,) = report["tables"]["by_kind"]["rows"]
    assert (kind["label"], kind["total"]) == ("POLICE_MESSAGE", 3)
    (region,) = report["tables"]["by_region"]["rows"]
    assert (region["label"], region["total"]) == ("EUROPE", 3)
    text = out.read_text()
    for mid in sent:
        assert mid not in text

    # The same record appended twice: the chain no longer verifies.
    first = audit[0]
    await w.producer.send_and_wait(
        w.topics.audit, key=first.key, value=first.value, headers=list(first.headers)
    )
    bad = tmp_path / "report.html"
    rc = await asyncio.to_thread(main, [*args, "--out", str(bad)])
    assert rc == 2
    assert not bad.exists()
