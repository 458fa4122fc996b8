"""Gateway figures for ``make bench``.

``run(conn, ...) -> dict`` (synchronous; ``run_async`` inside a loop):

- ``intake_rps``: POST /v1/messages through the real HTTP API with a bounded
  number of concurrent clients (validate + seal + durable SQLite commit). The
  load generator runs in **its own process** (a minimal keep-alive HTTP/1.1
  client over ``concurrency`` connections), so that its CPU time is not
  charged to the gateway's event loop; ``intake_rps_1`` is the same with one
  client, ``intake_p50_ms``/``intake_p99_ms`` the request latencies seen by
  the clients, ``intake_commits`` the SQLite commits the requests shared;
- ``drain_msgs_per_s``: outbox -> ``out`` topic, acked (``acks=all``), measured on
  a backlog built while the producer was held back;
- ``inbound_msgs_per_s``: delivery envelopes pre-produced to the ``in`` topic,
  verified + decrypted + stored + receipt queued, per second;
- ``rss_mib``: resident memory of the process running the gateway, under load.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.gateway import Gateway, parse_settings
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.keys import RootSecrets, StationSecrets, save_root, save_station
from i24net.replay import ReplayWindow
from i24net.schemas import SchemaStore
from i24net.stations import station

STATIONS = ("FR", "GS", "JP")
PM = {"subject_line": "bench", "text": "x" * 600, "attachments": []}


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _world(tmp: Path, store: SchemaStore) -> tuple[dict[str, StationSecrets], Directory]:
    now = system_clock() - 60_000
    root = RootSecrets.generate(now_ms=now)
    save_root(root, tmp / "keys")
    secrets = {c: StationSecrets.generate(c, now_ms=now) for c in STATIONS}
    for s in secrets.values():
        save_station(s, tmp / "keys")
    d = Directory(
        StationRecord.for_station(station(c), [s.public()], valid_from_ms=now, issued_ms=now)
        for c, s in secrets.items()
    )
    (tmp / "entries").mkdir()
    for code, e in d.sign(root, store).items():
        (tmp / "entries" / f"{code}.entry").write_bytes(e)
    return secrets, d


def _settings(tmp: Path, code: str, conn: KafkaConnection, prefix: str) -> Any:
    return parse_settings(
        {
            "station": code,
            "data_dir": str(tmp / f"gw-{code}"),
            "keys": {
                "secret": str(tmp / "keys" / f"{code}.secret.json"),
                "root_public": str(tmp / "keys" / "gs-root.public.json"),
            },
            "directory": {"entries": str(tmp / "entries")},
            "kafka": {"bootstrap": conn.bootstrap, "topic_prefix": prefix},
            "api": {"port": 0},
            "outbox": {"progress_log_s": 3600},
        }
    )


async def _load_async(
    port: int, body: bytes, messages: int, concurrency: int, token: str | None = None
) -> tuple[float, list[float]]:
    """POST ``body`` ``messages`` times over ``concurrency`` keep-alive connections
    (with ``Authorization: Bearer`` when the gateway requires a token)."""
    auth = b"Authorization: Bearer " + token.encode() + b"\r\n" if token else b""
    request = (
        b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + auth
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    left = messages
    latencies: list[float] = []

    async def client() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length)
                if status != 202:
                    raise RuntimeError(f"intake answered {status}: {answer[:200]!r}")
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


def load(
    port: int, body: bytes, messages: int, concurrency: int, token: str | None = None
) -> tuple[float, list[float]]:
    """The load generator's entry point (run in a separate process): (seconds, latencies)."""
    return asyncio.run(_load_async(port, body, messages, concurrency, token))


async def _intake(
    pool: ProcessPoolExecutor, port: int, messages: int, concurrency: int, token: str | None
) -> tuple[float, list[float]]:
    body = json.dumps({"kind": "POLICE_MESSAGE", "to": ["JP"], "payload": PM}).encode()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, load, port, body, messages, concurrency, token)


