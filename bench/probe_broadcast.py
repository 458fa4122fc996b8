"""Probe: what one router process does with a backlog of broadcasts to 195 stations.

The bench's *broadcast* part goes through FR's HTTP API with 8 clients, so its
broadcasts/s mixes the router with intake, the gateways and the host's noise. This
probe isolates the router: it seals ``--broadcasts`` hybrid v2 broadcasts (FR, to all)
in advance, writes them to the ingress topic, then starts one router per configuration
(``--configs``, JSON objects of ``[router]`` settings), lets it drain them, and prints
broadcasts/s (first record fetched to last delivery committed, as read by a
read_committed reader of the 195 ``i24.in.<station>`` topics), and CPU ms per broadcast
of the router, the broker and this process (the reader), with the router's own
transaction count. Configurations run one after the other on the same broker and
topics, each on a fresh backlog, ``--repeat`` times in turn (the host is shared).

    .venv/bin/python -m bench.probe_broadcast --broadcasts 40 \\
        --configs '{}' '{"batch_budget_ms": 100}'

Measured (session 5, 2026-12-01, 40 hybrid broadcasts per run, shared 2-core host):
12.3-13.3 broadcasts/s drained by one router, at router 47-58 ms, broker 45-60 ms and
reader 9-12 ms of CPU per broadcast. Of the router's share, ~23.5 ms is the 195 HPKE
wraps (``make bench``, crypto) and most of the rest aiokafka's produce path for 195
partitions (``bench/probe_txn_fanout.py``). A variant that began the transaction at the
batch's first decision and sent each decision's records at once, so the broker appends
while the router decides (tried and not kept): 8.4 and 12.4/s in two runs against 13.3
and 12.9/s without; larger batch budgets: 12.3-12.9/s. So one router on this host drains
~13 hybrid broadcasts/s whatever the batching: ~100 ms of router + broker CPU each.

With ``--profile DIR`` (session 6), py-spy records the router during each drain. One
such profile: 13 % of the router's busy samples in Python's garbage collector and ~21 %
decoding Kafka responses in aiokafka's pure-Python protocol code. Raising the collector's
thresholds (20000/50/100, with and without ``gc.freeze()`` after start) did not move
broadcasts/s or CPU beyond the noise (9.4-12.6/s against 11.5-12.2/s, three drains
each), so it is not in the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import pipeline as pl
from bench._probe import probe_broker
from bench.procstat import cpu_seconds
from bench.pyspy import Profiler
from i24net.envelope import Recipients
from i24net.kafka import KafkaConnection
from i24net.router.testing import hints, police_message


async def one(
    cl: pl.Cluster,
    n: int,
    extra: dict[str, Any],
    tag: str,
    broker: int | None,
    profile: Path | None = None,
) -> str:
    assert cl.net is not None
    gw = cl.net.gateway(pl.SENDER, pl._now_ms())
    backlog = []
    for _ in range(n):
        h, data = gw.message(
            "POLICE_MESSAGE", police_message(pl.PAYLOAD_TEXT), Recipients.all(), pl._now_ms()
        )
        backlog.append((h.message_id, data, hints(h)))
    recipients = [c for c in cl.stations if c != pl.SENDER]
    deliveries = pl.Deliveries(cl.conn, cl.topics, recipients)
    await deliveries.start()
    cfg = cl.router_config(tag, legacy=False)
    text = cfg.read_text()
    lines = [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    cfg.write_text(text.replace("[router]\n", "[router]\n" + "\n".join(lines) + "\n", 1))
    router = cl._spawn(f"router-{tag}", ["router", "--config", str(cfg)])
    prof: Profiler | None = None
    try:
        await cl.group_members(1)
        await asyncio.sleep(2)  # the router's producer and consumer settle
        if profile:
            prof = Profiler(profile, phase=tag)
            prof.start({"router": router.pid})
        cpu0 = (cpu_seconds(router.pid), broker and cpu_seconds(broker), time.process_time())
        producer = AIOKafkaProducer(**cl.conn.client_kwargs(), enable_idempotence=True)
        await producer.start()
        t0 = time.time()
        try:
            for mid, data, hs in backlog:
                await producer.send(
                    str(cl.topics.ingress), key=mid.encode(), value=data, headers=hs
                )
            await producer.flush()
        finally:
            await producer.stop()
        short = await deliveries.wait({m: len(recipients) for m, _, _ in backlog}, 180)
        stamps = [t for m, _, _ in backlog for _, t, _ in deliveries.seen.get(m, ())]
        elapsed = max(stamps) / 1000 - t0
        r = (cpu_seconds(router.pid) - cpu0[0]) / n * 1000
        b = (cpu_seconds(broker) - cpu0[1]) / n * 1000 if broker else float("nan")
        me = (time.process_time() - cpu0[2]) / n * 1000
        if prof:
            prof.stop()
            prof = None
    finally:
        if prof:
            prof.kill()
        await deliveries.stop()
        router.stop()
        cl.services.remove(router)
    return (
        f"{json.dumps(extra):60s} {n / elapsed:6.1f} broadcasts/s  CPU ms/broadcast: router "
        f"{r:5.1f} broker {b:5.1f} reader {me:5.1f}" + (f"  SHORT {short}" if short else "")
    )


async def main_async(bootstrap: str, broker: int | None, a: argparse.Namespace) -> None:
    conn = KafkaConnection(bootstrap=bootstrap)
    configs = [json.loads(c) for c in a.configs] or [{}]
    with tempfile.TemporaryDirectory(prefix="i24net-probe-broadcast-") as d:
        cl = pl.Cluster(conn, Path(d), print)
        try:
            await cl.setup()
            # warm-up: the first broadcasts pay for 195 topics' metadata everywhere
            print("warm-up:", await one(cl, 5, {}, "w", broker), flush=True)
            k = 0
            for _ in range(a.repeat):
                for extra in configs:
                    k += 1
                    line = await one(cl, a.broadcasts, extra, f"c{k}", broker, a.profile)
                    print(line, flush=True)
        finally:
            cl.stop_all()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bootstrap")
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--broadcasts", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--configs", nargs="*", default=[])
    ap.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="py-spy (--native --threads) on the router during each drain; "
        "pyspy-c<k>-router-top.txt and a flame graph per drain in DIR",
    )
    ap.add_argument(
        "--jit",
        choices=("c1", "c2"),
        default="c1",
        help="the probe's own broker: C1 only (LOCAL_JVM_OPTIONS, the default) or tiered C2",
    )
    a = ap.parse_args()
    jvm = None if a.jit == "c1" else ()
    with probe_broker(a.bootstrap, pid=a.broker_pid, heap="1g", jvm_options=jvm) as (
        bootstrap,
        pid,
    ):
        asyncio.run(main_async(bootstrap, pid, a))


if __name__ == "__main__":
    main()
