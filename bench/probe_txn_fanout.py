"""How much a transaction that writes to N topics costs, client and broker (issue 17: a
broadcast is one record to each of 195 ``i24.in.<station>`` topics).

    python -m bench.probe_txn_fanout [--topics 195] [--per-txn 1,2,4] [--rounds 30]

A transactional aiokafka producer (the router's settings: linger 2 ms, retry backoff
10 ms) writes ``per-txn`` broadcasts -- one 2.6 KB record to each of ``--topics``
single-partition topics per broadcast -- and commits; back to back, ``--rounds`` times.
Reported per broadcast: wall ms, client CPU ms, broker CPU ms; and per transaction the
wall ms of send+flush and of the commit. Nothing else runs, so the figures are the floor
the router's commit path sits on.

Measured (session 5, 2026-12-01, 30 rounds, 2.6 KB records as a hybrid delivery):

| broadcasts per transaction | broadcasts/s | client CPU ms | broker CPU ms | send+flush ms/txn |
|---:|---:|---:|---:|---:|
| 1 | 12.9-14.8 | 23-27 | 40-52 | 65-74 |
| 2 | 24.9 | 17 | 26 | 77 |
| 4 | 44.6-47.9 | 9.6-11 | 12.7-14.5 | 80-87 |

Without any cryptography, a transaction per broadcast caps a producer at ~14/s here: the
per-partition costs (AddPartitionsToTxn, 195 appends and 195 commit markers on the
broker; per-partition batches and the request's encoding in aiokafka's Python) dominate.
``--explicit-partition`` (no murmur2 hash per record) made no measurable difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench._probe import probe_broker
from bench.procstat import cpu_seconds


async def run(
    bootstrap: str,
    broker_pid: int | None,
    topics: int,
    per: list[int],
    rounds: int,
    explicit_partition: bool,
) -> None:
    names = [f"fan.{uuid.uuid4().hex[:6]}.{i:03d}" for i in range(topics)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    await admin.close()
    p = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"fan-{uuid.uuid4().hex[:6]}",
        enable_idempotence=True,
        linger_ms=2,
        retry_backoff_ms=10,
        max_request_size=8 << 20,
    )
    await p.start()
    value = os.urandom(2600)
    try:
        for k in [per[0], *per]:  # the first is a warm-up (metadata for every topic)
            wall_send = wall_commit = 0.0
            me0, b0, t0 = (
                time.process_time(),
                broker_pid and cpu_seconds(broker_pid),
                time.perf_counter(),
            )
            for r in range(rounds):
                a = time.perf_counter()
                await p.begin_transaction()
                futs = []
                for b in range(k):
                    key = f"m{r}-{b}".encode()
                    for n in names:
                        kw = {"partition": 0} if explicit_partition else {}
                        futs.append(await p.send(n, key=key, value=value, **kw))
                await asyncio.gather(*futs)
                c = time.perf_counter()
                await p.commit_transaction()
                wall_send += c - a
                wall_commit += time.perf_counter() - c
            wall = time.perf_counter() - t0
            me = time.process_time() - me0
            br = (cpu_seconds(broker_pid) - b0) if broker_pid else float("nan")
            n = rounds * k
            print(
                f"{k} broadcast(s)/txn x {topics} topics: {n / wall:6.1f} broadcasts/s | "
                f"per broadcast: "
                f"wall {wall / n * 1000:6.1f} ms, client CPU {me / n * 1000:5.1f} ms, broker CPU "
                f"{br / n * 1000:5.1f} ms | per txn: send+flush "
                f"{wall_send / rounds * 1000:5.1f} ms, "
                f"commit {wall_commit / rounds * 1000:5.1f} ms",
                flush=True,
            )
    finally:
        await p.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bootstrap")
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument("--topics", type=int, default=195)
    ap.add_argument("--per-txn", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--explicit-partition", action="store_true")
    a = ap.parse_args()
    with probe_broker(a.bootstrap, pid=a.broker_pid) as (bootstrap, pid):
        asyncio.run(
            run(
                bootstrap,
                pid,
                a.topics,
                [int(x) for x in a.per_txn.split(",")],
                a.rounds,
                a.explicit_partition,
            )
        )


if __name__ == "__main__":
    main()
