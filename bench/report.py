"""The figures of one ``make bench`` run: summary rows with targets, the terminal
table and ``docs/benchmarks.md`` (pure functions of the result dict; no broker).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procstat import cpu_model, memory_gib

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    section: str
    label: str
    value: float | None
    unit: str
    target: str = ""
    status: str = ""  # PASS, MISS or "" (no target, or not measured)
    note: str = ""  # e.g. the host was saturated: the figure measures queueing


def _get(d: dict[str, Any], *path: str) -> Any:
    node: Any = d
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return None
    return None if math.isnan(x) else float(x)


def _check(value: float | None, op: str, limit: float) -> str:
    if value is None:
        return ""
    return "PASS" if (value >= limit if op == ">=" else value <= limit) else "MISS"


def machine(kafka_version: str | None = None) -> dict[str, Any]:
    if kafka_version is None:
        try:
            from i24net.kafka.dist import pom_kafka_version

            kafka_version = pom_kafka_version(ROOT / "deploy" / "kafka" / "pom.xml")
        except Exception:
            kafka_version = "unknown"
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib(), 1),
        "python": platform.python_version(),
        "kafka": kafka_version,
        "platform": platform.platform(),
        "commit": _commit(_code_root()),
        "bench_commit": _commit(ROOT),
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> str:
    """The 1/5/15-minute load averages: the host may be shared with other work."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _code_root() -> Path:
    """The checkout of the code under test (``PYTHONPATH=<worktree>/src`` measures a
    worktree with this bench): the commit in the docs is that code's."""
    try:
        import i24net

        return Path(i24net.__file__).resolve().parents[2]
    except ImportError:
        return ROOT


def _commit(where: Path = ROOT) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The targets (issue 12), in one place: (op, limit).
TARGETS: dict[str, tuple[str, float]] = {
    "trickle_cpu": ("<=", 4.0),  # ms of service CPU per message, open loop at 30 msgs/s
    "burst_cpu": ("<=", 3.0),  # ms of service CPU per message, burst
    "burst_rate": (">=", 300.0),  # msgs/s end to end
    "p50_at_half": ("<=", 20.0),  # ms, open loop at 50 % of the maximum
    "p99_at_half": ("<=", 50.0),
    "broadcasts": (">=", 20.0),  # /s, to 195 stations
    "broadcast_alone": ("<=", 150.0),  # ms, last recipient, a broadcast sent alone
    "fairness": ("<=", 2.0),  # quiet p99 during a flood / alone
    "gateway_rss": ("<=", 150.0),
    "router_rss": ("<=", 300.0),
}
PROCESSES = ("router", "gateway_FR", "gateway_JP", "broker", "loadgen")


def cpu_per_msg(phase: dict[str, Any], name: str) -> float | None:
    """CPU ms per message of one process in a phase; older results stored CPU
    seconds per 1,000 messages, the same number under another name."""
    v = _num(phase.get(f"cpu_ms_per_msg_{name}"))
    return v if v is not None else _num(phase.get(f"cpu_s_per_1k_{name}"))


def saturation_note(phase: dict[str, Any]) -> str:
    """``saturated`` (with the host's busy share) when a phase measured queueing."""
    if not phase.get("saturated"):
        return ""
    host, ours = _num(phase.get("cpu_share_host")), _num(phase.get("cpu_share_ours"))
    shares = ", ".join(
        f"{k} {v:.0%}" for k, v in (("host busy", host), ("ours", ours)) if v is not None
    )
    return f"host CPU-saturated ({shares}): queueing, not the design"


