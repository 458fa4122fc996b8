"""``make bench``: one local broker, every section, a table, JSON, plots and docs.

    python -m bench [--quick] [--only SECTION,...] [--docs | --no-docs]

Sections: crypto, transport (aiokafka produce→consume and the plaintext relay
baseline), pipeline (i24net end to end, with the services' resources),
latency (open loop at 25/50/90 % of the pipeline's rate), broadcast (to the
195 other stations), scale (1 vs 2 router processes), fairness
(``bench/router.py``), gateway (``bench/gateway.py``) and secured
(``bench/secured.py``: TLS + SASL vs plaintext, on a second, secured broker
started after the first one stopped).

Results: ``bench/results/<UTC timestamp>.json`` and ``latest.json``,
``throughput.png`` and ``latency.png`` there too, and ``docs/benchmarks.md``
regenerated (by default after a full run of every section). Figures are
compared as ratios against baselines measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import crypto, plots, report, transport
from i24net.kafka import Broker, BrokerSettings, KafkaConnection

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
ANALYSIS = Path(__file__).resolve().parent / "analysis.md"

SECTIONS = (
    "crypto",
    "transport",
    "pipeline",
    "latency",
    "broadcast",
    "scale",
    "fairness",
    "gateway",
    "secured",
)
PIPELINE_PARTS = ("pipeline", "latency", "broadcast", "scale")

# Sizes: (quick, full)
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "crypto": ({"duration_s": 3.0}, {"duration_s": 12.0}),
    "transport": ({"count": 3000}, {"count": 20000}),
    "pipeline": (
        {
            "messages": 60,
            "load_s": 4.0,
            "isolated": 1,
            "burst": 3,
            "scale_messages": 100,
        },
        {
            "messages": 600,
            "load_s": 20.0,
            "isolated": 3,
            "burst": 10,
            "scale_messages": 2000,
        },
    ),
    "fairness": (
        {"messages": 100, "broadcasts": 3, "flood": 200, "quiet": 20},
        {"messages": 600, "broadcasts": 10, "flood": 1500, "quiet": 100},
    ),
    "gateway": ({"messages": 200}, {"messages": 1500}),
    "secured": ({"count": 2000, "rounds": 1}, {"count": 10000, "rounds": 2}),
}

# Sections written by others get a time limit (quick, full): a hang is recorded, not fatal.
LIMITS_S = {"fairness": (120.0, 240.0), "gateway": (90.0, 180.0)}

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def print_table(title: str, rows: dict[str, Any]) -> None:
    print(f"\n== {title}")
    for key, value in rows.items():
        if isinstance(value, dict | list):
            continue
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"  {key:<40} {shown:>14}")
    print(flush=True)


def _sections(only: str | None) -> list[str]:
    if not only:
        return list(SECTIONS)
    chosen = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in chosen]


def _guard(result: dict[str, Any], name: str, fn: Callable[[], Any]) -> Any:
    """Run one section; a failure is recorded and the run goes on."""
    t0 = time.monotonic()
    try:
        out = fn()
    except Exception as exc:
        traceback.print_exc()
        say(f"{name}: FAILED ({exc!r}); continuing")
        result["errors"][name] = repr(exc)
        out = None
    result["timings_s"][name] = round(time.monotonic() - t0, 1)
    with contextlib.suppress(OSError):  # what is done so far survives a later crash
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "partial.json").write_text(json.dumps(result, indent=2, default=str))
    return out


async def _warm_group_coordinator(conn: KafkaConnection) -> None:
    """Create ``__consumer_offsets`` now (a fresh broker takes a while), so that
    the first consumer group of a measured section does not pay for it."""
    from aiokafka import AIOKafkaConsumer

    from i24net.kafka import TopicSpec, ensure_topics

    topic = f"bench.warmup.{uuid.uuid4().hex[:8]}"
    await ensure_topics(conn, [TopicSpec(topic, partitions=1)])
    c = AIOKafkaConsumer(
        topic, group_id=f"bench-warmup-{uuid.uuid4().hex[:6]}", **conn.client_kwargs()
    )
    await c.start()
    try:
        deadline = time.monotonic() + 180
        while not c.assignment() and time.monotonic() < deadline:
            await c.getmany(timeout_ms=500)
    finally:
        await c.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small counts (< 3 minutes)")
    parser.add_argument("--only", metavar="SECTION,...", help=f"a subset of: {', '.join(SECTIONS)}")
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", action="store_true", help="regenerate docs/benchmarks.md")
    docs.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md alone")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder for JSON and PNG")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the gateway and router processes under pyinstrument "
        "(reports: bench/results/profile-<service>.txt)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="no run: redo the table, plots and docs from a saved result",
    )
    args = parser.parse_args()
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        _render(saved, args)
        return 0
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries are noise here
    chosen = _sections(args.only)
    q = 0 if args.quick else 1

    def size(name: str) -> dict[str, Any]:
        return dict(SIZES[name][q])

    if args.profile:
        args.results.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "sections_run": chosen,
        "machine": report.machine(),
        "sections": {},
        "timings_s": {},
        "errors": {},
    }
    sections: dict[str, Any] = result["sections"]
    say(f"{result['mode']} run: {', '.join(chosen)}")

    if "crypto" in chosen:
        say("crypto: PyNaCl primitives vs the project's seal / route / open ...")
        r = _guard(result, "crypto", lambda: crypto.run(size("crypto")["duration_s"]))
        if r is not None:
            sections["crypto"] = r
            print(crypto._table(r), flush=True)

    needs_broker = [s for s in chosen if s not in ("crypto", "secured")]
    if needs_broker:
        with tempfile.TemporaryDirectory(prefix="i24net-bench-") as tmp:
            say("starting the local Kafka broker (from this, the main thread) ...")
            broker = Broker(BrokerSettings(data_dir=Path(tmp), heap="1g"))
            broker.start()
            result["broker_start_s"] = broker.started_in_s
            conn = KafkaConnection(bootstrap=broker.bootstrap, client_id="i24net-bench")
            try:
                say(f"broker up in {broker.started_in_s:.1f}s at {broker.bootstrap}; warming up")
                _guard(result, "warmup", lambda: asyncio.run(_warm_group_coordinator(conn)))
                profile = args.results if args.profile else None
                _with_broker(result, chosen, conn, size, profile)
            finally:
                say("stopping the broker ...")
                broker.stop()

    if "secured" in chosen:
        say("secured: a TLS + SASL/SCRAM broker; plaintext vs SASL_SSL listeners ...")
        r = _guard(result, "secured", lambda: _secured(**size("secured")))
        if r is not None:
            sections["secured"] = r
            print_table("TLS + SASL vs plaintext, 1 KiB", r)

    result["duration_s"] = round(time.monotonic() - T0, 1)
    result["machine"]["loadavg_at_end"] = report.loadavg()
    _write(result, args)
    return 1 if result["errors"] else 0


def _secured(**kw: Any) -> dict[str, Any]:
    from bench import secured

    return secured.run(**kw)


def _with_broker(
    result: dict[str, Any],
    chosen: list[str],
    conn: KafkaConnection,
    size: Callable[[str], dict[str, Any]],
    profile_dir: Path | None = None,
) -> None:
    sections: dict[str, Any] = result["sections"]
    if "transport" in chosen:
        count = size("transport")["count"]
        say(f"transport: {count} x 1 KiB aiokafka produce → consume ...")
        raw = _guard(
            result, "transport", lambda: asyncio.run(transport.produce_consume(conn, count))
        )
        if raw is not None:
            sections["transport"] = raw
            print_table("aiokafka produce → consume, 1 KiB", raw)
        say(f"relay baseline: {count} x 1 KiB producer → relay → consumer ...")
        relay = _guard(
            result, "relay_baseline", lambda: asyncio.run(transport.relay_baseline(conn, count))
        )
        if relay is not None:
            sections["relay_baseline"] = relay
            print_table("plaintext relay baseline, 1 KiB", relay)

    parts = [p for p in PIPELINE_PARTS if p in chosen]
    if parts:
        from bench import pipeline

        kw = size("pipeline")
        say(f"i24net pipeline ({', '.join(parts)}): gateway and router processes ...")
        out = _guard(
            result,
            "pipeline",
            lambda: asyncio.run(
                pipeline.run(conn, parts=parts, say=say, profile_dir=profile_dir, **kw)
            ),
        )
        for name, sec in (out or {}).items():
            sections[name] = sec
        for name in ("pipeline", "broadcast", "scale", "resources"):
            if name in sections:
                print_table(name, sections[name])

    if "fairness" in chosen:
        from bench import router

        say("fairness: bench/router.py (quiet station p99 alone vs during a flood) ...")
        limit = LIMITS_S["fairness"][0 if result["mode"] == "quick" else 1]
        r = _guard(
            result,
            "fairness",
            lambda: asyncio.run(asyncio.wait_for(router.run(conn, **size("fairness")), limit)),
        )
        if r is not None:
            sections["fairness"] = r
            print_table("router (in-process): throughput and fairness", r)

    if "gateway" in chosen:
        from bench import gateway

        say("gateway: bench/gateway.py (intake, drain, inbound) ...")
        limit = LIMITS_S["gateway"][0 if result["mode"] == "quick" else 1]
        run_async = getattr(gateway, "run_async", None)
        if run_async is not None:
            r = _guard(
                result,
                "gateway",
                lambda: asyncio.run(asyncio.wait_for(run_async(conn, **size("gateway")), limit)),
            )
        else:
            r = _guard(result, "gateway", lambda: gateway.run(conn, **size("gateway")))
        if r is not None:
            sections["gateway"] = r
            print_table("gateway (in-process)", r)


def _write(result: dict[str, Any], args: argparse.Namespace) -> None:
    folder: Path = args.results
    folder.mkdir(parents=True, exist_ok=True)
    stamp = result["started"].replace(":", "").replace("-", "")
    text = json.dumps(result, indent=2, default=str) + "\n"
    for path in (folder / f"{stamp}.json", folder / "latest.json"):
        path.write_text(text)
    _render(result, args)


def _render(result: dict[str, Any], args: argparse.Namespace) -> None:
    folder: Path = args.results
    folder.mkdir(parents=True, exist_ok=True)
    print("\n" + report.table(result), flush=True)
    if result["errors"]:
        print(f"\nsections that failed: {result['errors']}")
    for png in plots.write(result, folder):
        print(f"plot: {png}")
    full = result["mode"] == "full" and result["sections_run"] == list(SECTIONS)
    if args.docs or (full and not args.no_docs):
        analysis = ANALYSIS.read_text() if ANALYSIS.exists() else ""
        DOCS.write_text(report.markdown(result, analysis))
        print(f"docs: {DOCS}")
    print(f"results: {folder / 'latest.json'} (took {result['duration_s'] / 60:.1f} min)")


if __name__ == "__main__":
    raise SystemExit(main())
