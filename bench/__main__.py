"""``make bench``: one local broker, every section, a table, JSON, plots and docs.

    python -m bench [--quick] [--only SECTION,...] [--profile] [--docs | --no-docs]

Sections (phases), in run order:
  crypto     PyNaCl primitives vs the project's seal / route / open (one process)
  transport  aiokafka produce → consume, and the fair relay baselines: a batched
             consume → produce relay, and the same relay exactly-once
             (transactions), on the same broker, with their CPU per message
  trickle    5 s idle (each process's CPU with no traffic), then open loop at
             30 msgs/s: CPU ms per message of the router, both gateways, the
             broker JVM and the load generator
  pipeline   a burst end to end (HTTP at FR → router → stored at JP): msgs/s,
             its ratio to the relay, CPU ms per message of every process
             (--profile: py-spy on the router and gateways during it)
  latency    open loop at 25/50/90 % of the burst rate: p50/p99, CPU, and a
             flag when the host was saturated (then it measures queueing)
  broadcast  to the 195 other stations: broadcasts/s, last recipient when alone
  scale      a backlog drained by 1, then 2 router processes
  fairness   bench/router.py: a quiet station's p99 alone vs during a flood,
             one router, warm-up discarded, equal windows
  gateway    bench/gateway.py: intake, outbox drain, inbound (in-process)
  screen     bench/screen.py when present: the content screen, ms per KiB
  secured    bench/secured.py: TLS + SASL vs plaintext, on a second broker

A full run took 3.6-5.8 minutes on the shared 2-core machine; --quick about 2.

Results: ``bench/results/<UTC timestamp>.json`` and ``latest.json``,
``throughput.png``, ``latency.png`` and ``cpu.png`` there too, a summary table
in Markdown on the terminal, and ``docs/benchmarks.md`` (with the plots copied
to ``docs/img/bench-*.png``) regenerated after a full run of every section.
``bench/before.json`` (or ``--before``), a run of the code before a change,
is shown beside this one. ``python -m bench.compare A.json B.json ...`` puts
several runs side by side with their median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
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
BEFORE = Path(__file__).resolve().parent / "before.json"
IMG = DOCS.parent / "img"

SECTIONS = (
    "crypto",
    "transport",
    "trickle",
    "pipeline",
    "latency",
    "broadcast",
    "scale",
    "fairness",
    "gateway",
    "screen",
    "secured",
)
PIPELINE_PARTS = ("pipeline", "trickle", "latency", "broadcast", "scale")

# Sizes: (quick, full)
SIZES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "crypto": ({"duration_s": 3.0}, {"duration_s": 8.0}),
    "transport": ({"count": 3000}, {"count": 20000}),
    "pipeline": (
        {
            "messages": 100,
            "load_s": 5.0,
            "trickle_s": 6.0,
            "idle_s": 3.0,
            "isolated": 1,
            "burst": 3,
            "scale_messages": 100,
        },
        {
            "messages": 1000,
            "load_s": 20.0,
            "trickle_s": 20.0,
            "idle_s": 5.0,
            "isolated": 5,
            "burst": 30,
            "scale_messages": 2000,
        },
    ),
    "fairness": (
        {"messages": 100, "broadcasts": 3, "warmup_s": 3.0, "window_s": 5.0},
        {"messages": 600, "broadcasts": 10, "warmup_s": 5.0, "window_s": 15.0},
    ),
    "gateway": ({"messages": 200}, {"messages": 1500}),
    "secured": ({"count": 2000, "rounds": 1}, {"count": 10000, "rounds": 2}),
}

# Sections written by others get a time limit (quick, full): a hang is recorded, not fatal.
LIMITS_S = {"fairness": (120.0, 240.0), "gateway": (90.0, 180.0), "screen": (60.0, 120.0)}

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
        help="py-spy (--native --threads) on the router and both gateways during the "
        "trickle and the burst: bench/results/pyspy-<phase>-<process>.txt (collapsed "
        "stacks), .svg (flame graph), .speedscope.json and -top.txt (top frames by self "
        "and total); the profiled run's CPU figures are not the reference ones",
    )
    parser.add_argument(
        "--before",
        type=Path,
        metavar="JSON",
        help="a saved result of the code before a change: docs/benchmarks.md shows "
        "its figures beside this run's (default: bench/before.json when present)",
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
                _with_broker(result, chosen, conn, size, profile, broker.pid)
            finally:
                say("stopping the broker ...")
                broker.stop()

    if "screen" in chosen:
        _screen(result, 0 if args.quick else 1)

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


def _screen(result: dict[str, Any], q: int) -> None:
    """bench/screen.py (the screen helper's): ``run() -> {language: ms per KiB}``."""
    try:
        from bench import screen  # type: ignore[attr-defined, unused-ignore]
    except ImportError:
        say("screen: bench/screen.py is not there yet; skipped")
        return
    say("screen: bench/screen.py (content screen, ms per KiB per language) ...")
    r = _guard(result, "screen", lambda: screen.run())
    if r is not None:
        result["sections"]["screen"] = dict(r)
        print_table("content screen, ms per KiB", dict(r))


def _secured(**kw: Any) -> dict[str, Any]:
    from bench import secured

    return secured.run(**kw)


def _with_broker(
    result: dict[str, Any],
    chosen: list[str],
    conn: KafkaConnection,
    size: Callable[[str], dict[str, Any]],
    profile_dir: Path | None = None,
    broker_pid: int | None = None,
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
        try:
            record = transport.envelope_size()  # the pipeline's record: ~1.3 KiB
        except Exception as exc:  # the code under test cannot seal here: 1 KiB then
            say(f"sealed envelope size unknown ({exc!r}); relays move 1 KiB records")
            record = transport.PAYLOAD
        for key, txn, what in (
            ("relay_baseline", False, "batched relay (consume → produce)"),
            ("relay_eos", True, "exactly-once relay (a transaction per 500 records)"),
        ):
            say(f"{what}: a backlog of {count} x {record} B (a sealed 1 KiB message), drained ...")
            relay = _guard(
                result,
                key,
                lambda txn=txn: asyncio.run(  # type: ignore[misc]
                    transport.relay_baseline(
                        conn, count, size=record, transactional=txn, broker_pid=broker_pid
                    )
                ),
            )
            if relay is not None:
                sections[key] = relay
                print_table(what, relay)

    parts = [p for p in PIPELINE_PARTS if p in chosen]
    if parts:
        from bench import pipeline

        kw = size("pipeline")
        say(f"i24net pipeline ({', '.join(parts)}): gateway and router processes ...")
        out = _guard(
            result,
            "pipeline",
            lambda: asyncio.run(
                pipeline.run(
                    conn,
                    parts=parts,
                    say=say,
                    profile_dir=profile_dir,
                    broker_pid=broker_pid,
                    **kw,
                )
            ),
        )
        for name, sec in (out or {}).items():
            sections[name] = sec
        for name in ("trickle", "pipeline", "broadcast", "scale", "resources"):
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
    before = _before(args)
    print("\n" + report.table(result), flush=True)
    print("\nsummary (Markdown, to paste):\n")
    print(report.summary_markdown(result, before), flush=True)
    if result["errors"]:
        print(f"\nsections that failed: {result['errors']}")
    written = plots.write(result, folder, before)
    for png in written:
        print(f"plot: {png}")
    full = result["mode"] == "full" and result["sections_run"] == list(SECTIONS)
    if args.docs or (full and not args.no_docs):
        IMG.mkdir(parents=True, exist_ok=True)
        for png in written:  # the docs embed docs/img/bench-<name>.png
            shutil.copyfile(png, IMG / f"bench-{png.name}")
        analysis = ANALYSIS.read_text() if ANALYSIS.exists() else ""
        DOCS.write_text(report.markdown(result, analysis, before))
        print(f"docs: {DOCS}")
    print(f"results: {folder / 'latest.json'} (took {result['duration_s'] / 60:.1f} min)")


def _before(args: argparse.Namespace) -> dict[str, Any] | None:
    """The result of the code before the change (``--before``, else
    ``bench/before.json``), shown beside this run's figures."""
    path: Path | None = args.before
    if path is None and BEFORE.exists():
        path = BEFORE
    if path is None:
        return None
    saved: dict[str, Any] = json.loads(path.read_text())
    return saved


if __name__ == "__main__":
    raise SystemExit(main())
