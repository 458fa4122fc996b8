"""Write the i24net Grafana dashboards (deploy/grafana/dashboards/*.json) from one description.

    python deploy/grafana/generate.py          # rewrite the JSON files
    python deploy/grafana/generate.py --check  # exit 1 if a JSON file is out of date

The JSON files are committed (an operator imports them as they are); this
script is their source, so that every panel shares one layout, one
datasource variable and one style of query. tests/unit/test_dashboards.py
checks that the committed files match it, that every query parses, and that
every metric a panel names is defined by the gateway or the router.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"
GW = 'job="i24net-gateway"'
GWS = 'job="i24net-gateway", station=~"$station"'
RT = 'job="i24net-router"'


class Board:
    """A dashboard under construction: panels flow left to right, 24 columns wide."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels: list[dict[str, Any]] = []
        self.variables: list[dict[str, Any]] = [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
            }
        ]
        self._x = 0
        self._y = 0
        self._row_h = 0

    def variable(self, name: str, label: str, query: str, *, multi: bool = True) -> None:
        self.variables.append(
            {
                "name": name,
                "label": label,
                "type": "query",
                "datasource": DS,
                "query": {"query": query, "refId": f"{name}-values"},
                "definition": query,
                "refresh": 2,
                "sort": 1,
                "multi": multi,
                "includeAll": multi,
                "allValue": ".*" if multi else None,
                "current": {},
                "hide": 0,
            }
        )

    def row(self, title: str) -> None:
        self._newline()
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
                "panels": [],
            }
        )
        self._y += 1

    def _newline(self) -> None:
        if self._x:
            self._y += self._row_h
            self._x, self._row_h = 0, 0

    def _place(self, w: int, h: int) -> dict[str, int]:
        if self._x + w > 24:
            self._newline()
        pos = {"h": h, "w": w, "x": self._x, "y": self._y}
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def panel(
        self,
        kind: str,
        title: str,
        description: str,
        targets: list[tuple[str, str]],
        *,
        unit: str = "short",
        w: int = 12,
        h: int = 8,
        stack: bool = False,
        thresholds: list[tuple[float | None, str]] | None = None,
    ) -> None:
        steps = [
            {"value": v, "color": c} for v, c in (thresholds or [(None, "green"), (80, "red")])
        ]
        custom: dict[str, Any] = {}
        if kind == "timeseries":
            custom = {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 20 if stack else 0,
                "showPoints": "never",
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            }
        options: dict[str, Any] = {}
        if kind == "timeseries":
            options = {
                "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        elif kind == "stat":
            options = {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "colorMode": "background",
                "graphMode": "area",
                "textMode": "auto",
            }
        elif kind == "bargauge":
            options = {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "orientation": "horizontal",
                "displayMode": "gradient",
            }
        elif kind == "table":
            options = {"showHeader": True}
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": kind,
                "title": title,
                "description": description,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "custom": custom,
                        "thresholds": {"mode": "absolute", "steps": steps},
                        "color": {
                            "mode": "palette-classic" if kind == "timeseries" else "thresholds"
                        },
                    },
                    "overrides": [],
                },
                "options": options,
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DS,
                        "expr": expr,
                        "legendFormat": legend,
                        "range": kind in ("timeseries",),
                        "instant": kind not in ("timeseries",),
                        **({"format": "table"} if kind == "table" else {}),
                    }
                    for i, (expr, legend) in enumerate(targets)
                ],
            }
        )

    def json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["i24net", *self.tags],
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "links": [
                {
                    "type": "dashboards",
                    "tags": ["i24net"],
                    "asDropdown": True,
                    "title": "i24net",
                    "includeVars": False,
                    "keepTime": True,
                }
            ],
            "annotations": {
                "list": [
                    {
                        "name": "Alerts",
                        "datasource": DS,
                        "enable": True,
                        "iconColor": "red",
                        "expr": 'ALERTS{alertname=~"I24net.*", alertstate="firing"}',
                        "titleFormat": "{{alertname}}",
                        "textFormat": "{{station}} {{precedence}} {{reason}}",
                        "step": "60s",
                    }
                ]
            },
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def count_1d(series: str) -> str:
    """Failures in the last 24 hours by station and reason, first ones included: a
    counter series is born at its first failure, and ``increase()`` of a series that
    never changed is 0, so a series younger than a day counts with its whole value."""
    return (
        f"sum by (station, reason) (({series} unless {series} offset 1d) "
        f"or (increase({series}[1d]) > 0))"
    )


