"""Probe: what a hash collision on the shared ingress topic costs a quiet station.

Stations write ``i24.out`` partitioned by sender (``gateway/drain.sender_partition``),
so a quiet station whose code hashes to a flooder's partition waits behind the
flood's backlog there, in offset order, while a quiet station of another partition is
served in its own lane (docs/topics.md, "Hash collisions"). This probe measures both:
one in-process router; FR floods from a child process (pre-sealed envelopes to JP,
``--flood-rate`` per second for ``--seconds``) into its partition; two quiet stations,
one sharing FR's partition and one not, each send a message every ``--quiet-ms``
(sealed and sent by this process); a consumer of ``i24.in.JP`` notes when each quiet
message arrives. Printed: the quiet messages' latency (sent -> readable at JP)
percentiles for each quiet station, with and without the flood, and how many flood
records were routed during the window.

    .venv/bin/python -m bench.probe_collision --flood-rate 400 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench._probe import probe_broker
from bench.probe_router import POLICY, Item, _produce
from bench.stats import percentile
from i24net.envelope import Recipients
from i24net.gateway.drain import sender_partition
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.provision import OUT_TOPIC_CONFIG
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import build_network, hints, police_message, provision, settings_toml
from i24net.stations import all_stations

PARTS = 12


def _now() -> int:
    return time.time_ns() // 1_000_000


def quiet_stations(flooder: str) -> tuple[str, str]:
    """A station sharing ``flooder``'s partition, and one that does not."""
    codes = sorted(c for c in all_stations() if c not in (flooder, "JP", "GS"))
    p = sender_partition(flooder, range(PARTS))
    same = next(c for c in codes if sender_partition(c, range(PARTS)) == p)
    other = next(
        c
        for c in codes
        if sender_partition(c, range(PARTS)) not in (p, sender_partition("JP", range(PARTS)))
    )
    return same, other


async def window(
    args: argparse.Namespace,
    bootstrap: str,
    net: Any,
    topics: Topics,
    producer: Any,
    flood: list[Item] | None,
    quiet: tuple[str, str],
) -> dict[str, Any]:
    """One measured window: quiet messages (and the flood, if any); their latencies."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topics.inbox("JP"),
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        group_id=f"{topics.prefix}probe.{uuid.uuid4().hex[:6]}",
    )
    await c.start()
    while not c.assignment():
        await c.getmany(timeout_ms=100)
    for tp in c.assignment():
        await c.position(tp)
    sent: dict[str, tuple[str, float]] = {}
    arrived: dict[str, float] = {}
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            for recs in (await c.getmany(timeout_ms=50)).values():
                t = time.monotonic()
                for r in recs:
                    mid = bytes(dict(r.headers).get("i24-msgid", b"")).decode()
                    arrived.setdefault(mid, t)

    reader = asyncio.create_task(read())
    proc = None
    if flood:
        proc = multiprocessing.get_context("spawn").Process(
            target=_produce, args=(bootstrap, flood, args.flood_rate)
        )
        proc.start()
        await asyncio.sleep(2)  # the flood's backlog builds first
    t_end = time.monotonic() + args.seconds
    while time.monotonic() < t_end:
        for station in quiet:
            h, data = net.gateway(station, _now()).message(
                "POLICE_MESSAGE", police_message("Theft of a car"), Recipients.to("JP"), _now()
            )
            partition = sender_partition(station, range(PARTS))
            await producer.send_and_wait(
                topics.ingress,
                data,
                key=h.message_id.encode(),
                headers=list(hints(h)),
                partition=partition,
            )
            sent[h.message_id] = (station, time.monotonic())
        await asyncio.sleep(args.quiet_ms / 1000)
    deadline = time.monotonic() + 120
    while not set(sent) <= set(arrived) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)  # a bounded look at what the reader task collected
    stop.set()
    await reader
    await c.stop()
    if proc is not None:
        proc.terminate()
        await asyncio.to_thread(proc.join, 10)
    out: dict[str, Any] = {}
    for station, role in zip(quiet, ("same_partition", "other_partition"), strict=True):
        lat = sorted(
            (arrived[m] - t) * 1000 for m, (s, t) in sent.items() if s == station and m in arrived
        )
        lost = sum(1 for m, (s, _) in sent.items() if s == station and m not in arrived)
        out[role] = {
            "station": station,
            "messages": len(lat),
            "not_arrived_within_120s": lost,
            "p50_ms": round(percentile(lat, 50), 1) if lat else None,
            "p99_ms": round(percentile(lat, 99), 1) if lat else None,
        }
    return out


async def main(args: argparse.Namespace, bootstrap: str, tmp: Path) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    conn = KafkaConnection(bootstrap=bootstrap, client_id="probe-collision")
    topics = Topics(prefix=f"probe{uuid.uuid4().hex[:6]}.")
    quiet = quiet_stations("FR")
    net = build_network(("FR", "JP", *quiet), tmp / "keys", now_ms=_now())
    await provision(conn, net, topics)
    await ensure_topics(conn, [TopicSpec(topics.ingress, PARTS, config=OUT_TOPIC_CONFIG)])
    cfg = tmp / "router.toml"
    cfg.write_text(
        settings_toml(
            instance="c",
            bootstrap=bootstrap,
            prefix=topics.prefix,
            keys_dir=tmp / "keys",
            state_dir=tmp / "state",
            policy=POLICY,
            group=topics.prefix + "router",
            extra_router={"legacy_out_topics": False, "audit_verify_interval_ms": 0},
        )
    )
    n = int(args.flood_rate * (args.seconds + 2))
    fr = net.gateway("FR", _now())
    flood: list[Item] = []
    p_fr = sender_partition("FR", range(PARTS))
    for i in range(n):
        h, data = fr.message(
            "POLICE_MESSAGE", police_message(f"Theft {i}"), Recipients.to("JP"), _now()
        )
        flood.append((topics.ingress, p_fr, h.message_id.encode(), data, list(hints(h))))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    registry = CollectorRegistry()
    try:
        async with RouterApp(load_settings(cfg), registry) as app:
            stop = asyncio.Event()
            task = asyncio.create_task(app.run(stop))
            alone = await window(args, bootstrap, net, topics, producer, None, quiet)
            flooded = await window(args, bootstrap, net, topics, producer, flood, quiet)
            stop.set()
            await task
    finally:
        await producer.stop()
    return {
        "flood_rate": args.flood_rate,
        "quiet_every_ms": args.quiet_ms,
        "seconds": args.seconds,
        "alone": alone,
        "during_flood": flooded,
    }


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flood-rate", type=float, default=400.0)
    ap.add_argument("--quiet-ms", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, probe_broker() as (bootstrap, _):
        out = asyncio.run(main(args, bootstrap, Path(tmp)))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cli()
