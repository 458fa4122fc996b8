"""The shipped Prometheus configuration and alert rules, checked and unit-tested by promtool.

promtool comes from Debian's ``prometheus`` package, which ``make deps``
installs (``make test-unit`` depends on it). A missing promtool is a
failure, never a skip: a suite that skips its only check of the alert rules
passes on a developer's machine while proving nothing about them.

Both files are read as YAML (never by regex), and the promtool cases are
checked for what promtool itself cannot see: a case naming an alert that
does not exist passes vacuously ("no alert fired"), and an alert without a
firing case is never shown to fire. Each alert is then broken in a copy of
the rules (its ``expr`` made unable to fire) to show that the promtool run
notices: a test file whose cases cannot fail would pass that too.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"
RULE_TESTS = DEPLOY / "alerts_test.yml"
CONFIG = DEPLOY / "prometheus.yml"
RUNBOOKS = DEPLOY.parents[1] / "docs" / "observability.md"

#: Every alert docs/observability.md promises an operator (one runbook section each).
REQUIRED_ALERTS = {
    "I24netUrgentMessageUndelivered",
    "I24netRoutineMessageUndelivered",
    "I24netOutboxBackingUp",
    "I24netVerificationFailuresSpiking",
    "I24netHoldAwaitingReview",
    "I24netReviewOverdue",
    "I24netConsumerLagGrowing",
    "I24netServiceDown",
    "I24netAuditChainBroken",
    "I24netAuditChainShrank",
    "I24netRouterInternalError",
    "I24netDirectoryRollback",
    "I24netDirectoryStale",
    "I24netEncryptionKeyRotationDue",
}
NEVER_FIRES = "vector(1) < 0"


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: `make deps` installs it (Debian package 'prometheus')")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> dict[str, dict[str, Any]]:
    """Every alerting rule of alerts.yml, by name (a name used twice is an error)."""
    rules: dict[str, dict[str, Any]] = {}
    for group in load(RULES)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"] not in rules, f"alert {rule['alert']} defined twice"
                rules[rule["alert"]] = rule
    return rules


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
    rules = alert_rules()
    assert set(rules) == REQUIRED_ALERTS, (
        f"missing: {sorted(REQUIRED_ALERTS - set(rules))}; "
        f"not in REQUIRED_ALERTS (add it, and a runbook): {sorted(set(rules) - REQUIRED_ALERTS)}"
    )
    headings = {
        line.lstrip("#").strip().strip("`")
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for name, rule in rules.items():
        assert rule["annotations"]["runbook_url"] == f"docs/observability.md#{name.lower()}", name
        assert name in headings, f"no runbook section '### {name}' in {RUNBOOKS.name}"
        assert rule["labels"]["severity"] in ("page", "ticket"), name


def test_every_alert_fires_and_stays_quiet_in_a_unit_test() -> None:
    """Each alert has a promtool case expecting it and one expecting silence, and every case
    names an alert that exists (promtool passes a case for an unknown alert: nothing fired)."""
    spec = load(RULE_TESTS)
    assert spec["rule_files"] == [RULES.name]
    fires: dict[str, int] = defaultdict(int)
    quiet: dict[str, int] = defaultdict(int)
    for i, test in enumerate(spec["tests"]):
        assert test.get("input_series"), f"test {i} has no input series"
        for case in test.get("alert_rule_test", []):
            expected = case.get("exp_alerts") or []
            (fires if expected else quiet)[case["alertname"]] += 1
    alerts = set(alert_rules())
    unknown = (set(fires) | set(quiet)) - alerts
    assert not unknown, f"cases for alerts that do not exist (they pass vacuously): {unknown}"
    assert alerts - set(fires) == set(), f"never shown to fire: {sorted(alerts - set(fires))}"
    assert alerts - set(quiet) == set(), f"never shown to stay quiet: {sorted(alerts - set(quiet))}"


def copies(tmp_path: Path, *, break_alerts: bool) -> Path:
    """alerts.yml and alerts_test.yml re-written through YAML under ``tmp_path``, every
    alert's expr replaced by one that never fires if ``break_alerts``; returns the test file."""
    rules = load(RULES)
    if break_alerts:
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["expr"] = NEVER_FIRES
    copy = tmp_path / "alerts.yml"
    copy.write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    spec = load(RULE_TESTS)
    spec["rule_files"] = [str(copy)]
    cases = tmp_path / "alerts_test.yml"
    cases.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return cases


def test_the_rewritten_copies_pass_unbroken(tmp_path: Path) -> None:
    """The control for the test below: the YAML round trip alone breaks nothing."""
    result = run("test", "rules", str(copies(tmp_path, break_alerts=False)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_cases_fail_for_every_alert_that_cannot_fire(tmp_path: Path) -> None:
    """The promtool run is not a tautology: with every alert's expr unable to fire,
    ``promtool test rules`` fails and names each alert among its failed cases."""
    result = run("test", "rules", str(copies(tmp_path, break_alerts=True)))
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    unnoticed = sorted(a for a in alert_rules() if f"alertname: {a}," not in out)
    assert not unnoticed, f"promtool did not notice these alerts could not fire: {unnoticed}"
