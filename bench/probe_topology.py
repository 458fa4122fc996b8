"""Probe: what one consumed record costs (consumer CPU and broker CPU) by ingress layout.

The router's consumer is subscribed by pattern to every ingress partition, and
aiokafka has no incremental fetch sessions (KIP-227): each FetchRequest and
FetchResponse lists every assigned partition. This probe measures that cost alone,
for the layouts of docs/topics.md, at a fixed trickle:

* ``per-station-3``: 197 topics ``<p>.out.<code>`` x 3 partitions (591, the old layout);
* ``per-station-1``: the same topics with one partition each (197);
* ``shared-12``: one ingress topic ``<p>.out`` with 12 partitions (keyed by sender);
* ``produce-only``: the trickle with no consumer at all, the broker's baseline (its
  cost of the produce requests, which every layout above includes).

For each layout: a consumer configured as the router's (group, pattern subscription,
read_committed, ``getmany(timeout_ms=100, max_records=2000)``) runs in this process; a
producer in a child process writes ``--rate`` records/s of ``--size`` bytes into one
partition for ``--seconds``. CPU is read from ``/proc/<pid>/stat`` (user + system) for
this process (consumer only) and for the broker's JVM, over the window in which the
trickle ran, and divided by the records consumed. An idle window of the same length
(consumer polling, no records) is measured too: the broker's cost of a layout is
mostly there, in the empty fetches.

    .venv/bin/python -m bench.probe_topology --rate 100 --seconds 20
    .venv/bin/python -m bench.probe_topology --bootstrap 127.0.0.1:9092 --layouts shared-12

Without ``--bootstrap`` a broker of its own is started in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import time
import uuid
from dataclasses import asdict, dataclass

from bench._probe import probe_broker
from bench.procstat import cpu_seconds
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.stations import all_stations

LAYOUTS = {
    "per-station-3": (True, 3),
    "per-station-1": (True, 1),
    "shared-12": (False, 12),
    "produce-only": (False, 12),
}


@dataclass
class Result:
    layout: str
    partitions: int
    records: int
    seconds: float
    consumer_ms_per_record: float
    broker_ms_per_record: float
    idle_consumer_ms_per_s: float
    idle_broker_ms_per_s: float
    fetches_per_s: float


def _produce(bootstrap: str, topic: str, partition: int, rate: float, n: int, size: int) -> None:
    """Child process: ``n`` records at ``rate``/s into one partition, paced on a deadline."""

    async def main() -> None:
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=0)
        await p.start()
        try:
            value = os.urandom(size)
            t0 = time.monotonic()
            for i in range(n):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await p.send(topic, value, key=str(i).encode(), partition=partition)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(main())


async def _consume(
    conn: KafkaConnection,
    pattern: str,
    group: str,
    want: int,
    broker_pid: int,
    idle_s: float,
    idle_done: asyncio.Event,
) -> tuple[int, float, float, float, float, float, int]:
    """Consume as the router does; returns (records, consumer CPU s, broker CPU s, wall s
    from the first record on, idle consumer CPU s/s, idle broker CPU s/s, fetches)."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        **conn.client_kwargs(),
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        metadata_max_age_ms=5000,
    )
    await c.start()
    try:
        c.subscribe(pattern=pattern)
        while not c.assignment():
            await c.getmany(timeout_ms=100)
        for tp in c.assignment():  # positions resolved before anything is measured
            await c.position(tp)
        me = os.getpid()
        # Idle window: every partition polled, no records.
        c0, b0, t0 = cpu_seconds(me), cpu_seconds(broker_pid), time.monotonic()
        while time.monotonic() - t0 < idle_s:
            await c.getmany(timeout_ms=100, max_records=2000)
        idle = time.monotonic() - t0
        idle_c, idle_b = (cpu_seconds(me) - c0) / idle, (cpu_seconds(broker_pid) - b0) / idle
        idle_done.set()
        got = fetches = 0
        start: tuple[float, float, float] | None = None
        deadline = time.monotonic() + 600
        while got < want and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=100, max_records=2000)
            fetches += 1
            n = sum(len(v) for v in batch.values())
            if n and start is None:
                start = (cpu_seconds(me), cpu_seconds(broker_pid), time.monotonic())
            got += n
        end = (cpu_seconds(me), cpu_seconds(broker_pid), time.monotonic())
        s = start or end
        return got, end[0] - s[0], end[1] - s[1], end[2] - s[2], idle_c, idle_b, fetches
    finally:
        await c.stop()


