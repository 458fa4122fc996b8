"""Probe: where a message's end-to-end latency goes, stage by stage, at a fixed rate.

The pipeline of ``bench/pipeline.py`` (FR and JP gateways and one router, as
processes, from the code on ``PYTHONPATH``) on a broker of yours or a throwaway
one; an open-loop load FR -> JP at ``--rate`` msgs/s for ``--seconds``. Every
message is followed through timestamps that already exist, read by taps in this
process (no change to the services)::

    due            the open-loop schedule (latency starts here: no coordinated omission)
    acked          FR's HTTP answer (intake: sealed and in FR's SQLite outbox)
    appended_out   the record's LogAppendTime on the ingress topic (FR's outbox drain)
    routed         the timestamp of the router's delivery record on i24.in.JP: the
                   producer's time when the router sent it inside its transaction
                   (fetch, linger window, decision)
    visible        when a read_committed tap here received it (the transaction's
                   commit and markers; the tap's own fetch wait is 5 ms at most)
    stored         JP's ``received_ms`` from its inbox API (JP's inbound: its fetch,
                   verification, its SQLite store)

Stages are the differences between consecutive stamps; each gets p50/p90/p99 and
its share of the mean end-to-end latency. Clocks: one machine, wall clock
everywhere (the broker's, the router's and JP's stamps are all ``time.time``).

    .venv/bin/python -m bench.probe_latency --rate 80 --seconds 20
    PYTHONPATH=<worktree>/src .venv/bin/python -m bench.probe_latency --bootstrap HOST:PORT

Figures: the report of issue 12 (router batching, fairness and latency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench._probe import probe_broker
from bench.pipeline import (
    PM,
    RECIPIENT,
    SENDER,
    Cluster,
    InboxWatch,
    _burst,
    client,
)
from bench.procstat import cpu_seconds
from bench.stats import open_loop_schedule, percentile
from i24net.kafka import KafkaConnection

STAGES = (
    ("intake", "due", "acked"),
    ("outbox_drain", "acked", "appended_out"),
    ("router_decide", "appended_out", "routed"),
    ("router_commit", "routed", "visible"),
    ("inbound_store", "visible", "stored"),
)


def _now_ms() -> float:
    return time.time() * 1000


def _msgid(headers: Any) -> str | None:
    for k, v in headers or ():
        if k == "i24-msgid" and v is not None:
            return bytes(v).decode("ascii", "replace")
    return None


class Tap:
    """Reads a topic from its end and stamps each record by its ``i24-msgid`` header:
    the record's own timestamp, or (``arrival``) when this tap received it."""

    def __init__(self, conn: KafkaConnection, topic: str, *, committed: bool, arrival: bool):
        self.conn, self.topic = conn, topic
        self.committed, self.arrival = committed, arrival
        self.stamps: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._c: Any = None

    async def start(self) -> None:
        self._c = AIOKafkaConsumer(
            self.topic,
            **self.conn.client_kwargs(),
            enable_auto_commit=False,
            auto_offset_reset="latest",
            isolation_level="read_committed" if self.committed else "read_uncommitted",
            fetch_max_wait_ms=5,
        )
        await self._c.start()
        while not self._c.assignment():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self._c.seek_to_end()
        for tp in self._c.assignment():
            await self._c.position(tp)
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            batch = await self._c.getmany(timeout_ms=200)
            t = _now_ms()
            for records in batch.values():
                for r in records:
                    mid = _msgid(r.headers)
                    if mid is not None and mid not in self.stamps:
                        self.stamps[mid] = t if self.arrival else float(r.timestamp)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._c is not None:
            await self._c.stop()


async def measure(
    conn: KafkaConnection, rate: float, seconds: float, broker_pid: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"rate": rate, "seconds": seconds}
    with tempfile.TemporaryDirectory(prefix="i24net-probe-latency-") as d:
        cl = Cluster(conn, Path(d), lambda m: print(m, file=sys.stderr))
        try:
            await cl.setup()
            fr, jp = cl.start_gateway(SENDER), cl.start_gateway(RECIPIENT)
            await cl.ready(fr)
            await cl.ready(jp)
            legacy = not await cl.gateway_writes_ingress(fr)
            router = cl.start_router("p", legacy=legacy)
            await cl.group_members(1)
            pids = {"router": router.pid, "gateway_FR": fr.pid, "gateway_JP": jp.pid}
            if broker_pid is not None:
                pids["broker"] = broker_pid
            taps = {
                "appended_out": Tap(conn, cl.topics.ingress, committed=False, arrival=False),
                "routed": Tap(conn, cl.topics.inbox(RECIPIENT), committed=False, arrival=False),
                "visible": Tap(conn, cl.topics.inbox(RECIPIENT), committed=True, arrival=True),
            }
            for tap in taps.values():
                await tap.start()
            async with client(fr, max_connections=256) as cfr, client(jp) as cjp:
                watch = InboxWatch(cjp)
                watch.start()
                try:
                    warm, _ = await _burst(cfr, 40, 4, to=[RECIPIENT])
                    await watch.wait_all(warm, 60)
                    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
                    stamps = await _open_loop(cfr, rate, seconds)
                    await watch.wait_all(stamps, 60)
                    cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
                finally:
                    await watch.stop()
            for tap in taps.values():
                await tap.stop()
        finally:
            cl.stop_all()
    rows = []
    for mid, s in stamps.items():
        s |= {name: tap.stamps.get(mid) for name, tap in taps.items()}
        s["stored"] = watch.seen.get(mid)
        if all(v is not None for v in s.values()):
            rows.append(s)
    out["messages"] = len(stamps)
    out["cpu_ms_per_message"] = {
        k: round((cpu1[k] - cpu0[k]) * 1000 / max(1, len(stamps)), 2) for k in pids
    }
    out["followed"] = len(rows)
    total = [r["stored"] - r["due"] for r in rows]
    mean_total = sum(total) / len(total) if total else float("nan")
    out["end_to_end_ms"] = _pcts(total)
    for name, a, b in STAGES:
        xs = [r[b] - r[a] for r in rows]
        out[name] = _pcts(xs) | {
            "share": (sum(xs) / len(xs)) / mean_total if xs and mean_total else float("nan")
        }
    return out


def _pcts(xs: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(xs, 50), 1),
        "p90": round(percentile(xs, 90), 1),
        "p99": round(percentile(xs, 99), 1),
        "mean": round(sum(xs) / len(xs), 1) if xs else float("nan"),
    }


async def _open_loop(cfr: Any, rate: float, seconds: float) -> dict[str, dict[str, float]]:
    stamps: dict[str, dict[str, float]] = {}

    async def one(due: float) -> None:
        with contextlib.suppress(Exception):
            mid = await cfr.send("POLICE_MESSAGE", to=[RECIPIENT], payload=PM)
            stamps[mid] = {"due": due, "acked": _now_ms()}

    tasks = []
    start, wall0 = time.perf_counter(), _now_ms()
    for off in open_loop_schedule(rate, seconds):
        delay = start + off - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(wall0 + off * 1000)))
    await asyncio.gather(*tasks)
    return stamps


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.probe_latency", description=__doc__)
    ap.add_argument("--bootstrap", help="a broker of yours (else a throwaway one)")
    ap.add_argument("--rate", type=float, default=80.0, help="msgs/s (default 80)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--broker-pid", type=int, help="your broker's JVM, to count its CPU")
    a = ap.parse_args()
    with probe_broker(a.bootstrap, pid=a.broker_pid) as (bootstrap, pid):
        r = asyncio.run(measure(KafkaConnection(bootstrap=bootstrap), a.rate, a.seconds, pid))
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
