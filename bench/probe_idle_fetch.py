"""Probe: what an idle ``read_committed`` consumer costs the broker, by ``fetch_max_wait_ms``.

In production every station's gateway keeps two consumers open on the one broker
cluster (its inbound ``i24.in.<station>`` and the ``i24.directory`` follower), ~400
consumers for 196 stations, and most of the time they have nothing to read. An idle
aiokafka consumer sends its next FetchRequest as soon as the previous long poll
expires, so it costs the broker one fetch every ``fetch_max_wait_ms`` (aiokafka's
default: 500 ms) for ever. A record still ends the long poll at once, so a longer
wait delays nothing that is written.

This probe opens ``--consumers`` consumers in this process, each assigned one
partition of a topic nobody writes, reading in a ``getmany`` loop as the gateways
do, and measures the broker JVM's CPU (``/proc/<pid>/stat``) over ``--seconds``
for each ``--waits`` value, and this process's own CPU (the clients' side).

    .venv/bin/python -m bench.probe_idle_fetch --consumers 50 --waits 500 5000

Figures: bench/analysis.md, "The broker at a trickle".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
import uuid
from typing import Any

from bench._probe import probe_broker
from bench.procstat import cpu_seconds
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics


async def idle_consumers(
    conn: KafkaConnection, topic: str, n: int, wait_ms: int, seconds: float, pid: int
) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumers = [
        AIOKafkaConsumer(
            **conn.client_kwargs(),
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=wait_ms,
        )
        for _ in range(n)
    ]
    stop = asyncio.Event()

    async def loop(c: Any) -> None:
        while not stop.is_set():
            await c.getmany(timeout_ms=500)

    for i, c in enumerate(consumers):
        await c.start()
        c.assign([TopicPartition(topic, i)])
        await c.seek_to_end(TopicPartition(topic, i))
    tasks = [asyncio.create_task(loop(c)) for c in consumers]
    try:
        await asyncio.sleep(3)  # every consumer in its long-poll cycle (a duration, not a state)
        me = os.getpid()
        b0, c0, t0 = cpu_seconds(pid), cpu_seconds(me), time.monotonic()
        await asyncio.sleep(seconds)  # the measured window is a duration
        b1, c1, t1 = cpu_seconds(pid), cpu_seconds(me), time.monotonic()
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for c in consumers:
            await c.stop()
    wall = t1 - t0
    return {
        "consumers": n,
        "fetch_max_wait_ms": wait_ms,
        "broker_ms_per_s": (b1 - b0) * 1000 / wall,
        "broker_ms_per_s_per_consumer": (b1 - b0) * 1000 / wall / n,
        "clients_ms_per_s_per_consumer": (c1 - c0) * 1000 / wall / n,
    }


async def main(args: argparse.Namespace, bootstrap: str, pid: int) -> list[dict[str, Any]]:
    conn = KafkaConnection(bootstrap=bootstrap, client_id="probe-idle-fetch")
    topic = f"probe-idle.{uuid.uuid4().hex[:6]}"
    await ensure_topics(conn, [TopicSpec(topic, args.consumers)])
    out = []
    for _ in range(args.repeat):
        for wait in args.waits:
            r = await idle_consumers(conn, topic, args.consumers, wait, args.seconds, pid)
            print(
                f"  fetch_max_wait_ms {wait:>5}: broker {r['broker_ms_per_s']:.1f} ms/s "
                f"({r['broker_ms_per_s_per_consumer']:.2f} per consumer), clients "
                f"{r['clients_ms_per_s_per_consumer']:.2f} ms/s per consumer",
                flush=True,
            )
            out.append(r)
    return out


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--consumers", type=int, default=50)
    ap.add_argument("--waits", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--bootstrap")
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with probe_broker(args.bootstrap, pid=args.broker_pid) as (bootstrap, pid):
        if pid is None:
            raise SystemExit("--broker-pid is needed with --bootstrap (the broker's CPU)")
        res = asyncio.run(main(args, bootstrap, pid))
    if args.json:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    cli()
