"""Probe: a ``producer_byte_rate`` client quota holds a flooding producer to its rate.

What ``i24net provision`` sets per station principal (``QuotaPolicy``), shown on a
plain broker: there every client is ``User:ANONYMOUS``, so the quota is set on that
user through the same admin call (``SecurityAdmin.alter_user_quotas``). A producer
then writes ``--mib`` MiB as fast as it can, once without and once with the quota;
the achieved rate is printed for both. The broker slows the producer by delaying its
responses (nothing is refused), so the rate with the quota tends to the quota as the
flood lasts (the first seconds of the broker's 11 s quota window are a burst allowance).

    .venv/bin/python -m bench.probe_quota --rate-kib 512 --mib 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

from bench._probe import probe_broker
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.kafka.acls import SecurityAdmin


async def flood(conn: KafkaConnection, topic: str, mib: float, record_kib: int) -> float:
    """Bytes per second achieved writing ``mib`` MiB in ``record_kib`` KiB records."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(**conn.client_kwargs(), enable_idempotence=True, linger_ms=5)
    await p.start()
    try:
        value = os.urandom(record_kib << 10)
        n = int(mib * 1024 / record_kib)
        t0 = time.monotonic()
        futures = [await p.send(topic, value) for _ in range(n)]
        await asyncio.gather(*futures)
        return n * len(value) / (time.monotonic() - t0)
    finally:
        await p.stop()


async def main(args: argparse.Namespace, bootstrap: str) -> dict[str, float]:
    conn = KafkaConnection(bootstrap=bootstrap, client_id="probe-quota")
    topic = f"probe-quota.{uuid.uuid4().hex[:6]}"
    await ensure_topics(conn, [TopicSpec(topic, 1)])
    free = await flood(conn, topic, args.mib, args.record_kib)
    want = {"producer_byte_rate": float(args.rate_kib * 1024)}
    async with SecurityAdmin(conn) as admin:
        await admin.alter_user_quotas({"ANONYMOUS": dict(want)})
        # The controller commits the quota; the broker applies it from the metadata log
        # a moment later: wait until it describes it (with a deadline).
        deadline = time.monotonic() + 30
        while (await admin.user_quotas()).get("ANONYMOUS") != want:
            assert time.monotonic() < deadline, "the quota was not applied within 30 s"
            await asyncio.sleep(0.2)
    throttled = await flood(conn, topic, args.mib, args.record_kib)
    async with SecurityAdmin(conn) as admin:
        await admin.alter_user_quotas({"ANONYMOUS": {"producer_byte_rate": None}})
    return {
        "quota_kib_per_s": args.rate_kib,
        "mib_written": args.mib,
        "without_quota_kib_per_s": round(free / 1024, 1),
        "with_quota_kib_per_s": round(throttled / 1024, 1),
    }


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", help="a plain broker of your own (no authorizer)")
    ap.add_argument("--rate-kib", type=int, default=512)
    ap.add_argument("--mib", type=float, default=8.0)
    ap.add_argument("--record-kib", type=int, default=32)
    args = ap.parse_args()
    with probe_broker(args.bootstrap, heap="512m") as (bootstrap, _):
        out = asyncio.run(main(args, bootstrap))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    cli()
