"""PNG plots of one run (matplotlib, the ``bench`` extra; skipped when it is missing).

- ``throughput.png``: msgs/s of each stage and of the whole pipeline, bars,
  each labelled with its ratio to the plaintext relay baseline of the same run;
- ``latency.png``: p50 / p99 / p99.9 end to end against the offered load, with
  the targets at 50 % of the maximum and the saturated levels marked;
- ``cpu.png``: CPU milliseconds per end-to-end message, stacked by process
  (router, gateways, broker JVM; the load generator apart), trickle vs burst,
  with the targets (≤ 4 ms trickle, ≤ 3 ms burst).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def throughput_bars(result: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(label, msgs/s, group) for the bar chart, from the sections that ran."""
    s = result.get("sections", {})
    bars: list[tuple[str, float, str]] = []

    def add(label: str, value: Any, group: str) -> None:
        if isinstance(value, int | float) and value == value and value > 0:
            bars.append((label, float(value), group))

    t = s.get("transport", {})
    add("aiokafka\nproduce→consume", t.get("end_to_end_msgs_per_s"), "baseline")
    add(
        "batched relay\n(baseline)",
        s.get("relay_baseline", {}).get("relay_msgs_per_s"),
        "baseline",
    )
    add("exactly-once\nrelay", s.get("relay_eos", {}).get("relay_msgs_per_s"), "baseline")
    p = s.get("pipeline", {})
    add("i24net\nend to end", p.get("msgs_per_s"), "i24net")
    add("gateway\nHTTP intake", p.get("intake_msgs_per_s"), "stage")
    g = s.get("gateway", {})
    add("gateway\noutbox drain", g.get("drain_msgs_per_s"), "stage")
    add("gateway\ninbound store", g.get("inbound_msgs_per_s"), "stage")
    f = s.get("fairness", {})
    add("router\n(in-process)", f.get("router_single_msgs_per_s"), "stage")
    sc = s.get("scale", {})
    add("1 router\nprocess", sc.get("routers_1_msgs_per_s"), "stage")
    add("2 router\nprocesses", sc.get("routers_2_msgs_per_s"), "stage")
    return bars


