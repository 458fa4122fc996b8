"""Probe: the gateway drain's client CPU per envelope, one ``send`` each vs record batches.

The drain sends a round of outbox envelopes (``[outbox] batch``, 500) to one partition
and waits for every acknowledgement. This probe does the same with an idempotent
producer configured as the drain's, ``--rounds`` rounds of ``--batch`` envelopes of
``--size`` bytes, once with ``producer.send`` per envelope (before issue 12) and once
with ``create_batch``/``send_batch`` (``gateway/drain.py`` now), and prints this
process's CPU (``/proc/self/stat``) per envelope for each.

    .venv/bin/python -m bench.probe_drain

Measured (issue 12; 20 rounds of 500 envelopes of 3 KiB, twice): 0.014-0.015 ms of
client CPU per envelope with one ``send`` each, 0.010-0.011 ms with the batch API.
The drain already sends a whole round before waiting (one produce request per round,
one SQLite transaction marking it SENT), and 4 us per envelope is ~0.1 % of the
issue's 4 ms budget per message: the drain keeps ``send`` (simpler error handling).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid

from bench._probe import probe_broker
from bench.procstat import cpu_seconds
from i24net.gateway.drain import MAX_REQUEST_SIZE
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics


async def rounds(
    conn: KafkaConnection, topic: str, args: argparse.Namespace, batched: bool
) -> float:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(
        **conn.client_kwargs(),
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=1 << 20,
        max_request_size=MAX_REQUEST_SIZE,
    )
    await p.start()
    try:
        value = os.urandom(args.size)
        headers = [("i24-msgid", b"01J" + b"0" * 23), ("i24-sender", b"FR")]
        me = os.getpid()
        c0 = cpu_seconds(me)
        for _ in range(args.rounds):
            futures = []
            if batched:
                builder = p.create_batch()
                for i in range(args.batch):
                    key = str(i).encode()
                    if builder.append(key=key, value=value, timestamp=None, headers=headers):
                        continue
                    futures.append(await p.send_batch(builder, topic, partition=0))
                    builder = p.create_batch()
                    builder.append(key=key, value=value, timestamp=None, headers=headers)
                if builder.record_count():
                    futures.append(await p.send_batch(builder, topic, partition=0))
            else:
                for i in range(args.batch):
                    futures.append(
                        await p.send(
                            topic, value, key=str(i).encode(), headers=headers, partition=0
                        )
                    )
            await asyncio.gather(*futures)
        return (cpu_seconds(me) - c0) * 1000 / (args.rounds * args.batch)
    finally:
        await p.stop()


async def main(args: argparse.Namespace, bootstrap: str) -> dict[str, float]:
    conn = KafkaConnection(bootstrap=bootstrap, client_id="probe-drain")
    topic = f"probe-drain.{uuid.uuid4().hex[:6]}"
    await ensure_topics(conn, [TopicSpec(topic, 1)])
    await rounds(conn, topic, args, True)  # warm-up
    out = {}
    for _ in range(args.repeat):
        out.setdefault("send_each_ms_per_envelope", []).append(
            round(await rounds(conn, topic, args, False), 4)
        )
        out.setdefault("batch_api_ms_per_envelope", []).append(
            round(await rounds(conn, topic, args, True), 4)
        )
    return out  # type: ignore[return-value]


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--size", type=int, default=3072)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    with probe_broker(args.bootstrap, heap="512m") as (bootstrap, _):
        out = asyncio.run(main(args, bootstrap))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cli()
