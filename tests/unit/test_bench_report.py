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


def _phase(total: float, **extra: Any) -> dict[str, Any]:
    """A phase's CPU figures: router 40 %, FR 20 %, JP 10 %, broker 30 % of ``total``."""
    return {
        "cpu_ms_per_msg_router": 0.4 * total,
        "cpu_ms_per_msg_gateway_FR": 0.2 * total,
        "cpu_ms_per_msg_gateway_JP": 0.1 * total,
        "cpu_ms_per_msg_broker": 0.3 * total,
        "cpu_ms_per_msg_loadgen": 1.0,
        "cpu_ms_per_msg_total": total,
        "cpu_share_ours": 0.5,
        "cpu_share_host": 0.6,
        "saturated": False,
        **extra,
    }


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
        "loadavg_at_start": "0.50 0.40 0.30",
        "loadavg_at_end": "1.50 0.60 0.40",
    },
    "sections": {
        "crypto": {"seal_1k": 80.0, "open_1k": 120.0, "ratio_1k": 1.1},
        "transport": {"end_to_end_msgs_per_s": 6000.0, "latency_p99_ms": 30.0},
        "relay_baseline": {"relay_msgs_per_s": 1000.0, "cpu_ms_per_msg_relay": 0.05},
        "idle": {"cpu_pct_router": 12.5, "cpu_pct_broker": 30.0, "wall_s": 5.0},
        "trickle": _phase(5.0, target_rate=30.0, messages=600, p50_ms=12.0, p99_ms=40.0),
        "pipeline": _phase(
            2.5,
            msgs_per_s=400.0,
            intake_msgs_per_s=900.0,
            messages=1000,
            saturated=True,
            cpu_share_host=0.95,
        ),
        "broadcast": {
            "broadcasts_per_s": 25.0,
            "deliveries_per_s": 4875.0,
            "last_recipient_ms": 170.0,
        },
        "latency": {
            "max_rate": 400.0,
            "levels": [
                _phase(
                    3.0,
                    fraction=f,
                    target_rate=400.0 * f,
                    scheduled=100,
                    stored=100,
                    p50_ms=5.0 * (i + 1),
                    p99_ms=20.0 * (i + 1) + 15,
                    p999_ms=30.0 * (i + 1),
                    max_ms=40.0 * (i + 1),
                    saturated=f > 0.8,
                    loadavg="0.5 → 0.6",
                )
                for i, f in enumerate((0.25, 0.5, 0.9))
            ],
        },
        "fairness": {
            "router_quiet_window_s": 15.0,
            "router_flood_drained": True,
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


def _row(label: str, result: dict[str, Any] = RESULT) -> report.Row:
    return next(r for r in report.rows(result) if r.label == label)


def test_rows_apply_the_issue_targets() -> None:
    trickle, burst = (
        r for r in report.rows(RESULT) if r.label == "CPU per message, router + gateways + broker"
    )
    assert (trickle.section, trickle.value, trickle.target, trickle.status) == (
        "trickle",
        5.0,
        "≤ 4",
        "MISS",
    )
    assert (burst.section, burst.value, burst.target, burst.status) == (
        "pipeline",
        2.5,
        "≤ 3",
        "PASS",
    )
    rate = _row("i24net end to end, burst (stored at JP)")
    assert rate.status == "PASS" and rate.target == "≥ 300"
    assert _row("end to end / relay baseline").value == pytest.approx(0.4)
    assert _row("end to end / relay baseline").status == ""  # reported beside, no target
    assert _row("broadcasts to 195 stations").status == "PASS"
    assert _row("one broadcast alone: last recipient stored").status == "MISS"  # 170 > 150
    lat = [r for r in report.rows(RESULT) if r.section == "latency"]
    p50 = [r for r in lat if r.label.startswith("p50 at")]
    p99 = [r for r in lat if r.label.startswith("p99 at")]
    assert [r.status for r in p50] == ["", "PASS", ""]  # only the 50 % level has targets
    assert [r.status for r in p99] == ["", "MISS", ""]  # 55 ms at 50 %: the target is 50
    assert _row("p99 at 50% of max").value == 55.0 and _row("p99 at 50% of max").target == "≤ 50"
    assert _row("p99 ratio flood / alone").status == "MISS"
    assert _row("gateway peak RSS (FR, JP: max)").value == 160.0
    assert _row("router peak RSS").status == "PASS"
    assert {r.label for r in report.misses(RESULT)} == {
        "CPU per message, router + gateways + broker",
        "one broadcast alone: last recipient stored",
        "p99 at 50% of max",
        "p99 ratio flood / alone",
        "gateway peak RSS (FR, JP: max)",
    }


def test_saturated_phases_carry_a_note_and_old_results_still_render() -> None:
    burst = [r for r in report.rows(RESULT) if r.section == "pipeline"]
    assert all("saturated" in r.note for r in burst if r.target)
    assert "host busy 95%" in burst[0].note
    assert _row("p99 at 90% of max").note.startswith("host CPU-saturated")
    assert _row("p99 at 25% of max").note == ""
    # a result of the old bench: CPU seconds per 1,000 messages, no broker, old fairness
    old = {
        "sections": {
            "pipeline": {
                "msgs_per_s": 38.8,
                "cpu_s_per_1k_router": 10.0,
                "cpu_s_per_1k_gateway_FR": 7.0,
                "cpu_s_per_1k_gateway_JP": 3.0,
            },
            "fairness": {"router_quiet_p99_ratio_flood_vs_alone": 0.039},
        }
    }
    total = _row("CPU per message, router + gateways + broker", old)
    assert total.value == pytest.approx(20.0) and "without the broker" in total.note
    assert _row("CPU per message: router", old).value == 10.0
    assert "old method" in _row("p99 ratio flood / alone", old).note


def test_idle_rows_are_per_process_share_of_a_core() -> None:
    idle = [r for r in report.rows(RESULT) if r.section == "idle"]
    assert [(r.label, r.value, r.unit) for r in idle] == [
        ("CPU with no traffic: router", 12.5, "% core"),
        ("CPU with no traffic: broker", 30.0, "% core"),
    ]


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
    assert "| pipeline | end to end / relay baseline | 0.40 | × |  |  |  |" in md
    assert "| 50% | 200 | 100 | 100 | 10.0 | 55.0 | 60.0 | 80.0 | 3.00 | 60% | 0.5 → 0.6 |" in md
    assert "| 90% | 360 |" in md and "(saturated)" in md
    assert "| burst | 1000 | 1.00 | 0.50 | 0.25 | 0.75 | 1.00 | 2.50 | 95% |" in md
    assert "## Analysis" in md and "The router is the bottleneck." in md
    assert "- fairness: p99 ratio flood / alone = 3.00 × (target ≤ 2)" in md


def test_summary_markdown_puts_the_run_before_beside_this_one() -> None:
    before = {
        "machine": {"commit": "old0001"},
        "sections": {"pipeline": {"msgs_per_s": 38.8, "cpu_ms_per_msg_total": 44.0}},
    }
    md = report.summary_markdown(RESULT, before)
    assert md.splitlines()[0].startswith("| section | figure | before | value |")
    assert "| pipeline | i24net end to end, burst (stored at JP) | 38.8 | 400 | msgs/s |" in md
    assert "| pipeline | CPU per message, router + gateways + broker | 44.0 | 2.50 | ms |" in md
    assert "| trickle | CPU per message, router + gateways + broker | — | 5.00 |" in md
    assert "before" not in report.summary_markdown(RESULT).splitlines()[0]
    full = report.markdown(RESULT, before=before)
    assert "*before*: `old0001`" in full


def test_throughput_bars_cover_the_sections_that_ran() -> None:
    bars = plots.throughput_bars(RESULT)
    labels = [b[0] for b in bars]
    assert labels[:3] == [
        "aiokafka\nproduce→consume",
        "batched relay\n(baseline)",
        "i24net\nend to end",
    ]
    assert ("2 router\nprocesses", 600.0, "stage") in bars
    assert plots.throughput_bars({"sections": {}}) == []


def test_cpu_stacks_are_per_process_and_phase() -> None:
    stacks = dict(plots.cpu_stacks(RESULT))
    assert set(stacks) == {"trickle 30/s", "burst"}
    assert stacks["burst"] == pytest.approx(
        {"router": 1.0, "gateway_FR": 0.5, "gateway_JP": 0.25, "broker": 0.75, "loadgen": 1.0}
    )
    assert plots.cpu_stacks({"sections": {}}) == []


def test_compare_puts_runs_side_by_side_with_their_median() -> None:
    from bench import compare

    def run(rate: float, load: str) -> dict[str, Any]:
        return {
            "machine": {"loadavg_at_start": f"{load} 1.0 1.0"},
            "sections": {"pipeline": {"msgs_per_s": rate}},
        }

    md = compare.table([run(40.0, "9.5"), run(100.0, "2.0"), run(60.0, "4.1")], ["a", "b", "c"])
    lines = md.splitlines()
    assert lines[0].startswith("| section | figure | unit | a (load 9.5) | b (load 2.0) |")
    row = next(x for x in lines if "i24net end to end, burst" in x)
    assert row.endswith("| 40.0 | 100 | 60.0 | 60.0 |")  # the median, not the mean (66.7)
    # a figure only some runs have: a dash where missing, the median of the others
    md2 = compare.table([run(40.0, "1"), {"sections": {}}], ["a", "b"])
    assert next(x for x in md2.splitlines() if "burst" in x).endswith("| 40.0 | — | 40.0 |")


def test_cpu_stacks_pair_each_phase_with_the_run_before() -> None:
    before = {"sections": {"pipeline": _phase(10.0)}}  # no trickle in the run before
    names = [n for n, _ in plots.paired_stacks(RESULT, before)]
    assert names == ["trickle 30/s", "burst\nbefore", "burst\nafter"]
    assert dict(plots.paired_stacks(RESULT, before))["burst\nbefore"]["router"] == 4.0
    assert plots.paired_stacks(RESULT, None) == plots.cpu_stacks(RESULT)
