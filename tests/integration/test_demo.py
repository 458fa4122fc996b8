"""`make demo` is the README's first command: it must work and must say what it shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from i24net.kafka.broker import _pid_is_kafka

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_demo_runs_the_whole_network_and_stops_everything(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "i24net", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "PROBLEM" not in out
    assert "router decision SCREEN_PASSED" in out  # the Red Notice passed the screen
    assert "signed receipts from BR, JP" in out
    assert "BR status: HELD_FOR_REVIEW" in out  # the political request was held
    assert "BR status: REJECTED; reason: POLITICAL" in out
    assert "gs-reviewer-1 confirming their own proposal: HTTP 403" in out  # four-eyes
    assert "gs-reviewer-2 confirms the refusal: HTTP 200" in out
    assert "FR status: HELD_FOR_REVIEW (held before any delivery" in out  # predominance
    assert "the router reloaded it: i24net_router_policy_info digest" in out
    assert "the same message now: HELD_FOR_REVIEW" in out  # the reloaded policy decided
    assert "OK: chain intact" in out
    # Nothing it started is left: the state file of its broker is gone with the JVM.
    assert not (tmp_path / "demo" / "kafka" / "broker.json").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    pids = [int(p) for p in leftovers.stdout.split()]
    assert not [p for p in pids if _pid_is_kafka(p)]