def write(result: dict[str, Any], folder: Path, before: dict[str, Any] | None = None) -> list[Path]:
    """The PNGs of ``result``; with ``before`` (the code before a change, same bench),
    the latency and CPU plots show it beside this run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plots")
        return []
    written: list[Path] = []
    machine = result.get("machine", {})
    where = (
        f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores"
        f" — {result.get('started', '')}"
    )

    bars = throughput_bars(result)
    relay = result.get("sections", {}).get("relay_baseline", {}).get("relay_msgs_per_s")
    if bars:
        colors = {"baseline": "#8c8c8c", "i24net": "#d62728", "stage": "#1f77b4"}
        fig, ax = plt.subplots(figsize=(11, 5.5))
        xs = range(len(bars))
        ax.bar(xs, [b[1] for b in bars], color=[colors[b[2]] for b in bars])
        ax.set_xticks(list(xs), [b[0] for b in bars], fontsize=8.5)
        ax.set_ylabel("messages per second (1 KiB payloads)")
        ax.set_title(f"Throughput against the plaintext relay baseline\n{where}", fontsize=10)
        top = max(b[1] for b in bars)
        log = top / min(b[1] for b in bars) > 30  # keep the small bars visible
        for x, (_, v, _) in zip(xs, bars, strict=True):
            label = f"{v:,.0f}" if v >= 10 else f"{v:.1f}"
            if relay:
                label += f"\n{v / relay:.3g}×"
            y = v * 1.08 if log else v + top * 0.01
            ax.text(x, y, label, ha="center", va="bottom", fontsize=8)
        ax.axhline(300, color="#d62728", linestyle="--", linewidth=1)
        ax.text(
            len(bars) - 0.5,
            300,
            "target: 300 msgs/s end to end",
            ha="right",
            va="bottom",
            fontsize=8,
            color="#d62728",
        )
        if log:
            ax.set_yscale("log")
            ax.set_ylim(min(b[1] for b in bars) / 2, top * 4)
            ax.set_ylabel("messages per second (1 KiB payloads, log scale)")
        else:
            ax.set_ylim(0, top * 1.18)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = folder / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    levels = result.get("sections", {}).get("latency", {}).get("levels", [])
    if levels:
        fig, ax = plt.subplots(figsize=(8, 5))
        rates = [lv["target_rate"] for lv in levels]
        for key, label, style in (
            ("p50_ms", "p50", "o-"),
            ("p99_ms", "p99", "s-"),
            ("p999_ms", "p99.9", "^-"),
        ):
            ax.plot(rates, [lv[key] for lv in levels], style, label=label)
        for lv in levels:
            ax.annotate(
                f"{lv['fraction']:.0%}",
                (lv["target_rate"], lv["p50_ms"]),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=8,
            )
        old = (before or {}).get("sections", {}).get("latency", {}).get("levels", [])
        if old:
            old_rates = [lv["target_rate"] for lv in old]
            ax.plot(
                old_rates, [lv["p50_ms"] for lv in old], "o:", color="#9ecae1", label="p50 before"
            )
            ax.plot(
                old_rates, [lv["p99_ms"] for lv in old], "s:", color="#fdae6b", label="p99 before"
            )
        ax.axhline(
            50, color="#d62728", linestyle="--", linewidth=1, label="target p99 at 50 %: 50 ms"
        )
        ax.axhline(
            20, color="#ff7f0e", linestyle=":", linewidth=1, label="target p50 at 50 %: 20 ms"
        )
        for lv in levels:
            if lv.get("saturated"):
                ax.annotate(
                    "host saturated",
                    (lv["target_rate"], lv["p99_ms"]),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=8,
                    color="#d62728",
                )
        ax.set_yscale("log")
        ax.set_xlabel("offered load, messages per second (open loop; % of the measured maximum)")
        ax.set_ylabel("end-to-end latency, ms (log scale)")
        ax.set_title(f"Latency percentiles against load\n{where}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / "latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    stacks = paired_stacks(result, before)
    if stacks:
        names = [n for n, _ in stacks]
        colors = {
            "router": "#1f77b4",
            "gateway_FR": "#2ca02c",
            "gateway_JP": "#98df8a",
            "broker": "#ff7f0e",
            "loadgen": "#c7c7c7",
        }
        fig, ax = plt.subplots(figsize=(4 + 1.6 * len(stacks), 5))
        bottoms = [0.0] * len(stacks)
        for proc in ("router", "gateway_FR", "gateway_JP", "broker", "loadgen"):
            vals = [parts.get(proc, 0.0) for _, parts in stacks]
            label = proc + (" (load generator, not in the target)" if proc == "loadgen" else "")
            ax.bar(names, vals, bottom=bottoms, color=colors[proc], label=label)
            bottoms = [b + v for b, v in zip(bottoms, vals, strict=True)]
        for x, (_, parts) in enumerate(stacks):
            total = sum(v for k, v in parts.items() if k != "loadgen")
            ax.text(x, bottoms[x], f"{total:.1f} ms", ha="center", va="bottom", fontsize=9)
        for x, (name, _) in enumerate(stacks):
            target = 4.0 if name.startswith("trickle") else 3.0
            ax.hlines(target, x - 0.4, x + 0.4, colors="#d62728", linestyles="--")
        ax.set_ylabel("CPU ms per end-to-end message (stored at JP)")
        ax.set_title(
            f"CPU per message by process (dashed: target, without the load generator)\n{where}",
            fontsize=10,
        )
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = folder / "cpu.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def paired_stacks(
    result: dict[str, Any], before: dict[str, Any] | None
) -> list[tuple[str, dict[str, float]]]:
    """``cpu_stacks`` of this run, each phase preceded by the same phase *before*."""
    stacks = cpu_stacks(result)
    if before is None:
        return stacks
    old = dict(cpu_stacks(before))
    paired: list[tuple[str, dict[str, float]]] = []
    for name, parts in stacks:
        if name in old:
            paired.append((f"{name}\nbefore", old[name]))
        paired.append((f"{name}\nafter" if name in old else name, parts))
    return paired


def cpu_stacks(result: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(phase, {process: CPU ms per message}) for the trickle and the burst."""
    s = result.get("sections", {})
    out: list[tuple[str, dict[str, float]]] = []
    for name, key in (("trickle", "trickle"), ("burst", "pipeline")):
        phase = s.get(key)
        if not phase:
            continue
        parts: dict[str, float] = {}
        for proc in ("router", "gateway_FR", "gateway_JP", "broker", "loadgen"):
            v = phase.get(f"cpu_ms_per_msg_{proc}")
            if isinstance(v, int | float) and v == v:
                parts[proc] = float(v)
        if parts:
            rate = phase.get("target_rate")
            out.append((f"{name} {rate:g}/s" if rate else name, parts))
    return out
