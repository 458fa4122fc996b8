"""Probe: the router's CPU per message, the broker's, and records per transaction.

One ``RouterApp`` runs in this process (so this process's CPU is the router's); a
child process writes pre-sealed envelopes at a fixed open-loop rate: FR -> JP
messages and as many JP -> FR messages (two active senders, as messages and
receipts always are). CPU is read from ``/proc/<pid>/stat`` for this process and for
the broker's JVM over the measured window, and divided by the records routed.

Variants, to show each change of issue 12 on its own:

* ``legacy``: the old ingress layout, ``i24.out.<station>`` x 3 partitions
  for ``--stations`` stations (591 partitions with 197), every envelope on its
  sender's topic; ``ingress``: the shared ``i24.out`` (12 partitions), each
  sender's envelopes in its partition (``murmur2(code) mod 12``), legacy topics off.
* ``old`` (linger): the router's batching before issue 12 (the linger skipped
  whenever two senders are active), patched in for comparison.

Also counted: ``CONCURRENT_TRANSACTIONS`` answers to the transactional producer
(AddOffsets/AddPartitions while the previous transaction's markers are written;
aiokafka retries after ``retry_backoff_ms``).

    .venv/bin/python -m bench.probe_router --rate 30 --seconds 20 \\
        --variants legacy:old legacy:window ingress:old ingress:window
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

import i24net
from bench._probe import probe_broker
from bench.procstat import cpu_seconds
from i24net.envelope import Recipients
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.provision import OUT_TOPIC_CONFIG
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import build_network, hints, police_message, provision, settings_toml
from i24net.stations import all_stations

POLICY = Path(i24net.__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
CONCURRENT_TRANSACTIONS = 51


@dataclass
class Result:
    layout: str
    linger: str
    rate_per_sender: float
    records: int
    transactions: int
    records_per_transaction: float
    router_ms_per_record: float
    broker_ms_per_record: float
    concurrent_transactions: int
    seconds: float


def _now() -> int:
    return time.time_ns() // 1_000_000


Item = tuple[str, int | None, bytes, bytes, list[tuple[str, bytes]]]


def _produce(bootstrap: str, items: list[Item], rate: float) -> None:
    """Child process: ``items`` (topic, partition, key, value, headers) at ``rate``/s."""

    async def main() -> None:
        from aiokafka import AIOKafkaProducer

        p = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            linger_ms=0,
            max_request_size=2 << 20,
        )
        await p.start()
        try:
            t0 = time.monotonic()
            for i, (topic, partition, key, value, headers) in enumerate(items):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await p.send(topic, value, key=key, headers=headers, partition=partition)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(main())


def _count_concurrent_transactions() -> list[int]:
    """Count error code 51 seen by aiokafka's response handlers (they all go through
    ``aiokafka.errors.for_code``)."""
    import aiokafka.errors as errors

    counter = [0]
    original = errors.for_code

    def for_code(code: int) -> Any:
        if code == CONCURRENT_TRANSACTIONS:
            counter[0] += 1
        return original(code)

    errors.for_code = for_code  # type: ignore[assignment]
    return counter


def _old_linger() -> None:
    """The batching of ``RouterApp._step`` before issue 12: one extra fetch of
    ``batch_linger_ms`` after a fetch, skipped while two or more senders are active."""

    async def _linger(self: RouterApp) -> None:
        s = self.settings.router
        sched = self.scheduler
        if self._first_fetched is None or self._shared(self._monotonic()):
            return  # the old code lingered only while a single sender was active
        if s.batch_linger_ms and len(sched) < s.batch_max_records:
            more = await self._consumer.getmany(timeout_ms=s.batch_linger_ms, max_records=2000)
            if more:
                self._fetched(more, self._monotonic())

    RouterApp._linger = _linger  # type: ignore[method-assign]


NEW_LINGER = RouterApp._linger


def _sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def run(
    args: argparse.Namespace,
    layout: str,
    old_linger: bool,
    bootstrap: str,
    broker_pid: int,
    tmp: Path,
    concurrent: list[int],
) -> Result:
    conn = KafkaConnection(bootstrap=bootstrap, client_id="probe")
    prefix = f"probe{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix=prefix)
    net = build_network(("FR", "JP"), tmp / "keys", now_ms=_now())
    await provision(conn, net, topics)  # directory, i24.in.*, i24.out.{FR,JP,GS}
    legacy = layout == "legacy"
    parts = 12
    if legacy:
        others = [c for c in sorted(all_stations()) if c not in ("FR", "JP", "GS")]
        await ensure_topics(
            conn,
            [
                TopicSpec(topics.out(c), 3, config=OUT_TOPIC_CONFIG)
                for c in others[: args.stations - 3]
            ],
        )
    else:
        await ensure_topics(conn, [TopicSpec(topics.ingress, parts, config=OUT_TOPIC_CONFIG)])
    cfg = tmp / "router.toml"
    cfg.write_text(
        settings_toml(
            instance="p",
            bootstrap=bootstrap,
            prefix=prefix,
            keys_dir=tmp / "keys",
            state_dir=tmp / "state",
            policy=POLICY,
            group=prefix + "router",
            extra_router={"legacy_out_topics": legacy, "audit_verify_interval_ms": 0},
        )
    )
    if old_linger:
        _old_linger()
    else:
        RouterApp._linger = NEW_LINGER  # type: ignore[method-assign]
    # Envelopes sealed before the window: FR -> JP and JP -> FR, interleaved.
    from aiokafka.partitioner import murmur2

    n = int(args.rate * args.seconds)
    items: list[Item] = []
    for i in range(n):
        for sender, to in (("FR", "JP"), ("JP", "FR")):
            h, data = net.gateway(sender, _now()).message(
                "POLICE_MESSAGE", police_message(f"Theft {i}"), Recipients.to(to), _now()
            )
            if legacy:
                topic, partition = topics.out(sender), None
            else:
                topic = topics.ingress
                partition = (murmur2(sender.encode()) & 0x7FFFFFFF) % parts
            items.append((topic, partition, h.message_id.encode(), data, list(hints(h))))
    registry = CollectorRegistry()
    async with RouterApp(load_settings(cfg), registry) as app:
        stop = asyncio.Event()
        task = asyncio.create_task(app.run(stop))
        deadline = time.monotonic() + 60
        while not app._consumer.assignment() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the consumer exposes no event for its assignment
        await asyncio.sleep(3)  # group settled, first empty fetches done
        me = os.getpid()
        c0, b0, t0 = cpu_seconds(me), cpu_seconds(broker_pid), time.monotonic()
        tx0 = _sample(registry, "i24net_router_transactions_total", {"result": "committed"})
        cc0 = concurrent[0]
        proc = multiprocessing.get_context("spawn").Process(
            target=_produce, args=(bootstrap, items, 2 * args.rate)
        )
        proc.start()
        routed = 0
        deadline = time.monotonic() + args.seconds * 3 + 60
        while routed < len(items) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            routed = int(
                sum(
                    _sample(
                        registry,
                        "i24net_router_messages_total",
                        {"kind": "POLICE_MESSAGE", "precedence": p, "outcome": st},
                    )
                    for p in ("ROUTINE",)
                    for st in ("delivered", "held", "refused")
                )
            )
        c1, b1, t1 = cpu_seconds(me), cpu_seconds(broker_pid), time.monotonic()
        tx = _sample(registry, "i24net_router_transactions_total", {"result": "committed"}) - tx0
        stop.set()
        await task
        await asyncio.to_thread(proc.join, 30)
    return Result(
        layout=f"{layout}-{args.stations * 3 if legacy else parts}",
        linger="old" if old_linger else "window",
        rate_per_sender=args.rate,
        records=routed,
        transactions=int(tx),
        records_per_transaction=round(routed / max(tx, 1), 2),
        router_ms_per_record=round((c1 - c0) * 1000 / max(routed, 1), 3),
        broker_ms_per_record=round((b1 - b0) * 1000 / max(routed, 1), 3),
        concurrent_transactions=concurrent[0] - cc0,
        seconds=round(t1 - t0, 1),
    )


async def main(args: argparse.Namespace, bootstrap: str, broker_pid: int, tmp: Path) -> None:
    concurrent = _count_concurrent_transactions()
    if args.warmup_seconds:  # the broker's JIT compiles during its first minute of work
        warm = argparse.Namespace(**{**vars(args), "seconds": args.warmup_seconds})
        await run(warm, "ingress", False, bootstrap, broker_pid, tmp / "warmup", concurrent)
    for _ in range(args.repeat):
        for variant in args.variants:
            layout, linger = variant.split(":")
            r = await run(
                args, layout, linger == "old", bootstrap, broker_pid, tmp / variant, concurrent
            )
            print(json.dumps(asdict(r)), flush=True)


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap")
    ap.add_argument("--broker-pid", type=int)
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["legacy:old", "legacy:window", "ingress:old", "ingress:window"],
        help="layout:linger pairs (layout legacy|ingress, linger old|window)",
    )
    ap.add_argument("--rate", type=float, default=30.0, help="messages/s per sender (2 senders)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--stations", type=int, default=197)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--warmup-seconds", type=float, default=10.0, help="0: no warm-up run")
    args = ap.parse_args()
    if args.bootstrap and args.broker_pid is None:
        ap.error("--broker-pid is needed with --bootstrap")
    with (
        tempfile.TemporaryDirectory() as tmp,
        probe_broker(args.bootstrap, pid=args.broker_pid) as (bootstrap, pid),
    ):
        assert pid is not None
        asyncio.run(main(args, bootstrap, pid, Path(tmp)))


if __name__ == "__main__":
    cli()