def _integrator_token(data_dir: Path) -> str | None:
    """A token for a gateway whose API requires one (none before integrator auth)."""
    try:
        from i24net.gateway.auth import create_integrator
    except ImportError:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    return create_integrator(
        data_dir / "integrators.sqlite3", "bench", ["send"], rate_per_s=100_000, burst=100_000
    )


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_async(
    conn: KafkaConnection, *, messages: int = 3000, concurrency: int = 16
) -> dict[str, Any]:
    store = SchemaStore.default()
    prefix = f"bench-gw-{uuid.uuid4().hex[:8]}"
    out: dict[str, Any] = {"messages": messages, "concurrency": concurrency}
    await ensure_topics(
        conn,
        [TopicSpec(f"{prefix}.{d}.{c}") for d in ("out", "in") for c in STATIONS]
        + [TopicSpec(f"{prefix}.out", 12)],  # the shared ingress topic (issue 12's layout)
    )
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        secrets, directory = _world(tmp, store)
        token = _integrator_token(tmp / "gw-FR")
        gw = Gateway(_settings(tmp, "FR", conn, prefix))
        # 1. intake, with the drain held back so the outbox builds a backlog
        gate = asyncio.Event()
        real_run = gw.drainer.run

        async def held(stop: asyncio.Event) -> None:
            await gate.wait()
            await real_run(stop)

        gw.drainer.run = held  # type: ignore[method-assign]
        spawn = multiprocessing.get_context("spawn")
        async with gw:
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                await _intake(pool, gw.port, 50, 4, token)  # warm-up (imports, connections)
                single = max(100, messages // 10)
                dt, _ = await _intake(pool, gw.port, single, 1, token)
                out["intake_rps_1"] = single / dt
                commits, cpu = gw.db.commits, time.process_time()
                dt, lat = await _intake(pool, gw.port, messages, concurrency, token)
                out["intake_commits"] = gw.db.commits - commits
                out["intake_cpu_ms_per_request"] = 1000 * (time.process_time() - cpu) / messages
            out["intake_rps"] = messages / dt
            out["intake_p50_ms"] = _ms(lat, 0.5)
            out["intake_p99_ms"] = _ms(lat, 0.99)
            out["rss_mib_after_intake"] = _rss_mib()
            # 2. drain the backlog
            t0 = time.perf_counter()
            gate.set()
            while gw.backlog.messages:  # noqa: ASYNC110 (polling a counter, by design)
                await asyncio.sleep(0.02)
            total = messages + single + 50
            out["drain_msgs_per_s"] = total / (time.perf_counter() - t0)
        # 3. inbound: pre-produce deliveries to JP, then time verify + store
        from aiokafka import AIOKafkaProducer

        now = system_clock()
        router = Router(secrets["GS"], directory, ReplayWindow(clock=system_clock), store=store)
        sender = Sender(secrets["FR"], directory.current_encryption_key("GS", now), store=store)
        payload = store.encode_single(
            "net.i24.PoliceMessage", {**PM, "in_reply_to": None, "case_reference": None}
        )
        producer = AIOKafkaProducer(**conn.client_kwargs(), linger_ms=5)
        await producer.start()
        try:
            futs = []
            for _ in range(messages):
                h = Header(
                    message_id=new_message_id(now),
                    sender="FR",
                    sender_key_id=secrets["FR"].signing_key_id,
                    recipients=Recipients.to("JP"),
                    kind="POLICE_MESSAGE",
                    precedence=Precedence.ROUTINE,
                    created_ms=now,
                    expires_ms=now + 3_600_000,
                    language=Language.EN,
                    payload_fingerprint=store.fingerprint("net.i24.PoliceMessage"),
                )
                env = router.deliver(router.open(sender.seal(h, payload)), ["JP"])["JP"]
                futs.append(await producer.send(f"{prefix}.in.JP", env))
            await asyncio.gather(*futs)
        finally:
            await producer.stop()
        jp = Gateway(_settings(tmp, "JP", conn, prefix))
        async with jp:
            while jp.inbound.processed == 0:  # noqa: ASYNC110 (join time is not the rate)
                await asyncio.sleep(0.01)
            t0, base = time.perf_counter(), jp.inbound.processed
            peak = 0.0
            while jp.inbound.processed < messages:
                await asyncio.sleep(0.05)
                peak = max(peak, _rss_mib())
            dt = time.perf_counter() - t0
            out["inbound_msgs_per_s"] = (messages - base) / dt if dt > 0 else float("nan")
            out["rss_mib_under_inbound"] = peak
    out["rss_mib"] = max(out["rss_mib_after_intake"], out["rss_mib_under_inbound"])
    return out


def run(conn: KafkaConnection, **kw: Any) -> dict[str, Any]:
    return asyncio.run(run_async(conn, **kw))


def main() -> None:
    """``python -m bench.gateway [BOOTSTRAP]``: without a bootstrap, a local broker is started."""
    import sys

    if len(sys.argv) > 1:
        print(json.dumps(run(KafkaConnection(bootstrap=sys.argv[1])), indent=2))
        return
    from i24net.kafka import Broker, BrokerSettings

    with tempfile.TemporaryDirectory(prefix="i24net-bench-") as d:
        broker = Broker(BrokerSettings(data_dir=Path(d), heap="768m"))
        broker.start()
        try:
            print(json.dumps(run(KafkaConnection(bootstrap=broker.bootstrap)), indent=2))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
