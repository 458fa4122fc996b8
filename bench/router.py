"""Router figures: msgs/s, 195-station broadcasts/s, quiet-station p99 under a flood.

The fairness figure compares like with like: one router instance for both
windows, a warm-up discarded first (the old figure, "6.4 s alone", was the
group join and first fetches of a freshly started router), equal windows,
and a flood that is still being drained for the whole second window.

``run(conn, ...)`` builds a network (keys, signed directory, topics under a
unique prefix), runs one in-process RouterApp per scenario against the
broker of ``conn`` and returns a dict of figures. Wired into ``make bench``
by the lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

import i24net
from bench.stats import percentile
from bench.topology import (
    ensure_router_topics,
    layout,
    provision_kwargs,
    router_extra,
    station_out,
)
from i24net.envelope import Precedence, Recipients
from i24net.kafka import KafkaConnection
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import (
    Network,
    build_network,
    hints,
    police_message,
    provision,
    settings_toml,
)
from i24net.stations import MEMBER_COUNTRIES

# The policy of the code under test: a checkout's deploy/ next to its src/i24net
# (with PYTHONPATH=<worktree>/src the bench measures that worktree, policy included).
Record = tuple[str, bytes, bytes, Any]  # topic, key, value, headers

POLICY = Path(i24net.__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"


def _say(msg: str) -> None:
    import sys

    print(f"[bench.router {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _now() -> int:
    return time.time_ns() // 1_000_000


class _Scenario:
    def __init__(self, conn: KafkaConnection, tmp: Path, net: Network, topics: Topics) -> None:
        self.conn, self.tmp, self.net, self.topics = conn, tmp, net, topics

    async def app(self, name: str) -> RouterApp:
        return RouterApp(self.settings(name), CollectorRegistry())

    def settings(self, name: str) -> Any:
        cfg = self.tmp / f"{name}.toml"
        cfg.write_text(
            settings_toml(
                instance=name,
                bootstrap=self.conn.bootstrap,
                prefix=self.topics.prefix,
                keys_dir=self.tmp / "keys",
                state_dir=self.tmp / f"state-{name}",
                policy=POLICY,
                group=f"{self.topics.prefix}router",  # shared: each scenario resumes
                extra_router=router_extra(legacy=False),  # the bench writes the layout's topic
            )
        )
        return load_settings(cfg)

    async def produce(
        self, station: str, n: int, to: Recipients, prec: Precedence = Precedence.ROUTINE
    ) -> None:
        gw = self.net.gateway(station, _now())
        p = AIOKafkaProducer(**self.conn.client_kwargs(), enable_idempotence=True, linger_ms=5)
        await p.start()
        try:
            futs = []
            for i in range(n):
                h, data = gw.message(
                    "POLICE_MESSAGE", police_message(f"Theft {i}"), to, _now(), precedence=prec
                )
                topic, key = station_out(self.topics, station, h.message_id)
                futs.append(await p.send(topic, key=key, value=data, headers=hints(h)))
            await asyncio.gather(*futs)
        finally:
            await p.stop()


def _decided(app: RouterApp) -> float:
    total = 0.0
    for m in app.registry.collect():
        if m.name == "i24net_router_messages":
            total += sum(s.value for s in m.samples if s.name.endswith("_total"))
    return total


async def _drain(app: RouterApp, n: int, timeout_s: float) -> float:
    """Run the app until it decided ``n`` messages; seconds from the first batch's start
    to the last batch's commit (group join excluded)."""
    times: list[float] = []
    orig = app.process

    async def timed(batch: Any, **kw: Any) -> Any:
        if not times:
            times.append(time.perf_counter())
        ds = await orig(batch, **kw)
        times.append(time.perf_counter())
        return ds

    app.process = timed  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while _decided(app) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return times[-1] - times[0] if len(times) > 1 else float("nan")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def _assigned(app: RouterApp) -> None:
    while not app._consumer.assignment():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)


