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

**The client choice, measured** (issue 12): the same transactions with confluent-kafka
2.16 (librdkafka 2.16, same broker, same run, ``--clients aiokafka,confluent``):

| broadcasts per transaction | client | broadcasts/s | client CPU ms | broker CPU ms |
|---:|---|---:|---:|---:|
| 1 | aiokafka | 12.2 | 29.5 | 39.5 |
| 1 | confluent-kafka | 3.0 | 29.3 | 305 |
| 2 | aiokafka | 24.0 | 19.5 | 24.0 |
| 2 | confluent-kafka | 8.3 | 14.5 | 113 |
| 4 | aiokafka | 35.5 | 13.6 | 11.7 |
| 4 | confluent-kafka | 13.6 | 9.1 | 64.5 |

librdkafka's own CPU is lower (its threads are counted: this process's CPU time) but, with
the router's settings (linger 2 ms, retry backoff 10 ms) and no further tuning, it
costs the broker 5-8 times more per broadcast on this path, as the issue found for fetches
(13-17 ms per record). The project keeps aiokafka.
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


def _line(
    client: str,
    k: int,
    topics: int,
    n: int,
    wall: float,
    me: float,
    br: float,
    sends: float,
    commits: float,
    rounds: int,
) -> str:
    return (
        f"{client:10s} {k} broadcast(s)/txn x {topics} topics: {n / wall:6.1f} broadcasts/s | "
        f"per broadcast: wall {wall / n * 1000:6.1f} ms, client CPU {me / n * 1000:5.1f} ms, "
        f"broker CPU {br / n * 1000:5.1f} ms | per txn: send+flush "
        f"{sends / rounds * 1000:5.1f} ms, commit {commits / rounds * 1000:5.1f} ms"
    )


def run_confluent(
    bootstrap: str, broker_pid: int | None, names: list[str], per: list[int], rounds: int
) -> None:
    """The same transactions with confluent-kafka (librdkafka): its client CPU includes its
    own threads (this process's CPU time)."""
    try:
        from confluent_kafka import Producer
    except ImportError:
        print("confluent-kafka is not installed (make venv installs it): skipped")
        return
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"fanc-{uuid.uuid4().hex[:6]}",
            "enable.idempotence": True,
            "linger.ms": 2,
            "retry.backoff.ms": 10,
            "message.max.bytes": 8 << 20,
        }
    )
    p.init_transactions(30)
    value = os.urandom(2600)
    for k in [per[0], *per]:  # the first is a warm-up
        sends = commits = 0.0
        me0, b0, t0 = (
            time.process_time(),
            broker_pid and cpu_seconds(broker_pid),
            time.perf_counter(),
        )
        for r in range(rounds):
            a = time.perf_counter()
            p.begin_transaction()
            for b in range(k):
                key = f"m{r}-{b}".encode()
                for n in names:
                    p.produce(n, key=key, value=value, partition=0)
            p.flush(30)
            c = time.perf_counter()
            p.commit_transaction(30)
            sends += c - a
            commits += time.perf_counter() - c
        wall = time.perf_counter() - t0
        me = time.process_time() - me0
        br = (cpu_seconds(broker_pid) - b0) if broker_pid else float("nan")
        print(_line("confluent", k, len(names), rounds * k, wall, me, br, sends, commits, rounds))


async def run(
    bootstrap: str,
    broker_pid: int | None,
    topics: int,
    per: list[int],
    rounds: int,
    explicit_partition: bool,
    clients: list[str],
) -> None:
    names = [f"fan.{uuid.uuid4().hex[:6]}.{i:03d}" for i in range(topics)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(n, 1, 1) for n in names])
    await admin.close()
    if "confluent" in clients:
        await asyncio.to_thread(run_confluent, bootstrap, broker_pid, names, per, rounds)
    if "aiokafka" not in clients:
        return
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
            print(
                _line(
                    "aiokafka", k, topics, rounds * k, wall, me, br, wall_send, wall_commit, rounds
                ),
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
    ap.add_argument(
        "--clients",
        default="aiokafka,confluent",
        help="aiokafka (the project's client) and/or confluent (confluent-kafka, librdkafka)",
    )
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
                a.clients.split(","),
            )
        )


if __name__ == "__main__":
    main()
