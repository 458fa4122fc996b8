"""Public reports built from the audit chain: the transparency report (issue 14).

report = build_report(records, store, Period(first, last), now_ms)  # verifies first
html = render_html(report)      # one file, charts inline; also render_json, render_csv
await console_report(review_service, query)   # the console's fragment (render_fragment)

``records`` is the whole ``i24.audit`` topic (:func:`read_audit`); a chain that
fails verification raises :class:`~i24net.errors.UnverifiedAuditError` and
nothing is reported. The report is aggregates over enumerated fields only, and
the renderers withhold small cells (``_public.py``); docs/transparency.md
describes every table and the method.
"""

from __future__ import annotations

from i24net.report._build import (
    OUTCOMES,
    AuditSummary,
    OtherGrounds,
    Period,
    Table,
    TransparencyReport,
    Turnaround,
    build_report,
    verified_records,
)
from i24net.report._console import console_report
from i24net.report._public import SMALL_CELL, PublicReport, PublicTable, publish
from i24net.report._render import render_csv, render_fragment, render_html, render_json
from i24net.report._source import read_audit

__all__ = [
    "OUTCOMES",
    "SMALL_CELL",
    "AuditSummary",
    "OtherGrounds",
    "Period",
    "PublicReport",
    "PublicTable",
    "Table",
    "TransparencyReport",
    "Turnaround",
    "build_report",
    "console_report",
    "publish",
    "read_audit",
    "render_csv",
    "render_fragment",
    "render_html",
    "render_json",
    "verified_records",
]