async def run(
    conn: KafkaConnection,
    *,
    messages: int = 2000,
    broadcasts: int = 30,
    warmup_s: float = 5.0,
    window_s: float = 15.0,
    quiet_interval_s: float = 0.05,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
        net = build_network(sorted(MEMBER_COUNTRIES), tmp / "keys", now_ms=_now())
        _say("network built; provisioning topics")
        await provision(conn, net, topics, out_partitions=3, **provision_kwargs())
        sc = _Scenario(conn, tmp, net, topics)
        await ensure_router_topics(conn, sc.settings("topics"))
        out["layout"] = layout(legacy=False)
        _say("provisioned; single-recipient")

        # 1. single-recipient throughput (backlog first, then drain)
        await sc.produce("FR", messages, Recipients.to("JP"))
        async with await sc.app("single") as app:
            secs = await _drain(app, messages, 300)
        out["router_single_msgs_per_s"] = messages / secs if secs else float("nan")
        _say(f"single: {out['router_single_msgs_per_s']:.1f} msgs/s; broadcasts")

        # 2. broadcasts to 195 stations
        await sc.produce("BR", broadcasts, Recipients.all())
        async with await sc.app("broadcast") as app:
            secs = await _drain(app, broadcasts, 300)
        out["router_broadcasts_per_s"] = broadcasts / secs if secs else float("nan")
        out["router_broadcast_deliveries_per_s"] = out["router_broadcasts_per_s"] * 195
        _say(f"broadcast: {out['router_broadcasts_per_s']:.2f}/s; quiet vs flood")

        # 3. quiet station p99, alone and while another station floods
        rate = out["router_single_msgs_per_s"]
        out |= await fairness(
            sc,
            flood_rate=rate if rate == rate else 500.0,
            warmup_s=warmup_s,
            window_s=window_s,
            quiet_interval_s=quiet_interval_s,
        )
    return out


async def fairness(
    sc: _Scenario,
    *,
    flood_rate: float,
    warmup_s: float,
    window_s: float,
    quiet_interval_s: float,
    quiet: str = "JP",
    flooder: str = "DE",
    trace: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A quiet station's router latency alone, then during another station's flood.

    One router runs throughout (no restart, no group join between the two
    windows). The quiet station sends one message every ``quiet_interval_s``
    from the start, from a child process, each sealed beforehand for its due time;
    the first ``warmup_s`` are discarded (start-up: the
    group join, the first fetches, the producers' first transactions), then
    ``window_s`` seconds are measured alone. Then the flooder writes a backlog
    of a window's worth at the router's measured rate alone (``flood_rate``;
    at most 12,000), and the quiet messages created while it was not
    yet drained are the "during a flood" sample. Latency: from the quiet
    message's ``created_ms`` to the end of the router batch that decided it.

    With ``trace``, one dict per batch is appended to it: when it started and ended
    (ms), how many records it held and decided, the time spent deciding and
    committing, and for each quiet record its place in the batch and when it was
    fetched (what a quiet record waited for, batch by batch).
    """
    flood_n = int(min(12_000, max(200, flood_rate * window_s)))
    gw = sc.net.gateway(flooder, _now())
    backlog: list[Record] = []
    for i in range(flood_n):
        h, data = gw.message(
            "POLICE_MESSAGE", police_message(f"Flood {i}"), Recipients.to("IT"), _now()
        )
        backlog.append((*station_out(sc.topics, flooder, h.message_id), data, hints(h)))
    # The quiet station's messages are sealed now, each for its due time (created_ms =
    # the schedule), and sent by a child process at that time: a pacer on the router's
    # event loop waited for every batch the router decided (its sends, ~10 ms at p99
    # during the flood, were the bench's cost, not the router's).
    interval_ms = quiet_interval_s * 1000
    span_s = warmup_s + window_s + window_s * 6 + 60 + 10  # the flood's deadline below
    qgw = sc.net.gateway(quiet, _now())
    start_ms = _now() + 2000 + span_s / quiet_interval_s * 1.5  # after sealing them all
    paced: list[tuple[float, str, bytes, bytes, Any]] = []
    for i in range(int(span_s / quiet_interval_s)):
        due = start_ms + i * interval_ms
        h, data = qgw.message(
            "POLICE_MESSAGE", police_message(f"Quiet {i}"), Recipients.to("FR"), int(due)
        )
        paced.append((due, *station_out(sc.topics, quiet, h.message_id), data, hints(h)))
    samples: list[tuple[float, float]] = []  # (created_ms, latency_ms) of quiet messages
    flood_done: list[float] = []
    flooded = 0
    spawn = multiprocessing.get_context("spawn")
    manager = spawn.Manager()
    quiet_stop = manager.Event()
    pool = ProcessPoolExecutor(max_workers=2, mp_context=spawn)
    for f in [pool.submit(_ready) for _ in range(2)]:  # both started before measuring
        await asyncio.wrap_future(f)
    await asyncio.sleep(max(0.0, (start_ms - _now()) / 1000 - 1))
    produced_s = float("nan")
    async with await sc.app("fairness") as app:
        orig = app.process

        async def timed(batch: Any, **kw: Any) -> Any:
            nonlocal flooded
            ds = await orig(batch, **kw)
            t = _now()
            for x in ds:
                if x.header is None:
                    continue
                if x.header.sender == quiet:
                    samples.append((x.header.created_ms, t - x.header.created_ms))
                elif x.header.sender == flooder:
                    flooded += 1
                    if flooded == flood_n:
                        flood_done.append(t)
            return ds

        app.process = timed  # type: ignore[method-assign]
        if trace is not None:
            _trace(app, trace, quiet)
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        loop = asyncio.get_running_loop()
        pacer = loop.run_in_executor(pool, send_paced, sc.conn.client_kwargs(), paced, quiet_stop)
        try:
            await _assigned(app)
            t_warm = _now()
            await asyncio.sleep(warmup_s)
            t_alone = _now()
            await asyncio.sleep(window_s)
            t_flood = _now()
            _say(f"fairness: alone window done; flooding {flood_n} messages from {flooder}")
            produced_s = await loop.run_in_executor(
                pool, produce_records, sc.conn.client_kwargs(), backlog
            )
            deadline = time.monotonic() + window_s * 6 + 60
            while not flood_done and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await asyncio.sleep(quiet_interval_s * 3)  # quiet messages past the flood's end
            quiet_stop.set()
            sent = await pacer
            t_end = flood_done[0] if flood_done else _now()
            settle = time.monotonic() + 30
            while len(samples) < sent and time.monotonic() < settle:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        finally:
            quiet_stop.set()
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
            pool.shutdown(cancel_futures=True)
            manager.shutdown()
    alone = [lat for c, lat in samples if t_alone <= c < t_flood]
    during = [lat for c, lat in samples if t_flood <= c < t_end]
    warm = [lat for c, lat in samples if t_warm <= c < t_alone]
    out: dict[str, Any] = {
        "router_quiet_warmup_s": warmup_s,
        "router_quiet_window_s": window_s,
        "router_quiet_warmup_max_ms": max(warm) if warm else float("nan"),
        "router_quiet_samples_alone": len(alone),
        "router_quiet_samples_flood": len(during),
        "router_flood_messages": flood_n,
        "router_flood_lasted_s": (t_end - t_flood) / 1000,
        "router_flood_drained": bool(flood_done),
        "router_flood_produced_s": produced_s,
    }
    for label, xs in (("alone", alone), ("flood", during)):
        out[f"router_quiet_p50_ms_{label}"] = percentile(xs, 50)
        out[f"router_quiet_p99_ms_{label}"] = percentile(xs, 99)
    a = out["router_quiet_p99_ms_alone"]
    out["router_quiet_p99_ratio_flood_vs_alone"] = (
        out["router_quiet_p99_ms_flood"] / a if a == a and a > 0 else float("nan")
    )
    return out


def _trace(app: RouterApp, trace: list[dict[str, Any]], quiet: str) -> None:
    """Wrap ``app``'s fetch, process and commit to append one dict per batch to ``trace``."""
    fetched_at: dict[tuple[int, int], int] = {}
    orig_fetched, orig_process, orig_commit = app._fetched, app.process, app._commit_items
    current: dict[str, Any] = {}

    def fetched(batch: Any, now: float) -> None:
        t = _now()
        for tp, records in batch.items():
            for r in records:
                if _sender(r) == quiet:
                    fetched_at[(tp.partition, r.offset)] = t
        orig_fetched(batch, now)

    async def commit(items: Any) -> Any:
        current["decided_ms"] = _now()
        current["decided"] = len(items)
        return await orig_commit(items)

    async def process(batch: Any, **kw: Any) -> Any:
        current.clear()
        t0 = _now()
        quiet_at = [
            (i, (r.partition, r.offset)) for i, r in enumerate(batch) if _sender(r) == quiet
        ]
        ds = await orig_process(batch, **kw)
        t1 = _now()
        done = current.get("decided", 0)  # the rest went back to the queues
        trace.append(
            {
                "start_ms": t0,
                "end_ms": t1,
                "records": len(batch),
                "decided": current.get("decided", 0),
                "decide_ms": current.get("decided_ms", t1) - t0,
                "commit_ms": t1 - current.get("decided_ms", t1),
                "budget_ms": (kw.get("budget_s") or 0) * 1000,
                "quiet": [
                    {
                        "index": i,
                        "created_ms": _created(ds, i),
                        "appended_ms": batch[i].timestamp,
                        "fetched_ms": fetched_at.pop(k, None),
                    }
                    for i, k in quiet_at
                    if i < done
                ],
            }
        )
        return ds

    app._fetched = fetched  # type: ignore[method-assign]
    app.process = process  # type: ignore[method-assign]
    app._commit_items = commit  # type: ignore[method-assign]


def _created(decided: Any, i: int) -> int | None:
    h = decided[i].header if i < len(decided) else None
    return h.created_ms if h is not None else None


def _sender(record: Any) -> str | None:
    for k, v in record.headers or ():
        if k == "i24-sender":
            return bytes(v).decode("ascii", "replace")
    return None


def produce_records(client_kwargs: dict[str, Any], records: list[Record]) -> float:
    """Produce pre-sealed records as fast as the producer goes (1 MiB batches); runs in
    a child process, so the in-process router under test does not share its event
    loop with the flood's producer (it would be the bench's cost, not the router's).
    Returns the seconds it took."""

    async def go() -> float:
        p = AIOKafkaProducer(
            **client_kwargs, enable_idempotence=True, linger_ms=5, max_batch_size=1 << 20
        )
        await p.start()
        try:
            t0 = time.perf_counter()
            futs = [await p.send(t, key=k, value=v, headers=h) for t, k, v, h in records]
            await asyncio.gather(*futs)
            return time.perf_counter() - t0
        finally:
            await p.stop()

    return asyncio.run(go())


def _ready() -> bool:
    return True


def send_paced(
    client_kwargs: dict[str, Any], paced: list[tuple[float, str, bytes, bytes, Any]], stop: Any
) -> int:
    """Child process: send each pre-sealed record at its due time (wall clock, ms) until
    ``stop`` is set; returns how many were sent."""

    async def go() -> int:
        p = AIOKafkaProducer(**client_kwargs, enable_idempotence=True, linger_ms=0)
        await p.start()
        n = 0
        try:
            for due, topic, key, value, headers in paced:
                if stop.is_set():
                    break
                await asyncio.sleep(max(0.0, (due - _now()) / 1000))
                await p.send(topic, key=key, value=value, headers=headers)
                n += 1
            await p.flush()
            return n
        finally:
            await p.stop()

    return asyncio.run(go())


async def fairness_only(
    conn: KafkaConnection, *, flood_rate: float, window_s: float, trace: list[dict[str, Any]]
) -> dict[str, Any]:
    """The fairness scenario alone (no throughput runs first), traced batch by batch."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
        net = build_network(sorted(MEMBER_COUNTRIES), tmp / "keys", now_ms=_now())
        await provision(conn, net, topics, out_partitions=3, **provision_kwargs())
        sc = _Scenario(conn, tmp, net, topics)
        await ensure_router_topics(conn, sc.settings("topics"))
        return await fairness(
            sc,
            flood_rate=flood_rate,
            warmup_s=5.0,
            window_s=window_s,
            quiet_interval_s=0.05,
            trace=trace,
        )


def _main() -> None:
    import argparse
    import json

    from bench._probe import probe_broker

    ap = argparse.ArgumentParser(prog="python -m bench.router", description=__doc__)
    ap.add_argument("--bootstrap", help="a broker of yours (else a throwaway one)")
    ap.add_argument(
        "--fairness-only",
        action="store_true",
        help="only the quiet-vs-flood scenario, with a per-batch trace",
    )
    ap.add_argument("--flood-rate", type=float, default=1000.0, help="msgs/s (fairness only)")
    ap.add_argument("--window", type=float, default=15.0, help="seconds (fairness only)")
    ap.add_argument("--trace", type=Path, help="write the per-batch trace (JSON) here")
    a = ap.parse_args()
    with probe_broker(a.bootstrap) as (bootstrap, _pid):
        conn = KafkaConnection(bootstrap=bootstrap)
        trace: list[dict[str, Any]] = []
        if a.fairness_only:
            out = asyncio.run(
                fairness_only(conn, flood_rate=a.flood_rate, window_s=a.window, trace=trace)
            )
        else:
            out = asyncio.run(run(conn))
    if a.trace:
        a.trace.write_text(json.dumps(trace))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":  # python -m bench.router [--bootstrap HOST:PORT] [--fairness-only]
    _main()
