"""Figures of several saved runs side by side, and their median:

    python -m bench.compare bench/results/A.json bench/results/B.json ...

On a shared host one run can be unlucky; the median of a few runs, with each
run's load average in the header, says more than any one of them. Rows are the
summary rows of ``bench.report.rows`` (matched by section and label).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.report import fmt, rows


def table(results: list[dict[str, Any]], names: list[str]) -> str:
    """A Markdown table: one column per run, then the median of the runs that have it."""
    order: list[tuple[str, str]] = []
    values: dict[tuple[str, str], list[float | None]] = {}
    units: dict[tuple[str, str], str] = {}
    for i, result in enumerate(results):
        for r in rows(result):
            key = (r.section, r.label)
            if key not in values:
                order.append(key)
                values[key] = [None] * len(results)
                units[key] = r.unit
            values[key][i] = r.value
    loads = [
        str(res.get("machine", {}).get("loadavg_at_start", "?")).split(" ")[0] for res in results
    ]
    head = [f"{n} (load {ld})" for n, ld in zip(names, loads, strict=True)]
    lines = [
        "| section | figure | unit | " + " | ".join(head) + " | median |",
        "|---|---|---|" + "---:|" * (len(results) + 1),
    ]
    for key in order:
        vs = values[key]
        known = [v for v in vs if v is not None]
        med = statistics.median(known) if known else None
        cells = [key[0], key[1], units[key], *(fmt(v) for v in vs), fmt(med)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    paths = [Path(a) for a in argv]
    results = [json.loads(p.read_text()) for p in paths]
    print(table(results, [p.stem for p in paths]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