def rows(result: dict[str, Any]) -> list[Row]:
    """The summary, in report order; a section that did not run gives no rows."""
    s = result.get("sections", {})
    out: list[Row] = []

    def add(
        section: str,
        label: str,
        value: Any,
        unit: str,
        target: tuple[str, float] | None = None,
        note: str = "",
    ) -> None:
        v = _num(value)
        if target is None:
            out.append(Row(section, label, v, unit, note=note))
        else:
            op, limit = target
            shown = f"{'≥' if op == '>=' else '≤'} {limit:g}"
            out.append(Row(section, label, v, unit, shown, _check(v, op, limit), note))

    def cpu_rows(section: str, phase: dict[str, Any], target: tuple[str, float] | None) -> None:
        note = saturation_note(phase)
        total = _num(phase.get("cpu_ms_per_msg_total"))
        if total is None:  # an older result: the services it measured (no broker)
            parts = [cpu_per_msg(phase, p) for p in ("router", "gateway_FR", "gateway_JP")]
            if all(x is not None for x in parts):
                total = sum(x for x in parts if x is not None)
                note = (note + "; " if note else "") + "without the broker (not measured)"
        add(section, "CPU per message, router + gateways + broker", total, "ms", target, note)
        for name in PROCESSES:
            v = cpu_per_msg(phase, name)
            if v is not None:
                add(section, f"CPU per message: {name}", v, "ms")

    if c := s.get("crypto"):
        add("crypto", "seal, 1 KiB", c.get("seal_1k"), "µs")
        add(
            "crypto",
            "router open + deliver to 1, 1 KiB",
            _sum(c, "route_open_1k", "route_deliver1_1k"),
            "µs",
        )
        add("crypto", "open (verify + decrypt), 1 KiB", c.get("open_1k"), "µs")
        add("crypto", "(seal + open) / primitives, 1 KiB", c.get("ratio_1k"), "×")
        add(
            "crypto",
            "broadcast to 195, per recipient",
            c.get("broadcast195_1k_per_recipient"),
            "µs",
        )
        # envelope v1 against v2 in both KEM suites (issue 17; docs/envelope.md part 2)
        for tag, suite in (("", "v1"), ("v2x_", "v2 X25519"), ("v2h_", "v2 ML-KEM-768+X25519")):
            if c.get(f"{tag}open_1k") is None:
                continue
            if tag:
                add("crypto", f"{suite}: seal, 1 KiB", c.get(f"{tag}seal_1k"), "µs")
                add(
                    "crypto",
                    f"{suite}: router open + deliver to 1, 1 KiB",
                    _sum(c, f"{tag}route_open_1k", f"{tag}route_deliver1_1k"),
                    "µs",
                )
                add("crypto", f"{suite}: open, 1 KiB", c.get(f"{tag}open_1k"), "µs")
            add(
                "crypto",
                f"{suite}: router deliver, broadcast to 195",
                c.get(f"{tag}broadcast195_1k_total"),
                "µs",
            )
            add("crypto", f"{suite}: bytes, sender envelope", c.get(f"{tag}bytes_sender_1k"), "B")
            add("crypto", f"{suite}: bytes, one delivery", c.get(f"{tag}bytes_delivery_1k"), "B")
        if c.get("mldsa65_sign") is not None:
            add(
                "crypto",
                "ML-DSA-65 sign (not offered: docs/envelope.md P2.7)",
                c.get("mldsa65_sign"),
                "µs",
                note=f"verify {_num(c.get('mldsa65_verify')) or 0:.0f} µs, "
                f"{_num(c.get('mldsa65_signature_bytes')) or 0:.0f} B per signature",
            )
    if t := s.get("transport"):
        add("transport", "aiokafka produce → consume", t.get("end_to_end_msgs_per_s"), "msgs/s")
        add("transport", "produce → consume p99", t.get("latency_p99_ms"), "ms")
    relay = _num(_get(s, "relay_baseline", "relay_msgs_per_s"))
    if relay is not None:
        add("transport", "relay baseline (batched consume → produce)", relay, "msgs/s")
        rb = s["relay_baseline"]
        add("transport", "relay CPU per message: relay", rb.get("cpu_ms_per_msg_relay"), "ms")
        add("transport", "relay CPU per message: broker", rb.get("cpu_ms_per_msg_broker"), "ms")
    if eos := s.get("relay_eos"):
        add(
            "transport",
            "exactly-once relay (500 per transaction)",
            eos.get("relay_msgs_per_s"),
            "msgs/s",
        )
        add(
            "transport", "EOS relay CPU per message: broker", eos.get("cpu_ms_per_msg_broker"), "ms"
        )
    if idl := s.get("idle"):
        for name in PROCESSES:
            if f"cpu_pct_{name}" in idl:
                add("idle", f"CPU with no traffic: {name}", idl[f"cpu_pct_{name}"], "% core")
    if tr := s.get("trickle"):
        trate = _num(tr.get("target_rate")) or 0.0
        cpu_rows("trickle", tr, TARGETS["trickle_cpu"])
        add("trickle", f"p50 at {trate:g} msgs/s open loop", tr.get("p50_ms"), "ms")
        add("trickle", f"p99 at {trate:g} msgs/s open loop", tr.get("p99_ms"), "ms")
    if p := s.get("pipeline"):
        rate = _num(p.get("msgs_per_s"))
        add(
            "pipeline",
            "i24net end to end, burst (stored at JP)",
            rate,
            "msgs/s",
            TARGETS["burst_rate"],
            saturation_note(p),
        )
        ratio = rate / relay if rate is not None and relay else None
        add("pipeline", "end to end / relay baseline", ratio, "×")
        add("pipeline", "integrator intake (HTTP POST)", p.get("intake_msgs_per_s"), "msgs/s")
        cpu_rows("pipeline", p, TARGETS["burst_cpu"])
    if lat := s.get("latency"):
        add("latency", "maximum rate (the burst's)", lat.get("max_rate"), "msgs/s")
        for lv in lat.get("levels", []):
            pct = f"{lv['fraction']:.0%} of max"
            half = abs(lv["fraction"] - 0.5) < 1e-9
            note = saturation_note(lv)
            add("latency", f"offered rate at {pct}", lv.get("target_rate"), "msgs/s")
            add(
                "latency",
                f"p50 at {pct}",
                lv.get("p50_ms"),
                "ms",
                TARGETS["p50_at_half"] if half else None,
                note,
            )
            add(
                "latency",
                f"p99 at {pct}",
                lv.get("p99_ms"),
                "ms",
                TARGETS["p99_at_half"] if half else None,
                note,
            )
            if "cpu_ms_per_msg_total" in lv:
                add("latency", f"CPU per message at {pct}", lv["cpu_ms_per_msg_total"], "ms")
    if b := s.get("broadcast"):
        versions = b.get("envelope_versions")
        envelope = (
            "deliveries in "
            + ", ".join(f"{k} ×{n}" for k, n in sorted(versions.items()))
            + (f" ({b['kem_suite']})" if b.get("kem_suite") else "")
            if versions
            else ""
        )
        add(
            "broadcast",
            "broadcasts to 195 stations",
            b.get("broadcasts_per_s"),
            "/s",
            TARGETS["broadcasts"],
            envelope,
        )
        add("broadcast", "deliveries", b.get("deliveries_per_s"), "/s")
        if "burst_cpu_ms_per_msg_total" in b:
            add(
                "broadcast",
                "CPU per broadcast, router + gateways + broker",
                b["burst_cpu_ms_per_msg_total"],
                "ms",
                note=saturation_note(b),
            )
            for k in sorted(b):
                if k.startswith("burst_cpu_ms_per_msg_") and k != "burst_cpu_ms_per_msg_total":
                    who = k.removeprefix("burst_cpu_ms_per_msg_")
                    add("broadcast", f"CPU per broadcast: {who}", b[k], "ms")
        add(
            "broadcast",
            "one broadcast alone: last recipient stored",
            b.get("last_recipient_ms"),
            "ms",
            TARGETS["broadcast_alone"],
        )
    if f := s.get("fairness"):
        short = ""
        if "router_quiet_window_s" not in f:
            short = "old method: fresh router per window, start-up counted in 'alone'"
        elif f.get("router_flood_drained", True) is not True:
            short = "the flood was not drained within the wait"
        add("fairness", "quiet station p99 alone", f.get("router_quiet_p99_ms_alone"), "ms")
        add(
            "fairness", "quiet station p99 during a flood", f.get("router_quiet_p99_ms_flood"), "ms"
        )
        add(
            "fairness",
            "p99 ratio flood / alone",
            f.get("router_quiet_p99_ratio_flood_vs_alone"),
            "×",
            TARGETS["fairness"],
            short,
        )
        add(
            "fairness",
            "router alone (in-process), 1 recipient",
            f.get("router_single_msgs_per_s"),
            "msgs/s",
        )
        add("fairness", "router alone, broadcasts to 195", f.get("router_broadcasts_per_s"), "/s")
    if sc := s.get("scale"):
        add("scale", "1 router process", sc.get("routers_1_msgs_per_s"), "msgs/s")
        add("scale", "2 router processes, same group", sc.get("routers_2_msgs_per_s"), "msgs/s")
        add("scale", "speed-up 2 vs 1", sc.get("speedup"), "×")
    if r := s.get("resources"):
        gw = [_num(r.get(f"peak_rss_mib_gateway_{c}")) for c in ("FR", "JP")]
        gw_ok = [x for x in gw if x is not None]
        add(
            "resources",
            "gateway peak RSS (FR, JP: max)",
            max(gw_ok) if gw_ok else None,
            "MiB",
            TARGETS["gateway_rss"],
        )
        add(
            "resources",
            "router peak RSS",
            r.get("peak_rss_mib_router"),
            "MiB",
            TARGETS["router_rss"],
        )
    if g := s.get("gateway"):
        add("gateway", "intake (HTTP, in-process)", g.get("intake_rps"), "msgs/s")
        add("gateway", "outbox drain", g.get("drain_msgs_per_s"), "msgs/s")
        add("gateway", "inbound verify + store", g.get("inbound_msgs_per_s"), "msgs/s")
    if scr := s.get("screen"):
        for lang, v in scr.items():
            add("screen", f"content screen, {lang}", v, "ms/KiB")
    if sec := s.get("secured"):
        add("secured", "plaintext listener", sec.get("plaintext_end_to_end_msgs_per_s"), "msgs/s")
        add(
            "secured", "SASL_SSL (TLS + SCRAM)", sec.get("sasl_ssl_end_to_end_msgs_per_s"), "msgs/s"
        )
        add("secured", "SASL_SSL / plaintext", sec.get("sasl_ssl_vs_plaintext_throughput"), "×")
    return out