def quantiles(metric: str, selector: str, by: str, legend: str) -> list[tuple[str, str]]:
    """p50, p95 and p99 of a histogram, grouped ``by``."""
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{selector}}}[{RI}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


# ---------------------------------------------------------------------------


def overview() -> Board:
    b = Board(
        "i24net-overview",
        "i24net / Network overview",
        "Traffic across the whole network: by station, kind and precedence; delivery latency; "
        "refusals and holds.",
        ["overview"],
    )
    b.row("Health")
    b.panel(
        "stat",
        "Gateways up",
        "Gateways Prometheus scrapes successfully, out of those configured.",
        [(f"sum(up{{{GW}}})", "up"), (f"count(up{{{GW}}})", "configured")],
        w=6,
        h=4,
        thresholds=[(None, "blue")],
    )
    b.panel(
        "stat",
        "Routers up",
        "Router replicas Prometheus scrapes successfully.",
        [(f"sum(up{{{RT}}})", "up")],
        w=6,
        h=4,
        thresholds=[(None, "red"), (1, "green")],
    )
    b.panel(
        "stat",
        "Firing alerts",
        "i24net alerts firing now (see the Alerting page for details).",
        [('count(ALERTS{alertname=~"I24net.*", alertstate="firing"}) or vector(0)', "firing")],
        w=6,
        h=4,
        thresholds=[(None, "green"), (1, "red")],
    )
    b.panel(
        "stat",
        "Messages accepted (24h)",
        "Messages accepted at intake across every gateway in the last 24 hours.",
        [(f'sum(increase(i24net_gateway_intake_total{{{GW}, outcome="accepted"}}[1d]))', "")],
        w=6,
        h=4,
        thresholds=[(None, "blue")],
    )
    b.row("Traffic")
    b.panel(
        "timeseries",
        "Messages accepted by station",
        "Submissions accepted at each station's gateway (per second).",
        [
            (
                f"sum by (station) (rate(i24net_gateway_intake_total"
                f'{{{GW}, outcome="accepted"}}[{RI}]))',
                "{{station}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Messages sent by kind",
        "Envelopes acknowledged by Kafka on the stations' out topics, by message kind.",
        [
            (
                f"sum by (kind) (rate(i24net_gateway_messages_sent_total{{{GW}}}[{RI}]))",
                "{{kind}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Messages sent by precedence",
        "Envelopes sent, by precedence (FLASH, IMMEDIATE, PRIORITY, ROUTINE, DEFERRED).",
        [
            (
                f"sum by (precedence) (rate(i24net_gateway_messages_sent_total{{{GW}}}[{RI}]))",
                "{{precedence}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Messages stored by receiving station",
        "Inbound messages verified, decrypted and stored at each recipient's gateway.",
        [
            (
                f"sum by (station) (rate(i24net_gateway_inbound_total"
                f'{{{GW}, outcome="stored"}}[{RI}]))',
                "{{station}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.row("Delivery latency")
    b.panel(
        "timeseries",
        "End-to-end latency (created at sender → stored at recipient)",
        "Quantiles over every recipient gateway.",
        quantiles("i24net_gateway_stage_seconds", f'{GW}, stage="end_to_end"', "stage", ""),
        unit="s",
        w=8,
    )
    b.panel(
        "timeseries",
        "Sent → routed latency by precedence (p95)",
        "From the envelope's creation to the router's commit.",
        [
            (
                f"histogram_quantile(0.95, sum by (le, precedence) "
                f"(rate(i24net_router_sent_to_routed_seconds_bucket{{{RT}}}[{RI}])))",
                "{{precedence}}",
            )
        ],
        unit="s",
        w=8,
    )
    b.panel(
        "timeseries",
        "Latency by stage (p95)",
        "intake_to_sent at the sender's gateway, routed_to_stored at the recipient's.",
        [
            (
                f"histogram_quantile(0.95, sum by (le, stage) "
                f"(rate(i24net_gateway_stage_seconds_bucket{{{GW}}}[{RI}])))",
                "{{stage}}",
            )
        ],
        unit="s",
        w=8,
    )
    b.row("Refusals and holds")
    b.panel(
        "timeseries",
        "Intake refusals by reason",
        "Submissions refused at the gateways' API (the integrator got a specific 4xx).",
        [
            (
                f"sum by (reason) (rate(i24net_gateway_intake_refusals_total{{{GW}}}[{RI}]))",
                "{{reason}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Router decisions by outcome",
        "What the router decided for each message: delivered, held, refused; and reviews.",
        [
            (
                f"sum by (outcome) (rate(i24net_router_messages_total{{{RT}}}[{RI}]))",
                "{{outcome}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Holds by reason",
        "Messages the Article 3 screen held for review, by policy reason.",
        [
            (
                f"sum by (reason) (rate(i24net_router_holds_total{{{RT}}}[{RI}]))",
                "{{reason}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Router refusals by reason",
        "Messages the router refused (to i24.dlq, with a notice to the sender).",
        [
            (
                f"sum by (reason) (rate(i24net_router_refusals_total{{{RT}}}[{RI}]))",
                "{{reason}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "bargauge",
        "Outbox depth by station",
        "Envelopes waiting at each gateway to be handed to Kafka.",
        [(f"sum by (station) (i24net_gateway_outbox_messages{{{GW}}})", "{{station}}")],
        thresholds=[(None, "green"), (100, "orange"), (1000, "red")],
    )
    return b


def gateway() -> Board:
    b = Board(
        "i24net-gateway",
        "i24net / Gateway (per station)",
        "One bureau gateway: intake, outbox, inbound traffic, latency and the broker link.",
        ["gateway"],
    )
    b.variable("station", "Station", f"label_values(up{{{GW}}}, station)")
    b.row("Health")
    b.panel(
        "stat",
        "Up",
        "1 when Prometheus scrapes the gateway.",
        [(f"up{{{GWS}}}", "{{station}}")],
        w=4,
        h=4,
        thresholds=[(None, "red"), (1, "green")],
    )
    b.panel(
        "stat",
        "Broker link",
        "1 when the producer's last round succeeded, 0 while it retries.",
        [(f"i24net_gateway_broker_up{{{GWS}}}", "{{station}}")],
        w=4,
        h=4,
        thresholds=[(None, "red"), (1, "green")],
    )
    b.panel(
        "stat",
        "Directory stations",
        "Stations in the loaded, verified GS directory.",
        [(f"i24net_gateway_directory_stations{{{GWS}}}", "{{station}}")],
        w=4,
        h=4,
        thresholds=[(None, "red"), (1, "blue")],
    )
    b.panel(
        "stat",
        "Outbox (messages)",
        "Envelopes waiting to be sent.",
        [(f"i24net_gateway_outbox_messages{{{GWS}}}", "{{station}}")],
        w=4,
        h=4,
        thresholds=[(None, "green"), (100, "orange"), (1000, "red")],
    )
    b.panel(
        "stat",
        "Outbox oldest",
        "Age of the oldest envelope waiting to be sent (0 when none).",
        [(f"i24net_gateway_outbox_oldest_age_seconds{{{GWS}}}", "{{station}}")],
        unit="s",
        w=4,
        h=4,
        thresholds=[(None, "green"), (60, "orange"), (300, "red")],
    )
    b.panel(
        "stat",
        "Inbox not yet acknowledged",
        "Stored inbound messages the integrator has not acknowledged.",
        [(f"i24net_gateway_inbox_unacked{{{GWS}}}", "{{station}}")],
        w=4,
        h=4,
        thresholds=[(None, "green"), (1000, "orange")],
    )
    b.row("Intake")
    b.panel(
        "timeseries",
        "Intake by outcome",
        "Submissions: accepted, duplicate (idempotent retry) or refused.",
        [
            (
                f"sum by (station, outcome) (rate(i24net_gateway_intake_total{{{GWS}}}[{RI}]))",
                "{{station}} {{outcome}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Intake refusals by reason",
        "Why submissions were refused (the integrator saw the same code).",
        [
            (
                f"sum by (station, reason) "
                f"(rate(i24net_gateway_intake_refusals_total{{{GWS}}}[{RI}]))",
                "{{station}} {{reason}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Intake latency",
        "Validate, seal and durably store one submission.",
        quantiles("i24net_gateway_intake_seconds", GWS, "station", "{{station}}"),
        unit="s",
    )
    b.panel(
        "timeseries",
        "Sent by precedence",
        "Envelopes acknowledged by Kafka, by precedence.",
        [
            (
                f"sum by (station, precedence) "
                f"(rate(i24net_gateway_messages_sent_total{{{GWS}}}[{RI}]))",
                "{{station}} {{precedence}}",
            )
        ],
        unit="reqps",
    )
    b.row("Outbox and broker")
    b.panel(
        "timeseries",
        "Outbox depth",
        "Envelopes and bytes waiting; the disk bound applies to bytes.",
        [
            (f"i24net_gateway_outbox_messages{{{GWS}}}", "{{station}} messages"),
        ],
    )
    b.panel(
        "timeseries",
        "Outbox bytes and oldest age",
        "Bytes waiting, and how long the oldest has waited.",
        [
            (f"i24net_gateway_outbox_bytes{{{GWS}}}", "{{station}} bytes"),
        ],
        unit="bytes",
    )
    b.panel(
        "timeseries",
        "Produce errors",
        "Failed produce rounds (each batch is retried).",
        [
            (
                f"sum by (station) (rate(i24net_gateway_produce_errors_total{{{GWS}}}[{RI}]))",
                "{{station}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Consumer lag on the in topic",
        "Records in the station's in topic not yet processed, per partition.",
        [
            (
                f"sum by (station, topic, partition) (i24net_gateway_consumer_lag{{{GWS}}})",
                "{{station}} {{topic}}[{{partition}}]",
            )
        ],
    )
    b.row("Inbound")
    b.panel(
        "timeseries",
        "Inbound by kind and outcome",
        "Records read from the in topic: stored, duplicate or rejected.",
        [
            (
                f"sum by (station, kind, outcome) "
                f"(rate(i24net_gateway_inbound_total{{{GWS}}}[{RI}]))",
                "{{station}} {{kind}} {{outcome}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Receipts and status notices",
        "Delivery receipts for messages this station sent; router status notices.",
        [
            (
                f"sum by (station, outcome) "
                f"(rate(i24net_gateway_receipts_received_total{{{GWS}}}[{RI}]))",
                "{{station}} receipt {{outcome}}",
            ),
            (
                f"sum by (station, status) "
                f"(rate(i24net_gateway_status_notices_total{{{GWS}}}[{RI}]))",
                "{{station}} notice {{status}}",
            ),
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Latency by stage (p95)",
        "intake_to_sent (this gateway), routed_to_stored and end_to_end (into this gateway).",
        [
            (
                f"histogram_quantile(0.95, sum by (le, station, stage) "
                f"(rate(i24net_gateway_stage_seconds_bucket{{{GWS}}}[{RI}])))",
                "{{station}} {{stage}}",
            )
        ],
        unit="s",
    )
    b.panel(
        "timeseries",
        "Verification failures by reason",
        "Inbound envelopes refused (kept in the rejected table).",
        [
            (
                f"sum by (station, reason) "
                f"(rate(i24net_gateway_verification_failures_total{{{GWS}}}[{RI}]))",
                "{{station}} {{reason}}",
            )
        ],
        unit="reqps",
    )
    return b


def router() -> Board:
    b = Board(
        "i24net-router",
        "i24net / Router",
        "The GS router: throughput, policy decisions, the review queue and consumer lag.",
        ["router"],
    )
    b.row("Health")
    b.panel(
        "stat",
        "Replicas up",
        "Router replicas Prometheus scrapes successfully.",
        [(f"sum(up{{{RT}}})", "up")],
        w=6,
        h=4,
        thresholds=[(None, "red"), (1, "green")],
    )
    b.panel(
        "stat",
        "Held, awaiting review",
        "Messages in quarantine waiting for a GS reviewer.",
        [(f"sum(i24net_router_quarantine_messages{{{RT}}})", "held")],
        w=6,
        h=4,
        thresholds=[(None, "green"), (1, "orange"), (100, "red")],
    )
    b.panel(
        "stat",
        "Oldest hold waiting",
        "How long the oldest undecided hold has waited (alert past 24 hours).",
        [
            (
                f"max(time() - (i24net_router_quarantine_oldest_hold_timestamp_seconds"
                f"{{{RT}}} > 0)) or vector(0)",
                "oldest",
            )
        ],
        unit="s",
        w=6,
        h=4,
        thresholds=[(None, "green"), (3600, "orange"), (86400, "red")],
    )
    b.panel(
        "stat",
        "Directory stations",
        "Stations in the router's verified directory.",
        [(f"min(i24net_router_directory_stations{{{RT}}})", "stations")],
        w=6,
        h=4,
        thresholds=[(None, "red"), (1, "blue")],
    )
    b.row("Throughput and decisions")
    b.panel(
        "timeseries",
        "Messages by outcome",
        "Router decisions: delivered, held, refused; approved/rejected after review; expired.",
        [
            (
                f"sum by (outcome) (rate(i24net_router_messages_total{{{RT}}}[{RI}]))",
                "{{outcome}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Messages by precedence",
        "Router throughput by precedence (urgent traffic must not wait behind bulk).",
        [
            (
                f"sum by (precedence) (rate(i24net_router_messages_total{{{RT}}}[{RI}]))",
                "{{precedence}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Policy decisions by rule",
        "Article 3 screen decisions, by rule and decision.",
        [
            (
                f"sum by (rule, decision) "
                f"(rate(i24net_router_policy_decisions_total{{{RT}}}[{RI}]))",
                "{{rule}} {{decision}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Holds and refusals by reason",
        "Held for review (policy reason) and refused (verification or policy reason).",
        [
            (
                f"sum by (reason) (rate(i24net_router_holds_total{{{RT}}}[{RI}]))",
                "held: {{reason}}",
            ),
            (
                f"sum by (reason) (rate(i24net_router_refusals_total{{{RT}}}[{RI}]))",
                "refused: {{reason}}",
            ),
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Deliveries by recipient station (top 10)",
        "Delivery envelopes produced to i24.in.<station>.",
        [
            (
                f"topk(10, sum by (station) (rate(i24net_router_deliveries_total{{{RT}}}[{RI}])))",
                "{{station}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Status notices to senders",
        "Notices the router sent back to senders, by status.",
        [
            (
                f"sum by (status) (rate(i24net_router_status_notices_total{{{RT}}}[{RI}]))",
                "{{status}}",
            )
        ],
        unit="reqps",
    )
    b.row("Review queue")
    b.panel(
        "timeseries",
        "Quarantine size",
        "Messages held and awaiting review.",
        [(f"sum by (replica) (i24net_router_quarantine_messages{{{RT}}})", "{{replica}}")],
        w=6,
    )
    b.panel(
        "timeseries",
        "Oldest hold age",
        "Age of the oldest undecided hold (absent when none is waiting).",
        [
            (
                f"time() - (i24net_router_quarantine_oldest_hold_timestamp_seconds{{{RT}}} > 0)",
                "{{replica}}",
            )
        ],
        unit="s",
        w=6,
        thresholds=[(None, "green"), (86400, "red")],
    )
    b.panel(
        "timeseries",
        "Past review deadline",
        "Held messages past their review deadline ([review.deadlines]: per precedence and "
        "kind, the tighter wins); I24netReviewOverdue pages after 5 minutes above 0.",
        [(f"max by (replica) (i24net_review_overdue{{{RT}}})", "{{replica}}")],
        w=6,
        thresholds=[(None, "green"), (1, "red")],
    )
    b.panel(
        "timeseries",
        "Review decisions",
        "Reviewer verdicts (each one audited).",
        [
            (
                f"sum by (verdict) (increase(i24net_router_review_decisions_total{{{RT}}}[1h]))",
                "{{verdict}} per hour",
            )
        ],
        w=6,
    )
    b.row("Pipeline")
    b.panel(
        "timeseries",
        "Sent → routed latency",
        "From the envelope's creation to the router's commit, all precedences.",
        quantiles("i24net_router_sent_to_routed_seconds", RT, "job", ""),
        unit="s",
    )
    b.panel(
        "timeseries",
        "Transaction time",
        "Time to decide and commit one Kafka transaction.",
        quantiles("i24net_router_batch_seconds", RT, "job", ""),
        unit="s",
    )
    b.panel(
        "timeseries",
        "Transactions by result",
        "Committed vs aborted transactions.",
        [
            (
                f"sum by (result) (rate(i24net_router_transactions_total{{{RT}}}[{RI}]))",
                "{{result}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Records per transaction (p50)",
        "Input records per transaction (bigger under load).",
        [
            (
                f"histogram_quantile(0.5, sum by (le) "
                f"(rate(i24net_router_batch_records_bucket{{{RT}}}[{RI}])))",
                "p50",
            )
        ],
    )
    b.panel(
        "timeseries",
        "Consumer lag on i24.out topics (top 20 partitions)",
        "Records behind the end of each assigned partition.",
        [
            (
                f"topk(20, sum by (topic, partition) (i24net_router_consumer_lag_records{{{RT}}}))",
                "{{topic}}[{{partition}}]",
            )
        ],
    )
    b.panel(
        "timeseries",
        "Fair scheduler queue and audit chain",
        "Records fetched and waiting in the scheduler; audit chain length per chain.",
        [
            (f"sum by (replica) (i24net_router_queued_records{{{RT}}})", "queued {{replica}}"),
            (f"sum by (chain) (i24net_router_audit_chain_length{{{RT}}})", "audit {{chain}}"),
        ],
    )
    b.panel(
        "table",
        "Build",
        "Version of each router replica.",
        [(f"i24net_build_info{{{RT}}}", "")],
        w=24,
        h=5,
    )
    return b


def security() -> Board:
    b = Board(
        "i24net-security",
        "i24net / Security",
        "Verification failures by reason and station, unauthorised submissions, the audit "
        "chain and the directory.",
        ["security"],
    )
    b.row("Verification")
    b.panel(
        "timeseries",
        "Verification failures at gateways by reason",
        "Inbound envelopes refused by recipients' gateways.",
        [
            (
                f"sum by (reason) (rate(i24net_gateway_verification_failures_total{{{GW}}}[{RI}]))",
                "{{reason}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Verification failures at gateways by station",
        "Which stations' gateways are refusing envelopes.",
        [
            (
                f"sum by (station) "
                f"(rate(i24net_gateway_verification_failures_total{{{GW}}}[{RI}]))",
                "{{station}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "table",
        "Verification failures (24h) by station and reason",
        "Count over the last 24 hours.",
        [
            (
                count_1d(f"i24net_gateway_verification_failures_total{{{GW}}}"),
                "",
            )
        ],
        w=24,
    )
    b.panel(
        "timeseries",
        "Verification failures at the router by reason",
        "Envelopes from stations' out topics that failed verification at the GS.",
        [
            (
                f"sum by (reason) (rate(i24net_router_verification_failures_total{{{RT}}}[{RI}]))",
                "{{reason}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "timeseries",
        "Verification failures at the router by sending station",
        "The station whose out topic carried the failing envelope.",
        [
            (
                f"sum by (station) (rate(i24net_router_verification_failures_total{{{RT}}}[{RI}]))",
                "{{station}}",
            )
        ],
        unit="reqps",
        stack=True,
    )
    b.panel(
        "table",
        "Verification failures (24h) by station and reason",
        "Count over the last 24 hours, where it was seen (gateway = recipient's station, "
        "router = sending station's out topic).",
        [
            (
                count_1d(f"i24net_gateway_verification_failures_total{{{GW}}}"),
                "gateway",
            ),
            (
                count_1d(f"i24net_router_verification_failures_total{{{RT}}}"),
                "router",
            ),
        ],
        w=24,
    )
    b.row("Misuse, audit chain and directory")
    b.panel(
        "timeseries",
        "Unauthorised or unknown-party submissions",
        "Intake refusals whose reason suggests misuse rather than a bug.",
        [
            (
                f"sum by (station, reason) (rate(i24net_gateway_intake_refusals_total"
                f'{{{GW}, reason=~"unauthorised|unknown_recipient|unknown_sender|revoked_key"}}'
                f"[{RI}]))",
                "{{station}} {{reason}}",
            )
        ],
        unit="reqps",
    )
    b.panel(
        "timeseries",
        "Audit chain length",
        "Records in each router instance's hash chain on i24.audit. It only ever grows: "
        "a drop means records were lost or removed (alert I24netAuditChainShrank).",
        [(f"max by (chain) (i24net_router_audit_chain_length{{{RT}}})", "{{chain}}")],
    )
    b.panel(
        "stat",
        "Directory size seen by gateways and router",
        "Everyone should load the same directory; a lagging party shows fewer stations.",
        [
            (f"min(i24net_gateway_directory_stations{{{GW}}})", "gateways min"),
            (f"max(i24net_gateway_directory_stations{{{GW}}})", "gateways max"),
            (f"min(i24net_router_directory_stations{{{RT}}})", "router"),
        ],
        thresholds=[(None, "blue")],
        w=24,
        h=4,
    )
    return b


BOARDS = {"overview": overview, "gateway": gateway, "router": router, "security": security}


def render() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {
        f"i24net-{name}.json": json.dumps(make().json(), indent=2, sort_keys=False) + "\n"
        for name, make in BOARDS.items()
    }


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python deploy/grafana/generate.py):", *stale, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
