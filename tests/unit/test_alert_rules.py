"""The shipped Prometheus configuration and alert rules, checked and unit-tested by promtool.

promtool comes from Debian's ``prometheus`` package (``make test`` installs
it). Without it these tests skip, except under CI (``CI`` set), where a
missing promtool is a failure: the rules must never go untested there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from i24net.metrics_catalog import rule_expressions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"
RULE_TESTS = DEPLOY / "alerts_test.yml"
CONFIG = DEPLOY / "prometheus.yml"

REQUIRED_ALERTS = {
    "I24netUrgentMessageUndelivered",
    "I24netRoutineMessageUndelivered",
    "I24netOutboxBackingUp",
    "I24netVerificationFailuresSpiking",
    "I24netHoldAwaitingReview",
    "I24netConsumerLagGrowing",
    "I24netServiceDown",
    "I24netAuditChainBroken",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing under CI: apt-get install prometheus (make test)")
        pytest.skip("promtool not installed (Debian package 'prometheus'; make test installs it)")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_are_valid() -> None:
    result = run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = run("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_is_valid() -> None:
    result = run("check", "config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_exists_and_has_a_runbook() -> None:
    text = RULES.read_text(encoding="utf-8")
    alerts = set(re.findall(r"^\s*-\s*alert:\s*(\S+)", text, re.MULTILINE))
    assert alerts >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - alerts)}"
    runbooks = (DEPLOY.parents[1] / "docs" / "observability.md").read_text(encoding="utf-8")
    for alert in alerts:
        assert f"runbook_url: docs/observability.md#{alert.lower()}" in text, alert
        assert re.search(rf"^#+ .*`?{alert}`?", runbooks, re.MULTILINE), f"no runbook for {alert}"


def test_every_alert_fires_and_stays_quiet_in_a_unit_test() -> None:
    """Each alert has a promtool case expecting it and one expecting silence."""
    text = RULE_TESTS.read_text(encoding="utf-8")
    cases = re.findall(r"alertname:\s*(\S+)\s*\n\s*exp_alerts:\s*(\[\])?", text, re.MULTILINE)
    fires = {name for name, empty in cases if not empty}
    quiet = {name for name, empty in cases if empty}
    alerts = {e.where.split("alert ", 1)[1] for e in rule_expressions(RULES) if "alert " in e.where}
    assert alerts - fires == set(), f"never shown to fire: {sorted(alerts - fires)}"
    assert alerts - quiet == set(), f"never shown to stay quiet: {sorted(alerts - quiet)}"