def _sum(d: dict[str, Any], *keys: str) -> float | None:
    vals = [_num(d.get(k)) for k in keys]
    return None if any(v is None for v in vals) else sum(v for v in vals if v is not None)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if 0 < abs(value) < 0.1:
        return f"{value:.2g}"
    return f"{value:.2f}"


def table(result: dict[str, Any]) -> str:
    """The terminal table."""
    rs = rows(result)
    w = max([len(r.label) for r in rs] + [20])
    lines = [f"{'section':<10} {'figure':<{w}} {'value':>12} {'unit':<7} {'target':<8} result"]
    lines.append("-" * len(lines[0]))
    for r in rs:
        note = f"  ({r.note})" if r.note else ""
        lines.append(
            f"{r.section:<10} {r.label:<{w}} {fmt(r.value):>12} {r.unit:<7} "
            f"{r.target:<8} {r.status}{note}"
        )
    return "\n".join(lines)


def misses(result: dict[str, Any]) -> list[Row]:
    return [r for r in rows(result) if r.status == "MISS"]


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _run_label(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    return (
        f"`{m.get('commit', '?')}`, {result.get('started', '?')}, "
        f"load {m.get('loadavg_at_start', '?')} → {m.get('loadavg_at_end', '?')}"
    )


def summary_markdown(result: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The summary table in Markdown, with a *before* column when a result of
    the code before the change is given (rows matched by section and label);
    printed at the end of every run so that it can be pasted into the docs."""
    prior = {(r.section, r.label): r for r in rows(before)} if before else {}
    head = "| section | figure | "
    if before is not None:
        head += "before | "
    lines = [
        head + "value | unit | target | result | note |",
        "|---|---|" + ("---:|" if before is not None else "") + "---:|---|---|---|---|",
    ]
    for r in rows(result):
        cells = [r.section, _md_escape(r.label)]
        if before is not None:
            b = prior.get((r.section, r.label))
            cells.append(fmt(b.value) if b else "—")
        cells += [fmt(r.value), r.unit, r.target, r.status, _md_escape(r.note)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(
    result: dict[str, Any], analysis: str = "", before: dict[str, Any] | None = None
) -> str:
    """``docs/benchmarks.md`` for one run (and the run *before*, when given)."""
    m = result.get("machine", {})
    mode = result.get("mode", "full")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench` (python -m bench) from bench/results/latest.json;"
        " edit bench/report.py or bench/analysis.md, not this file. -->",
        "",
        f"Run of {result.get('started', '?')} ({mode} run, "
        f"{_duration(result.get('duration_s'))}), commit `{m.get('commit', '?')}`.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m.get('cpu_model', '?')} |",
        f"| cores | {m.get('cores', '?')} |",
        f"| memory | {m.get('memory_gib', '?')} GiB |",
        f"| Python | {m.get('python', '?')} |",
        f"| Kafka | {m.get('kafka', '?')} (one local KRaft broker, loopback, plaintext"
        " unless stated) |",
        f"| OS | {m.get('platform', '?')} |",
        f"| load average (1/5/15 min) | at start {m.get('loadavg_at_start', '?')}, "
        f"at end {m.get('loadavg_at_end', '?')} |",
        "",
        "Everything runs on this one machine at once: the broker, the gateway and",
        "router processes and the load generator share its cores. CPU per message",
        "is the figure the machine's other work moves least; a phase during which",
        "the host's cores were ≥ 90 % busy is flagged *saturated*: its latency is",
        "time spent waiting for a core, not the design's.",
        "",
        "## Summary",
        "",
    ]
    if before is not None:
        lines += [f"*before*: {_run_label(before)}; this run: {_run_label(result)}.", ""]
    lines.append(summary_markdown(result, before))
    missed = misses(result)
    lines += ["", "## Targets missed", ""]
    if missed:
        lines += [
            f"- {r.section}: {r.label} = {fmt(r.value)} {r.unit} (target {r.target})"
            + (f"; {r.note}" if r.note else "")
            for r in missed
        ]
    else:
        lines.append("None in this run.")
    phases = _cpu_phases(result)
    if phases:
        lines += [
            "",
            "## CPU per end-to-end message, by process",
            "",
            "`/proc/<pid>/stat` utime + stime of each process at the start and the end",
            "of each phase, divided by the messages stored at JP in it (ms). *total* is",
            "router + both gateways + the broker JVM (the target's sum); the load",
            "generator (the bench process: HTTP client and inbox long-poll) is shown",
            "apart. *host busy*: the whole machine's busy share over the phase.",
            "",
            "| phase | msgs | " + " | ".join(PROCESSES) + " | total | host busy | note |",
            "|---|---:|" + "---:|" * (len(PROCESSES) + 2) + "---|",
        ]
        for name, ph in phases:
            cells = [name, str(ph.get("messages", ph.get("stored", "?")))]
            cells += [fmt(cpu_per_msg(ph, p)) for p in PROCESSES]
            cells.append(fmt(_num(ph.get("cpu_ms_per_msg_total"))))
            host = _num(ph.get("cpu_share_host"))
            cells.append("—" if host is None else f"{host:.0%}")
            cells.append(saturation_note(ph))
            lines.append("| " + " | ".join(cells) + " |")
    lat = _get(result, "sections", "latency", "levels")
    if lat:
        lines += [
            "",
            "## Latency under open-loop load",
            "",
            "Messages are sent on a fixed schedule (rate × duration), never waiting for",
            "earlier replies; latency runs from each message's scheduled send time to",
            "its storage in the JP gateway's inbox (`received_ms`), so queueing in the",
            "generator, the HTTP intake, the outbox, the router or the inbound stream",
            "all count (no coordinated omission).",
            "",
            "| load | rate (msgs/s) | sent | stored | p50 ms | p99 ms | p99.9 ms | max ms "
            "| CPU ms/msg | host busy | load average |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for lv in lat:
            host = _num(lv.get("cpu_share_host"))
            busy = (
                "—"
                if host is None
                else f"{host:.0%}" + (" (saturated)" if lv.get("saturated") else "")
            )
            lines.append(
                f"| {lv['fraction']:.0%} | {fmt(lv['target_rate'])} | {lv['scheduled']} | "
                f"{lv['stored']} | {fmt(lv['p50_ms'])} | {fmt(lv['p99_ms'])} | "
                f"{fmt(lv['p999_ms'])} | {fmt(lv['max_ms'])} | "
                f"{fmt(_num(lv.get('cpu_ms_per_msg_total')))} | {busy} | {lv.get('loadavg', '—')} |"
            )
    if any((ROOT / "docs" / "img" / f"bench-{n}.png").exists() for n in PLOTS):
        lines += ["", "## Plots", ""]
        lines += [
            f"![{title}](img/bench-{n}.png)"
            for n, title in PLOTS.items()
            if (ROOT / "docs" / "img" / f"bench-{n}.png").exists()
        ]
    lines += ["", "## How each figure is measured", "", *METHOD, ""]
    lines += ["## Details (raw figures of each section)", ""]
    for name, sec in result.get("sections", {}).items():
        flat = _flatten(sec)
        if not flat:
            continue
        lines += [f"### {name}", "", "| key | value |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in flat]
        lines.append("")
    if analysis.strip():
        lines += ["## Analysis", "", analysis.strip(), ""]
    lines += [
        "## Reproduce",
        "",
        "```",
        "make bench                                   # full run (python -m bench), 3-6 min",
        ".venv/bin/python -m bench --quick            # small counts, a smoke run",
        ".venv/bin/python -m bench --only trickle,pipeline --profile   # py-spy flamegraphs",
        ".venv/bin/python -m bench --help             # phases and options",
        "```",
        "",
        "JSON: `bench/results/<timestamp>.json` and `bench/results/latest.json`; plots in",
        "`bench/results/` and, after a full run, `docs/img/bench-*.png`; profiles:",
        "`bench/results/pyspy-<phase>-<process>.txt` (collapsed stacks: speedscope.app",
        "or flamegraph.pl read them), `.svg` (a flame graph), `.speedscope.json` and",
        "`-top.txt` (`python -m bench.pyspy FILE` prints the top-N again).",
        "",
    ]
    return "\n".join(lines)


PLOTS = {
    "latency": "Latency against offered load",
    "cpu": "CPU per message by process, trickle vs burst",
    "throughput": "Throughput against the relay baselines",
}


def _cpu_phases(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    s = result.get("sections", {})
    out: list[tuple[str, dict[str, Any]]] = []
    if tr := s.get("trickle"):
        out.append((f"trickle {fmt(_num(tr.get('target_rate')))}/s", tr))
    if p := s.get("pipeline"):
        out.append(("burst", p))
    for lv in _get(s, "latency", "levels") or []:
        if "cpu_ms_per_msg_total" in lv:
            out.append((f"open loop {lv['fraction']:.0%}", lv))
    return [(n, ph) for n, ph in out if any(cpu_per_msg(ph, p) is not None for p in PROCESSES)]


def _duration(s: Any) -> str:
    v = _num(s)
    return "?" if v is None else f"{v / 60:.1f} min"


def _flatten(d: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k == "runs":
                continue
            out += _flatten(v, f"{prefix}{k}." if isinstance(v, dict | list) else f"{prefix}{k}")
    elif isinstance(d, list):
        if all(isinstance(x, dict) for x in d):
            for i, x in enumerate(d):
                out += _flatten(x, f"{prefix}{i}.")
        else:
            out.append((prefix.rstrip("."), ", ".join(_show(x) for x in d)))
    else:
        out.append((prefix, _show(d)))
    return out


def _show(v: Any) -> str:
    if isinstance(v, float):
        return fmt(v)
    return _md_escape(str(v))


METHOD = [
    "- **crypto**: `bench/crypto.py`, PyNaCl primitives and the envelope operations one",
    "  message needs, timed alone in one process (median of 3).",
    "- **transport**: `bench/transport.py`; aiokafka produce → consume of 1 KiB records",
    "  (idempotent, `acks=all`). **Relay baselines**, the yardstick for the router: a",
    "  backlog of records the size of the pipeline's sealed envelope (~1.3 KiB for a",
    "  1 KiB message) is written first (untimed), then one aiokafka process",
    "  drains it into a second topic: fetches of up to 10,000 records (4 MiB per",
    "  partition), a 1 MiB producer batch with `linger_ms=5`, no wait on each send;",
    "  timed from the first fetch to the last ack. The *exactly-once* relay does the",
    "  same inside transactions of ≤ 500 records with `read_committed` input and the",
    "  offsets in the transaction, as the router does. CPU per message of the relay",
    "  process and of the broker JVM over the drain.",
    "- **CPU per message** (trickle, burst, each latency level): `/proc/<pid>/stat`",
    "  utime + stime of the router, both gateways, the broker JVM and the load",
    "  generator (this process) at the start and the end of the phase, over the",
    "  messages stored at JP in it. The target's *total* is router + gateways +",
    "  broker. `/proc/stat` gives the host's busy share over the same window: at",
    "  ≥ 90 % (or our processes alone at ≥ 90 % of the cores) the phase is flagged",
    "  *saturated*, and its latency is queueing for a core.",
    "- **trickle**: open loop at 30 msgs/s (a fixed schedule, not waiting for",
    "  replies) for 20 s: the cost of a message when batching has nothing to",
    "  amortise (fixed per-fetch and per-transaction costs show here).",
    "- **pipeline** (burst): `bench/pipeline.py`; `i24net gateway` (FR, JP) and",
    "  `i24net router` as separate processes. The bench posts 1 KiB police messages",
    "  to FR's HTTP API (32 at a time) and long-polls JP's inbox; throughput is the",
    "  count over the time from the first POST to the last `received_ms` at JP",
    "  (signing, encryption, screening, attestation, verification and SQLite",
    "  storage included; JP's receipts travel back to FR through the router too).",
    "- **latency**: open loop at 25/50/90 % of the burst rate, 20 s each; latency from",
    "  each message's scheduled send time to its `received_ms` at JP.",
    "- **broadcast**: FR sends `to_all` (195 recipients). No 195 gateways run: the bench",
    "  reads every `i24.in.<station>` topic `read_committed` (a delivery counts once",
    "  the router's transaction has committed it) and afterwards opens each delivery",
    "  with that station's `Receiver`. Broadcasts/s from a burst of 30 (8 clients), with",
    "  the CPU of every process per broadcast over it (the load generator's row is the",
    "  reader of 195 topics); *last recipient* is the median over 5 broadcasts sent",
    "  alone, after 2 warm-up broadcasts (the first ones pay for 195 topics' metadata:",
    "  0.6-10 s, then 60-340 ms). `--profile` also records the burst (py-spy).",
    "- **fairness**: `bench/router.py` (in-process `RouterApp`, one instance for both",
    "  windows): a quiet station sends 20 msgs/s from the start; 5 s of warm-up are",
    "  discarded, 15 s are measured alone; then another station's backlog (the router's",
    "  measured rate × the window, at most 12,000 messages) is written by a child",
    "  process (not on the router's event loop), and the quiet",
    "  messages created until it is drained are the *flood* sample. Latency from the",
    "  message's `created_ms` to the end of the router batch that decided it.",
    "- **scale**: a pre-sealed backlog from 16 stations, drained by 1 and then by 2",
    "  `i24net router` processes in one consumer group on the same partitions.",
    "- **resources**: peak RSS is `VmHWM` of each service process over the pipeline,",
    "  trickle, latency and broadcast parts.",
    "- **gateway**: `bench/gateway.py` (one in-process gateway: HTTP intake, outbox",
    "  drain, inbound verify + store).",
    "- **secured**: `bench/secured.py`; a second, secured broker (TLS + SASL/SCRAM and",
    "  ACLs) with an extra plaintext listener; the same produce → consume over both.",
    "- **profile** (`--profile`, not in `make bench`): py-spy `record --native --threads`",
    "  (idle samples excluded) attached to the router and both gateways during the",
    "  trickle and during the burst. The sampling pauses the processes briefly, so the",
    "  CPU figures of a profiled run are not the reference ones.",
]

Formatter = Callable[[dict[str, Any]], str]