async def _layout(
    conn: KafkaConnection,
    bootstrap: str,
    broker_pid: int,
    name: str,
    rate: float,
    seconds: float,
    size: int,
    stations: list[str],
) -> Result:
    per_station, parts = LAYOUTS[name]
    prefix = f"probe{uuid.uuid4().hex[:6]}.{name}"
    cfg = {"message.timestamp.type": "LogAppendTime"}
    if per_station:
        specs = [TopicSpec(f"{prefix}.out.{code}", parts, config=cfg) for code in stations]
        pattern = "^" + f"{prefix}.out.".replace(".", r"\.") + ".*"
        target = f"{prefix}.out.{stations[0]}"
    else:
        specs = [TopicSpec(f"{prefix}.out", parts, config=cfg)]
        pattern = "^" + f"{prefix}.out".replace(".", r"\.") + "$"
        target = f"{prefix}.out"
    await ensure_topics(conn, specs)
    n = int(rate * seconds)
    total = sum(s.partitions for s in specs)
    if name == "produce-only":
        return await _produce_only(bootstrap, broker_pid, target, rate, n, size, total)
    idle_done = asyncio.Event()
    consumer = asyncio.create_task(
        _consume(conn, pattern, f"{prefix}.g", n, broker_pid, seconds / 2, idle_done)
    )
    waiter = asyncio.create_task(idle_done.wait())
    await asyncio.wait([consumer, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    proc = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(bootstrap, target, 0, rate, n, size)
    )
    proc.start()
    got, c_cpu, b_cpu, wall, idle_c, idle_b, fetches = await consumer
    await asyncio.to_thread(proc.join, 30)
    return Result(
        layout=name,
        partitions=total,
        records=got,
        seconds=round(wall, 2),
        consumer_ms_per_record=round(c_cpu * 1000 / max(got, 1), 3),
        broker_ms_per_record=round(b_cpu * 1000 / max(got, 1), 3),
        idle_consumer_ms_per_s=round(idle_c * 1000, 1),
        idle_broker_ms_per_s=round(idle_b * 1000, 1),
        fetches_per_s=round(fetches / max(wall, 1e-9), 1),
    )


async def _produce_only(
    bootstrap: str, broker_pid: int, target: str, rate: float, n: int, size: int, total: int
) -> Result:
    proc = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(bootstrap, target, 0, rate, n, size)
    )
    b0, t0 = cpu_seconds(broker_pid), time.monotonic()
    proc.start()
    await asyncio.to_thread(proc.join, n / rate + 60)
    b1, t1 = cpu_seconds(broker_pid), time.monotonic()
    return Result(
        layout="produce-only",
        partitions=total,
        records=n,
        seconds=round(t1 - t0, 2),
        consumer_ms_per_record=0.0,
        broker_ms_per_record=round((b1 - b0) * 1000 / n, 3),
        idle_consumer_ms_per_s=0.0,
        idle_broker_ms_per_s=0.0,
        fetches_per_s=0.0,
    )


async def main(args: argparse.Namespace, bootstrap: str, broker_pid: int) -> list[Result]:
    stations = sorted(all_stations())[: args.stations]
    conn = KafkaConnection(bootstrap=bootstrap, client_id="probe")
    out = []
    for _ in range(args.repeat):
        for name in args.layouts:
            r = await _layout(
                conn, bootstrap, broker_pid, name, args.rate, args.seconds, args.size, stations
            )
            print(json.dumps(asdict(r)), flush=True)
            out.append(r)
    return out


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap")
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--stations", type=int, default=197)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    args = ap.parse_args()
    if args.bootstrap and args.broker_pid is None:
        ap.error("--broker-pid is needed with --bootstrap")
    with probe_broker(args.bootstrap, pid=args.broker_pid) as (bootstrap, pid):
        assert pid is not None
        asyncio.run(main(args, bootstrap, pid))


if __name__ == "__main__":
    cli()
