"""The shipped Grafana dashboards and alert rules, against the services' metric definitions.

- every dashboard file is valid JSON, well formed for Grafana, and matches
  its source (deploy/grafana/generate.py);
- every PromQL expression (panels, template variables, annotations, alert
  rules) parses, checked by promtool (installed by ``make deps``; missing, it
  is a failure, not a skip);
- every metric an expression names is defined by the gateway or the router
  (their ``*Metrics.create`` on a fresh registry), so a dashboard cannot
  name a metric that does not exist.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from i24net.gateway.metrics import GatewayMetrics
from i24net.metrics_catalog import (
    CORE_GATEWAY_SERIES,
    CORE_ROUTER_SERIES,
    PROMETHEUS_SERIES,
    PROPOSED_SERIES,
    Expression,
    dashboard_expressions,
    exposed_names,
    metric_names,
    rule_expressions,
    substitute_variables,
)
from i24net.router.metrics import RouterMetrics
from i24net.service import build_info

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
VARIABLES = {"station": "FR", "datasource": "prometheus"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "bargauge", "gauge", "text"}


def defined_names() -> frozenset[str]:
    """Every sample name a gateway or a router can expose."""
    from i24net.gateway.intake import EnvelopeVersionMetrics
    from i24net.gateway.keyring import KeyringMetrics
    from i24net.router.keyring import RouterKeyringMetrics
    from i24net.router.pipeline import VersionMetrics

    gateway, router = CollectorRegistry(), CollectorRegistry()
    GatewayMetrics.create(gateway)
    build_info(gateway)
    # defined beside the code that counts them, on the same registry as GatewayMetrics
    EnvelopeVersionMetrics.create(gateway)
    KeyringMetrics.create(gateway)
    RouterMetrics.create(router)
    build_info(router)
    RouterKeyringMetrics.create(router)
    VersionMetrics.create(router)
    return exposed_names(gateway) | exposed_names(router)


def all_expressions() -> list[Expression]:
    found = [e for path in DASHBOARDS for e in dashboard_expressions(path)]
    return found + rule_expressions(RULES)


def test_the_four_dashboards_are_shipped() -> None:
    names = {p.name for p in DASHBOARDS}
    assert names == {
        "i24net-overview.json",
        "i24net-gateway.json",
        "i24net-router.json",
        "i24net-security.json",
    }


def test_dashboards_match_their_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_well_formed(path: Path) -> None:
    board = json.loads(path.read_text(encoding="utf-8"))
    assert board["uid"] == path.stem and len(board["uid"]) <= 40
    assert board["title"].startswith("i24net / ")
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        title = panel["title"]
        assert panel["type"] in PANEL_TYPES, title
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, title
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {title!r} overlaps another"
                cells.add((x, y))
        if panel["type"] == "row":
            continue
        assert panel.get("description"), f"panel {title!r} needs a description"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"panel {title!r} has no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip(), title
            for var in ("$station", "${station}"):
                if var in target["expr"]:
                    assert "station" in variables, f"{title!r} uses $station, not defined"


def test_gateway_dashboard_has_a_station_variable() -> None:
    board = json.loads((GRAFANA / "dashboards" / "i24net-gateway.json").read_text())
    (var,) = [v for v in board["templating"]["list"] if v["name"] == "station"]
    assert var["type"] == "query" and var["multi"] and var["includeAll"]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", ())]
    assert all('station=~"$station"' in e for e in exprs), "every panel filters on $station"


def test_every_expression_parses(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:  # a failure, never a skip: `make deps` installs it
        pytest.fail("promtool is missing: `make deps` installs it (Debian package 'prometheus')")
    exprs = all_expressions()
    assert len(exprs) > 50
    groups = [
        {
            "name": f"{i}: {e.where}",
            "rules": [
                {"record": f"check:expr_{i}", "expr": substitute_variables(e.expr, VARIABLES)}
            ],
        }
        for i, e in enumerate(exprs)
    ]
    # JSON is YAML: one throwaway rules file holding every expression, one group each
    tmp = tmp_path / "every-expression.rules.json"
    tmp.write_text(json.dumps({"groups": groups}), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(tmp)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_every_metric_used_is_defined() -> None:
    defined = defined_names() | PROMETHEUS_SERIES
    missing: dict[str, list[str]] = {}
    for e in all_expressions():
        for name in metric_names(e.expr):
            if name not in defined and name not in PROPOSED_SERIES:
                missing.setdefault(name, []).append(e.where)
    assert not missing, f"metrics used but defined by no service: {missing}"


def test_core_series_are_defined() -> None:
    defined = defined_names()
    assert set(CORE_GATEWAY_SERIES) | set(CORE_ROUTER_SERIES) <= defined


def test_gateway_delivery_series_are_defined() -> None:
    """The undelivered-age gauge the delivery alerts read is exported by every gateway."""
    gateway = CollectorRegistry()
    GatewayMetrics.create(gateway)
    names = exposed_names(gateway)
    assert "i24net_gateway_undelivered_oldest_age_seconds" in names
    assert "i24net_gateway_directory_serial" in names
    assert not {n for n in PROPOSED_SERIES if n.startswith("i24net_gateway_")}
    uses = {n for e in rule_expressions(RULES) for n in metric_names(e.expr)}
    assert "i24net_gateway_undelivered_oldest_age_seconds" in uses


def test_proposed_series_are_defined() -> None:
    """Every series the rules use is defined now; the audit chain gauge by the router."""
    defined = defined_names()
    assert not PROPOSED_SERIES
    assert "i24net_audit_chain_problems" in defined
    assert "i24net_router_directory_serial" in defined


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, station) (rate(a_bucket{x="y{z}"}[5m]))) '
        "/ on(job) group_left(version) b offset 1h > bool 1e3 and time() - c:rec > 0"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c:rec"}
    uses = Counter(n for e in all_expressions() for n in metric_names(e.expr))
    assert uses["i24net_gateway_intake_total"] > 0


def test_every_defined_metric_is_documented() -> None:
    doc = (ROOT / "docs" / "observability.md").read_text(encoding="utf-8")
    gateway, router = CollectorRegistry(), CollectorRegistry()
    GatewayMetrics.create(gateway)
    RouterMetrics.create(router)
    families = [f.name for r in (gateway, router) for f in r.collect()]
    undocumented = [name for name in families if f"`{name}" not in doc]
    assert not undocumented, f"add to docs/observability.md's catalogue: {undocumented}"
