"""The transparency report in the review console (``/console/report``).

The console's page calls :func:`console_report` with its review service and the
request's query parameters (``from``, ``to``: UTC dates) and embeds the HTML
fragment it returns. Reading and verifying the whole audit topic takes a while
(about 80 µs a record here, plus a second for the charts), so the work runs in a
thread and the router's event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup, escape

from i24net.errors import I24Error
from i24net.report._build import Period, build_report
from i24net.report._render import render_fragment


def _form(first: dt.date, last: dt.date) -> str:
    return (
        '<form method="get" class="report-period">'
        f'<label>from <input type="date" name="from" value="{first.isoformat()}"></label> '
        f'<label>to <input type="date" name="to" value="{last.isoformat()}"></label> '
        '<button type="submit">Show</button></form>'
    )


def _period(params: Mapping[str, str], today: dt.date) -> Period:
    """From the query (``from``, ``to``); by default the year so far."""
    first = params.get("from") or dt.date(today.year, 1, 1).isoformat()
    last = params.get("to") or today.isoformat()
    try:
        return Period(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    except ValueError as exc:
        raise ValueError(f"not a period: {first} to {last} ({exc})") from None


async def console_report(svc: Any, params: Mapping[str, str]) -> Markup:
    """An HTML fragment (a period form, then the report or why there is none).

    ``svc`` is the router's ``ReviewService``: its ``app.conn`` reaches the broker,
    ``app.store`` decodes, ``settings.topics.audit`` names the topic, ``now()`` is
    the router's clock. A chain that fails verification yields its error, not figures.
    """
    from i24net.report import read_audit

    now_ms = int(svc.now())
    today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
    try:
        period = _period(params, today)
    except ValueError as exc:
        form = _form(dt.date(today.year, 1, 1), today)
        return Markup(form + f'<p class="report-error">{escape(str(exc))}</p>')
    form = _form(period.first, period.last)
    try:
        records = await read_audit(svc.app.conn, svc.settings.topics.audit)
        report = await asyncio.to_thread(build_report, records, svc.app.store, period, now_ms)
        html = await asyncio.to_thread(render_fragment, report)
    except I24Error as exc:
        return Markup(form + f'<p class="report-error">{escape(str(exc))}</p>')
    return Markup(form + html)
