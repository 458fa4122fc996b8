"""The three formats of the transparency report: JSON, CSV and one-file HTML.

All three print a :class:`PublicReport` (small cells already withheld) and
nothing else, so what one format shows the others show too. The HTML embeds
its charts as PNG ``data:`` URIs: the file can be mailed, archived or served
by the console as it is, with no other request.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from typing import Any

import jinja2

from i24net.report._build import OUTCOME_TITLES, OUTCOMES, TransparencyReport
from i24net.report._public import (
    PRIMARY,
    SECONDARY,
    SMALL_CELL,
    Cell,
    PublicReport,
    PublicTable,
    PublicTurnaround,
    publish,
)

FORMAT_VERSION = 1


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table_json(t: PublicTable) -> dict[str, Any]:
    return {
        "title": t.title,
        "row_label": t.row_label,
        "columns": list(t.columns),
        "rows": [
            {"label": label, "cells": dict(zip(t.columns, cells, strict=True)), "total": total}
            for label, cells, total in t.rows
        ],
        "column_totals": dict(zip(t.columns, t.totals[0], strict=True)),
        "total": t.totals[1],
    }


def _turn_json(t: PublicTurnaround) -> dict[str, Any]:
    return {"n": t.n, "p50_s": _s(t.p50_ms), "p90_s": _s(t.p90_ms), "p99_s": _s(t.p99_ms)}


def _s(ms: int | None) -> float | None:
    return None if ms is None else round(ms / 1000, 3)


def to_json(p: PublicReport) -> dict[str, Any]:
    r = p.source
    return {
        "report": "i24net transparency report",
        "format_version": FORMAT_VERSION,
        "period": {"from": r.period.first.isoformat(), "to": r.period.last.isoformat()},
        "generated_at": _iso(r.generated_at_ms),
        "audit": {
            "verified": True,
            "records": r.audit.records,
            "chains": [{"chain": c, "length": n, "head": h} for c, n, h in r.audit.chains],
        },
        "small_cells": {
            "threshold": SMALL_CELL,
            "primary": PRIMARY,
            "complementary": SECONDARY,
        },
        "outcomes": {o: OUTCOME_TITLES[o] for o in OUTCOMES},
        "totals": _table_json(p.totals),
        "tables": {t.name: _table_json(t) for t in p.tables},
        "turnaround": {t.label: _turn_json(t) for t in p.turnaround},
        "other_grounds": {
            "statement": p.other_statement,
            "largest": r.other.largest,
            "tables": {t.name: _table_json(t) for t in p.other_tables},
        },
        "four_eyes_decisions": p.four_eyes,
        "policies": _table_json(p.policies),
    }


def render_json(report: TransparencyReport) -> str:
    return json.dumps(to_json(publish(report)), indent=2, ensure_ascii=False) + "\n"


def render_csv(report: TransparencyReport) -> str:
    """One tidy table: ``table, row_label, row, column, value`` (totals as ``total``)."""
    p = publish(report)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["table", "row_label", "row", "column", "value"])
    r = p.source
    w.writerow(["period", "", "from", "", r.period.first.isoformat()])
    w.writerow(["period", "", "to", "", r.period.last.isoformat()])
    w.writerow(["audit", "", "records", "", r.audit.records])
    for c, n, h in r.audit.chains:
        w.writerow(["audit", "chain", c, "length", n])
        w.writerow(["audit", "chain", c, "head", h])
    for t in (p.totals, *p.tables, *p.other_tables, p.policies):
        for label, cells, total in t.rows:
            for col, v in zip(t.columns, cells, strict=True):
                w.writerow([t.name, t.row_label, label, col, v])
            w.writerow([t.name, t.row_label, label, "total", total])
        for col, v in zip(t.columns, t.totals[0], strict=True):
            w.writerow([t.name, t.row_label, "total", col, v])
        w.writerow([t.name, t.row_label, "total", "total", t.totals[1]])
    for tt in p.turnaround:
        w.writerow(["turnaround", "kind", tt.label, "n", tt.n])
        for name, ms in (("p50_s", tt.p50_ms), ("p90_s", tt.p90_ms), ("p99_s", tt.p99_ms)):
            w.writerow(["turnaround", "kind", tt.label, name, "" if ms is None else _s(ms)])
    w.writerow(["four_eyes", "", "decisions", "", p.four_eyes])
    w.writerow(["other_grounds", "", "statement", "", p.other_statement])
    return out.getvalue()


# --- HTML ---------------------------------------------------------------------------


def duration(ms: int | None) -> str:
    """``3 h 12 min``, ``2 d 4 h``, ``45 s``: what a reader of the report wants."""
    if ms is None:
        return "–"
    s = ms // 1000
    if s < 60:
        return f"{s} s"
    m = s // 60
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _num(c: Cell) -> int:
    """A public cell as a number for a chart: withheld cells are drawn as 0."""
    return c if isinstance(c, int) else 0


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_COLOURS = {
    "delivered": "#4e79a7",
    "held": "#f28e2b",
    "approved": "#59a14f",
    "rejected": "#e15759",
    "refused_by_screen": "#b07aa1",
    "refused_unverified": "#9c755f",
    "expired": "#bab0ac",
}


def charts(p: PublicReport) -> dict[str, str]:
    """PNG data URIs: decisions by month, refusals by grounds, turnaround by kind."""
    from matplotlib.figure import Figure

    out: dict[str, str] = {}
    by_month = next(t for t in p.tables if t.name == "by_month")
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    months = [label for label, _, _ in by_month.rows]
    bottom = [0] * len(months)
    for j, o in enumerate(OUTCOMES):
        values = [_num(cells[j]) for _, cells, _ in by_month.rows]
        ax.bar(months, values, bottom=bottom, label=OUTCOME_TITLES[o], color=_COLOURS[o])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("decisions")
    ax.set_title("Decisions by month and outcome")
    ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out["by_month"] = _png(fig)

    grounds = next(t for t in p.tables if t.name == "refusals_by_grounds")
    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    values = [_num(c) for c in grounds.totals[0]]
    ax.barh(list(grounds.columns), values, color="#e15759")
    ax.invert_yaxis()
    ax.set_xlabel("refusals by reviewers")
    ax.set_title("Refusals by grounds")
    fig.tight_layout()
    out["grounds"] = _png(fig)

    shown = [t for t in p.turnaround if t.p50_ms is not None]
    fig = Figure(figsize=(8, 0.6 + 0.45 * max(1, len(shown))))
    ax = fig.add_subplot()
    labels = [t.label for t in shown]
    for k, (name, colour) in enumerate(
        (("p50", "#4e79a7"), ("p90", "#f28e2b"), ("p99", "#e15759"))
    ):
        hours = [(getattr(t, f"{name}_ms") or 0) / 3_600_000 for t in shown]
        ax.barh(
            [i + (k - 1) * 0.27 for i in range(len(shown))], hours, 0.27, label=name, color=colour
        )
    ax.set_yticks(range(len(shown)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("hours from hold to decision")
    ax.set_title("Review turnaround")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    out["turnaround"] = _png(fig)
    return out


_FRAGMENT = """<p class="period">Decisions on messages from {{ r.period.first }}
to {{ r.period.last }} (UTC days, both included).</p>
<p class="note">Generated {{ generated }} from the hash-chained audit log (<code>i24.audit</code>).
The whole log ({{ r.audit.records }} records) was verified before use: no edit, gap, reordering,
duplicate or truncation. Chain heads, to compare with the heads the router publishes:</p>
<table><tr><th>chain</th><th>length</th><th>head (BLAKE2b-256)</th></tr>
{% for c, n, h in r.audit.chains %}
<tr><td>{{ c }}</td><td>{{ n }}</td><td><code>{{ h }}</code></td></tr>
{% endfor %}</table>
<p class="note">No personal data and no message ids: only counts over enumerated fields
(outcome, kind, the sender's regional group, rule, grounds, month). Counts of 1 or 2 are
shown as <b>{{ primary }}</b>; a cell shown as <b>{{ secondary }}</b> is withheld so that a small
cell cannot be worked out from the totals. Charts draw withheld cells as zero.</p>

<h2>Decisions by outcome</h2>
{{ table(p.totals) }}

<h2>Over time</h2>
<img alt="Decisions by month and outcome" src="{{ charts.by_month }}">
{% for t in p.tables %}
<h2>{{ t.title }}</h2>
{% if t.name == "refusals_by_grounds" %}
<img alt="Refusals by grounds" src="{{ charts.grounds }}">
{% endif %}
{{ table(t) }}
{% if t.name == "refusals_by_grounds" %}
<h3>Refusals filed under OTHER</h3>
<p class="statement">{{ p.other_statement }}</p>
{% for o in p.other_tables %}<h4>{{ o.title }}</h4>{{ table(o) }}{% endfor %}
{% endif %}
{% endfor %}

<h2>Review turnaround (from hold to decision)</h2>
<p class="note">Decisions made in the period, by kind; nearest-rank percentiles (each an observed
turnaround). Fewer than {{ threshold }} decisions: not shown.</p>
<img alt="Review turnaround percentiles by kind" src="{{ charts.turnaround }}">
<table><tr><th>kind</th><th>decisions</th><th>p50</th><th>p90</th><th>p99</th></tr>
{% for t in p.turnaround %}
<tr{% if t.label == "all" %} class="total"{% endif %}><td>{{ t.label }}</td><td>{{ t.n }}</td>
<td>{{ duration(t.p50_ms) }}</td><td>{{ duration(t.p90_ms) }}</td>
<td>{{ duration(t.p99_ms) }}</td></tr>
{% endfor %}</table>

<h2>Four-eyes</h2>
<p>Decisions that took effect only after a second reviewer confirmed a first one's proposal:
<b>{{ p.four_eyes }}</b>.</p>

<h2>{{ p.policies.title }}</h2>
{{ table(p.policies) }}

<h2>How to read this report</h2>
<ul class="note">
<li>Each decision is one audit record: a message held and later approved counts once as held
and once as approved. Delivery receipts are not counted.</li>
<li>"Refused by the screen" is the neutrality screen's own refusal (a rule of the published
policy); "refused: not verifiable or undeliverable" covers envelopes that failed signature or
validity checks, or named no deliverable recipient.</li>
<li>Regions are the organisation's regional groups of the sending bureau; messages from the
General Secretariat, regional bureaus and representative offices are counted apart.</li>
<li>Rules and reason codes are the identifiers of the screening policy whose digest is listed
above; a value that does not look like one is counted as "(unrecognised)".</li>
</ul>
"""
"""The report's content: no <html>, no <style>, no script, images as data: URIs, so it
can sit inside another page under a strict Content-Security-Policy (the console's)."""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Transparency report {{ r.period.first }} to {{ r.period.last }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: bold; background: #f4f4f4; }
img { max-width: 100%; }
.wide { overflow-x: auto; }
.note { color: #555; font-size: 0.9rem; }
.statement { border-left: 4px solid #e15759; padding: 0.3rem 0.8rem; background: #fff6f6; }
code { font-size: 0.85rem; }
</style>
</head>
<body>
<h1>Transparency report: decisions on messages, {{ r.period.first }} to {{ r.period.last }}</h1>
{{ fragment }}
</body>
</html>
"""


def _table_html(t: PublicTable) -> str:
    from markupsafe import Markup, escape

    # A one-column table's row total repeats its cell: not shown.
    extra: tuple[str, ...] = ("total",) if len(t.columns) > 1 else ()
    head = "".join(f"<th>{escape(c)}</th>" for c in (t.row_label, *t.columns, *extra))
    rows = [f"<tr>{head}</tr>"]
    for label, cells, total in t.rows:
        tds = "".join(
            f"<td>{escape(c)}</td>" for c in (label, *cells, *((total,) if extra else ()))
        )
        rows.append(f"<tr>{tds}</tr>")
    last = (t.totals[1],) if extra else ()
    tds = "".join(f"<td>{escape(c)}</td>" for c in ("total", *t.totals[0], *last))
    rows.append(f'<tr class="total">{tds}</tr>')
    return Markup('<div class="wide"><table>' + "\n".join(rows) + "</table></div>")


def _env() -> jinja2.Environment:
    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def render_fragment(report: TransparencyReport) -> str:
    """The report's content for embedding in a page (the review console's)."""
    p = publish(report)
    return (
        _env()
        .from_string(_FRAGMENT)
        .render(
            r=report,
            p=p,
            generated=_iso(report.generated_at_ms),
            charts=charts(p),
            table=_table_html,
            duration=duration,
            primary=PRIMARY,
            secondary=SECONDARY,
            threshold=SMALL_CELL,
        )
    )


def render_html(report: TransparencyReport) -> str:
    """The report as one HTML file (charts inline), for ``--format html``."""
    from markupsafe import Markup

    fragment = Markup(render_fragment(report))
    return _env().from_string(_PAGE).render(r=report, fragment=fragment)
