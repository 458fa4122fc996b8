"""What the shipped Prometheus rules and Grafana dashboards rely on, and how to read them.

The metric **definitions** live with each service (``i24net.gateway.metrics``,
``i24net.router.metrics``); this module only names the series the operator
tooling in ``deploy/`` is built on, and extracts the PromQL expressions and
metric names from the shipped files so that tests can prove every one of
them against the definitions and against a real Prometheus server.

Nothing here registers a metric or reads the environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

CORE_GATEWAY_SERIES: tuple[str, ...] = (
    "i24net_build_info",
    "i24net_gateway_intake_total",
    "i24net_gateway_messages_sent_total",
    "i24net_gateway_outbox_messages",
    "i24net_gateway_outbox_oldest_age_seconds",
    "i24net_gateway_undelivered_oldest_age_seconds",
    "i24net_gateway_inbound_total",
    "i24net_gateway_stage_seconds_bucket",
    "i24net_gateway_consumer_lag",
)
"""Series every running gateway exposes once it has carried traffic."""

CORE_ROUTER_SERIES: tuple[str, ...] = (
    "i24net_build_info",
    "i24net_router_messages_total",
    "i24net_router_deliveries_total",
    "i24net_router_policy_decisions_total",
    "i24net_router_transactions_total",
    "i24net_router_sent_to_routed_seconds_bucket",
    "i24net_router_audit_chain_length",
    "i24net_router_directory_stations",
    "i24net_router_consumer_lag_records",
    "i24net_router_directory_serial",
    "i24net_review_overdue",
)
"""Series every running router exposes once it has routed traffic."""

PROPOSED_SERIES: Mapping[str, str] = {}
"""Series the shipped alert rules use that no service defines yet (asked for in issue 7).

The tests accept these names as not yet defined, and fail as soon as one is
defined (so that this list is emptied, not forgotten).
"""

PROMETHEUS_SERIES: frozenset[str] = frozenset(
    {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"}
)
"""Series Prometheus makes itself; they need no definition in i24net."""

GRAFANA_SUBSTITUTIONS: Mapping[str, str] = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
}
"""Grafana's built-in variables, replaced by a plausible value before parsing."""


# ---------------------------------------------------------------------------
# Sample names a registry can expose


def exposed_names(registry: CollectorRegistry) -> frozenset[str]:
    """Every sample name ``registry`` can expose, including label-less ones not yet set.

    A labelled metric that has no child yet exposes no sample, so the names
    are derived from each family's type: a counter ``x`` gives ``x_total``
    and ``x_created``; a histogram gives ``_bucket``, ``_sum``, ``_count``.
    """
    suffixes: dict[str, tuple[str, ...]] = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "stateset": ("",),
        "unknown": ("",),
    }
    names: set[str] = set()
    for family in registry.collect():
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return frozenset(names)


# ---------------------------------------------------------------------------
# Expressions in the shipped files


@dataclass(frozen=True)
class Expression:
    """One PromQL expression and where it was found (for error messages)."""

    where: str
    expr: str


_RULE_RE = re.compile(r"^\s*-\s*(alert|record):\s*(\S+)\s*$")
_EXPR_RE = re.compile(r"^(\s*)expr:\s*(.*)$")


def rule_expressions(path: Path) -> list[Expression]:
    """Every ``expr`` of a Prometheus rules file, with the alert or record it belongs to.

    The shipped rules files keep each ``expr`` either on one line or as a
    ``|`` / ``>`` block scalar; this reader handles exactly those shapes and
    refuses anything else, so that a rule cannot silently escape the tests.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Expression] = []
    current: str | None = None
    rules = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        rule = _RULE_RE.match(line)
        if rule:
            current = f"{path.name}:{rule.group(1)} {rule.group(2)}"
            rules += 1
        expr = _EXPR_RE.match(line)
        if expr:
            indent, value = len(expr.group(1)), expr.group(2).strip()
            if current is None:
                raise ValueError(f"{path}:{i + 1}: expr outside a rule")
            if value in ("|", ">", "|-", ">-"):
                body: list[str] = []
                i += 1
                while i < len(lines) and (
                    not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
                ):
                    body.append(lines[i].strip())
                    i += 1
                text = " ".join(b for b in body if b)
                found.append(Expression(current, text))
                current = None
                continue
            if value.startswith(("'", '"')):
                raise ValueError(f"{path}:{i + 1}: quote-free expr or a block scalar, please")
            found.append(Expression(current, value))
            current = None
        i += 1
    if len(found) != rules:
        raise ValueError(f"{path}: {rules} rules but {len(found)} expressions read")
    return found


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", ()))


def dashboard_expressions(path: Path) -> list[Expression]:
    """Every Prometheus query of a Grafana dashboard: panels, annotations, template variables."""
    board = json.loads(path.read_text(encoding="utf-8"))
    found: list[Expression] = []
    for panel in _panels(board.get("panels", ())):
        for target in panel.get("targets", ()):
            if target.get("expr"):
                found.append(
                    Expression(f"{path.name}: panel {panel.get('title')!r}", target["expr"])
                )
    for note in board.get("annotations", {}).get("list", ()):
        if note.get("expr"):
            found.append(Expression(f"{path.name}: annotation {note.get('name')!r}", note["expr"]))
    for var in board.get("templating", {}).get("list", ()):
        if var.get("type") == "query":
            query = var.get("query")
            text = query.get("query") if isinstance(query, Mapping) else query
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", str(text or "").strip())
            if m:
                found.append(Expression(f"{path.name}: variable {var.get('name')!r}", m.group(1)))
    return found


def substitute_variables(expr: str, variables: Mapping[str, str]) -> str:
    """Replace Grafana's ``$__rate_interval`` etc. and the dashboard's ``$var``/``${var}``."""
    out = expr
    for name, value in GRAFANA_SUBSTITUTIONS.items():
        out = out.replace(name, value)
    for name, value in variables.items():
        out = out.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in out:
        raise ValueError(f"unknown variable left in {expr!r}")
    return out


# ---------------------------------------------------------------------------
# Metric names inside an expression

_STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MODIFIER_RE = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENT_RE = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> frozenset[str]:
    """The metric names an expression selects (label names, functions, keywords left out)."""
    text = _STRING_RE.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _MODIFIER_RE.sub(" ", text)
    names: set[str] = set()
    for m in _IDENT_RE.finditer(text):
        word = m.group(1)
        rest = text[m.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return frozenset(names)
