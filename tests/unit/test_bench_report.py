"""The pure parts of ``make bench``: percentiles, the open-loop schedule, /proc parsing,
the summary rows with targets and the generated docs (no broker)."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench/ package

from bench import plots, report
from bench.procstat import parse_stat_cpu
from bench.stats import open_loop_schedule, percentile, summarize


def test_percentile_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 1001)]  # 1..1000
    assert percentile(xs, 50) == 500
    assert percentile(xs, 99) == 990
    assert percentile(xs, 99.9) == 999
    assert percentile(xs, 100) == 1000
    assert percentile(xs, 0) == 1
    assert percentile(reversed(xs), 99) == 990  # order does not matter
    assert percentile([7.0], 99.9) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(xs, 101)


def test_summarize_small_sample_p999_is_the_max() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s == {"p50_ms": 3.0, "p99_ms": 5.0, "p999_ms": 5.0, "max_ms": 5.0}
    assert all(math.isnan(v) for v in summarize([]).values())


def test_open_loop_schedule_is_fixed_rate_independent_of_replies() -> None:
    offsets = open_loop_schedule(200, 2.5)
    assert len(offsets) == 500
    assert offsets[0] == 0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {0.005}
    assert offsets[-1] < 2.5
    assert open_loop_schedule(3, 1) == [0, 1 / 3, 2 / 3]
    assert len(open_loop_schedule(0.1, 1)) == 1  # at least one message
    with pytest.raises(ValueError):
        open_loop_schedule(0, 1)


def test_parse_stat_cpu_counts_after_the_command_name() -> None:
    # comm may hold spaces and parentheses; utime=250 and stime=50 ticks at 100 Hz
    fields = ["S", *["0"] * 10, "250", "50", *["0"] * 30]
    line = "1234 (python (x) y) " + " ".join(fields)
    assert parse_stat_cpu(line, ticks=100) == pytest.approx(3.0)


RESULT: dict[str, Any] = {
    "started": "2026-01-01T00:00:00Z",
    "mode": "full",
    "duration_s": 600.0,
    "machine": {
        "cpu_model": "Test CPU @ 2.0GHz",
        "cores": 2,
        "memory_gib": 8.0,
        "python": "3.11.7",
        "kafka": "4.1.1",
        "platform": "Linux",
        "commit": "abc1234",
    },
    "sections": {
        "crypto": {"seal_1k": 80.0, "open_1k": 120.0, "ratio_1k": 1.1},
        "transport": {"end_to_end_msgs_per_s": 6000.0, "latency_p99_ms": 30.0},
        "relay_baseline": {"relay_msgs_per_s": 1000.0},
        "pipeline": {
            "msgs_per_s": 400.0,
            "intake_msgs_per_s": 900.0,
            "cpu_s_per_1k_gateway_FR": 1.5,
            "cpu_s_per_1k_gateway_JP": 1.0,
            "cpu_s_per_1k_router": 2.0,
        },
        "broadcast": {"broadcasts_per_s": 25.0, "deliveries_per_s": 4875.0},
        "latency": {
            "max_rate": 400.0,
            "levels": [
                {
                    "fraction": f,
                    "target_rate": 400.0 * f,
                    "scheduled": 100,
                    "stored": 100,
                    "p50_ms": 5.0 * (i + 1),
                    "p99_ms": 20.0 * (i + 1),
                    "p999_ms": 30.0 * (i + 1),
                    "max_ms": 40.0 * (i + 1),
                }
                for i, f in enumerate((0.25, 0.5, 0.9))
            ],
        },
        "fairness": {
            "router_quiet_p99_ms_alone": 10.0,
            "router_quiet_p99_ms_flood": 30.0,
            "router_quiet_p99_ratio_flood_vs_alone": 3.0,
        },
        "scale": {"routers_1_msgs_per_s": 500.0, "routers_2_msgs_per_s": 600.0, "speedup": 1.2},
        "resources": {
            "peak_rss_mib_gateway_FR": 90.0,
            "peak_rss_mib_gateway_JP": 160.0,
            "peak_rss_mib_router": 120.0,
        },
    },
}


def _row(label: str) -> report.Row:
    return next(r for r in report.rows(RESULT) if r.label == label)


def test_rows_apply_the_issue_targets() -> None:
    ratio = _row("end to end / relay baseline")
    assert ratio.value == pytest.approx(0.4) and ratio.status == "MISS" and ratio.target == "≥ 0.5"
    assert _row("broadcasts to 195 stations").status == "PASS"
    p99 = [r for r in report.rows(RESULT) if r.label.startswith("p99 at")]
    assert [r.status for r in p99] == ["", "MISS", ""]  # only the 50 % level has a target
    assert _row("p99 ratio flood / alone").status == "MISS"
    assert _row("gateway peak RSS (FR, JP: max)").value == 160.0
    assert _row("gateway peak RSS (FR, JP: max)").status == "MISS"
    assert _row("router peak RSS").status == "PASS"
    assert {r.label for r in report.misses(RESULT)} == {
        "end to end / relay baseline",
        "p99 at 50% load (200/s)",
        "p99 ratio flood / alone",
        "gateway peak RSS (FR, JP: max)",
    }


def test_sections_not_run_give_no_rows_and_nan_gives_no_verdict() -> None:
    assert report.rows({"sections": {}}) == []
    r = report.rows({"sections": {"broadcast": {"broadcasts_per_s": float("nan")}}})
    assert r[0].value is None and r[0].status == ""


def test_table_and_markdown_render_the_fixed_result() -> None:
    text = report.table(RESULT)
    assert "end to end / relay baseline" in text and "MISS" in text and "PASS" in text
    md = report.markdown(RESULT, analysis="The router is the bottleneck.")
    assert md.startswith("# Benchmarks")
    assert "| CPU | Test CPU @ 2.0GHz |" in md
    assert "| Kafka | 4.1.1" in md
    assert "| pipeline | end to end / relay baseline | 0.40 | × | ≥ 0.5 | MISS |" in md
    assert "| 50% | 200 | 100 | 100 | 10.0 | 40.0 | 60.0 | 80.0 |" in md
    assert "## Analysis" in md and "The router is the bottleneck." in md
    assert "- fairness: p99 ratio flood / alone = 3.00 × (target ≤ 2)" in md


def test_throughput_bars_cover_the_sections_that_ran() -> None:
    bars = plots.throughput_bars(RESULT)
    labels = [b[0] for b in bars]
    assert labels[:3] == [
        "aiokafka\nproduce→consume",
        "plaintext relay\n(baseline)",
        "i24net\nend to end",
    ]
    assert ("2 router\nprocesses", 600.0, "stage") in bars
    assert plots.throughput_bars({"sections": {}}) == []
