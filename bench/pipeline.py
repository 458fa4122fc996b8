"""The i24net pipeline end to end, with the real services as separate processes.

    integrator --HTTP--> FR gateway --i24.out.FR--> router --i24.in.JP--> JP gateway (stored)

``i24net gateway --config`` (FR, JP) and ``i24net router --config`` run as
subprocesses of the bench, against the broker of ``conn``, so their peak RSS
(``VmHWM``) and CPU seconds are their own. The bench process is the integrator
(``AsyncGatewayClient``) and reads JP's inbox through its long-poll API; a
message counts as stored at the ``received_ms`` the JP gateway wrote with it
(same host, same clock as the send times).

Parts (``run(conn, parts=...)``):

- ``pipeline``: a burst of ``messages`` 1 KiB police messages, throughput from
  the first POST to the last message stored at JP; CPU milliseconds per
  message of every process (router, FR, JP, the broker JVM, the load
  generator: ``bench.procstat.CpuMeter``) and peak RSS of each service; under
  ``--profile``, py-spy records the router and both gateways during it;
- ``trickle``: open-loop load at a fixed, low rate (30 msgs/s): the CPU per
  message when the system is nearly idle, where fixed per-fetch and
  per-transaction costs are not amortised by batching;
- ``latency``: open-loop load (``bench.stats.open_loop_schedule``) at fractions
  of the measured maximum; latency from each message's *scheduled* send time
  to its storage at JP, and the CPU of each process (a phase that saturated
  the host is flagged: it measures queueing for a core, not the design);
- ``broadcast``: FR sends ``to_all`` (195 recipients). The 195 recipients are
  not 195 gateways: the bench reads every ``i24.in.<station>`` topic
  ``read_committed`` (a delivery counts as stored once the router's
  transaction committed it), and afterwards opens every delivery with that
  station's ``Receiver`` (signatures, attestation, decryption);
- ``scale``: a pre-sealed backlog from 16 stations (FakeGateway) drained by 1
  then 2 router processes sharing the consumer group and partitions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import i24net
from bench.procstat import CpuMeter, cpu_seconds, peak_rss_mib, phase_cpu
from bench.pyspy import Profiler
from bench.report import loadavg
from bench.stats import open_loop_schedule, summarize
from bench.topology import (
    ensure_router_topics,
    has_ingress,
    layout,
    provision_kwargs,
    router_extra,
    router_overrides,
    station_out,
)
from i24net.client import AsyncGatewayClient
from i24net.clock import system_clock
from i24net.envelope import Receiver, Recipients
from i24net.kafka import KafkaConnection
from i24net.replay import ReplayWindow
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import (
    Network,
    build_network,
    hints,
    police_message,
    provision,
    settings_toml,
)
from i24net.stations import GS, MEMBER_COUNTRIES

ROOT = Path(__file__).resolve().parents[1]
# The policy of the code under test: a checkout's deploy/ next to its src/i24net
# (with PYTHONPATH=<worktree>/src the bench measures that worktree, policy included).
POLICY = Path(i24net.__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
PAYLOAD_TEXT = "x" * 1000  # with the subject and Avro framing: a 1 KiB payload
PM = {"subject_line": "bench", "text": PAYLOAD_TEXT, "attachments": []}
SENDER, RECIPIENT = "FR", "JP"
OUT_PARTITIONS = 3  # of each i24.out.<station> topic (the old layout)
WARM_BROADCASTS = 2  # sent alone before the measured ones, not counted
Say = Callable[[str], None]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    token: str | None = None  # the bench's integrator on a gateway, when it has auth
    cpu_marks: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}; its log:\n{self.tail()}"
            )

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss(self) -> float:
        return peak_rss_mib(self.pid)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Cluster:
    """Keys for every member station, topics under a unique prefix, service processes."""

    def __init__(
        self, conn: KafkaConnection, tmp: Path, say: Say, profile_dir: Path | None = None
    ) -> None:
        self.conn, self.tmp, self.say = conn, tmp, say
        self.profile_dir = profile_dir
        self.topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
        self.group = f"{self.topics.prefix}router"
        self.stations = sorted(MEMBER_COUNTRIES)
        self.net: Network | None = None
        self.services: list[Service] = []
        self.legacy_topics = True

    async def setup(self) -> Network:
        t0 = time.perf_counter()
        net = build_network(self.stations, self.tmp / "keys", now_ms=_now_ms())
        extra = provision_kwargs()
        self.legacy_topics = not extra  # the per-station i24.out.<station> topics exist
        await provision(self.conn, net, self.topics, out_partitions=OUT_PARTITIONS, **extra)
        cfg = self.router_config("topics", legacy=False)
        await ensure_router_topics(self.conn, load_settings(cfg))
        entries = self.tmp / "entries"
        entries.mkdir()
        for code, entry in net.entries.items():
            (entries / f"{code}.entry").write_bytes(entry)
        self.net = net
        self.say(
            f"  {len(net.secrets)} stations' keys, signed directory, "
            f"topics ({layout(self.legacy_topics)}) in {time.perf_counter() - t0:.1f}s"
        )
        return net

    def _spawn(self, name: str, args: list[str]) -> Service:
        log = self.tmp / f"{name}.log"
        cmd = [sys.executable, "-c", "from i24net.cli import main; raise SystemExit(main())"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*cmd, *args], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        svc = Service(name, proc, log)
        self.services.append(svc)
        return svc

    def start_gateway(self, code: str) -> Service:
        port = _free_port()
        token = _integrator_token(self.tmp / f"gw-{code}")
        keys = self.tmp / "keys"
        q = json.dumps
        cfg = self.tmp / f"gateway-{code}.toml"
        cfg.write_text(
            f"station = {q(code)}\n"
            f"data_dir = {q(str(self.tmp / f'gw-{code}'))}\n"
            "shutdown_grace_s = 5\n"
            "[keys]\n"
            f"secret = {q(str(keys / f'{code}.secret.json'))}\n"
            f"root_public = {q(str(keys / 'gs-root.public.json'))}\n"
            "[directory]\n"
            f"entries = {q(str(self.tmp / 'entries'))}\n"
            "[kafka]\n"
            f"bootstrap = {q(self.conn.bootstrap)}\n"
            f"topic_prefix = {q(self.topics.prefix + 'i24')}\n"
            "[api]\n"
            f"port = {port}\n"
            "[outbox]\n"
            "progress_log_s = 3600\n"
        )
        svc = self._spawn(f"gateway-{code}", ["gateway", "--config", str(cfg)])
        svc.port, svc.token = port, token
        return svc

    def start_router(self, instance: str, *, legacy: bool) -> Service:
        """``legacy``: also drain the per-station topics (while gateways write them)."""
        cfg = self.router_config(instance, legacy=legacy)
        return self._spawn(f"router-{instance}", ["router", "--config", str(cfg)])

    def router_config(self, instance: str, *, legacy: bool) -> Path:
        cfg = self.tmp / f"router-{instance}.toml"
        cfg.write_text(
            settings_toml(
                instance=instance,
                bootstrap=self.conn.bootstrap,
                prefix=self.topics.prefix,
                keys_dir=self.tmp / "keys",
                state_dir=self.tmp / "router-state",
                policy=POLICY,
                group=self.group,
                extra_router=router_extra(legacy=legacy),
            )
        )
        return cfg

    async def gateway_writes_ingress(self, gw: Service, within_s: float = 60.0) -> bool:
        """Where a gateway's outbox writes, seen in the data: one probe message through
        its API, then whichever of the ingress topic and its own ``i24.out.<station>``
        gets a record first (the router, started after, routes it as any other)."""
        if not has_ingress():
            return False
        ingress = str(getattr(self.topics, "ingress"))  # noqa: B009
        legacy = self.topics.out(SENDER)
        rs: Any = load_settings(self.router_config("topics", legacy=False))
        n = int(rs.router.ingress_partitions)  # a field of the code that has the ingress
        parts = [TopicPartition(ingress, p) for p in range(n)]
        if self.legacy_topics:
            parts += [TopicPartition(legacy, p) for p in range(OUT_PARTITIONS)]
        probe = AIOKafkaConsumer(**self.conn.client_kwargs(), enable_auto_commit=False)
        await probe.start()
        try:
            probe.assign(parts)
            async with client(gw) as c:
                await c.send("POLICE_MESSAGE", to=[RECIPIENT], payload=PM)
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline:
                ends = await probe.end_offsets(parts)
                written = {tp.topic for tp, end in ends.items() if end}
                if written:
                    return ingress in written
                await asyncio.sleep(0.2)
            raise RuntimeError(f"the probe message reached neither {ingress} nor {legacy}")
        finally:
            await probe.stop()

    async def ready(self, svc: Service, within_s: float = 90.0) -> None:
        """A gateway answers ``/readyz`` 200."""
        deadline = time.monotonic() + within_s
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{svc.port}", timeout=5) as c:
            while True:
                svc.check()
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{svc.name} not ready in {within_s}s:\n{svc.tail()}")
                await asyncio.sleep(0.2)

    async def group_members(self, want: int, within_s: float = 90.0) -> None:
        """Wait until the router group is Stable with ``want`` members."""
        admin = AIOKafkaAdminClient(**self.conn.client_kwargs())
        await admin.start()
        deadline = time.monotonic() + within_s
        try:
            while True:
                for svc in self.services:
                    if svc.name.startswith("router"):
                        svc.check()
                state, members = "", 0
                with contextlib.suppress(Exception):
                    g = (await admin.describe_consumer_groups([self.group]))[0].groups[0]
                    state, members = str(g[2]), len(g[5])
                if state == "Stable" and members == want:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"router group {state!r} with {members}/{want} members")
                await asyncio.sleep(0.25)
        finally:
            await admin.close()

    def stop_all(self) -> None:
        for svc in self.services:
            with contextlib.suppress(Exception):
                svc.stop()
        self.services.clear()


def _integrator_token(data_dir: Path) -> str | None:
    """A bearer token for the bench on a gateway whose API requires one, with a rate
    limit it never reaches (a bench measures the pipeline, not the token bucket);
    None for a gateway without integrator auth (the code before it)."""
    try:
        from i24net.gateway.auth import create_integrator
    except ImportError:
        return None
    data_dir.mkdir(parents=True, exist_ok=True)
    return create_integrator(
        data_dir / "integrators.sqlite3",  # the gateway's settings.integrators_path
        "bench",
        ["send", "inbox:read", "status:read"],
        rate_per_s=100_000,
        burst=100_000,
    )


def client(svc: Service, **kw: Any) -> AsyncGatewayClient:
    """The integrator API client of a gateway, with its token when it has one."""
    if svc.token is not None:
        kw["token"] = svc.token
    return AsyncGatewayClient(f"http://127.0.0.1:{svc.port}", **kw)


class InboxWatch:
    """Long-polls a gateway's inbox; ``seen[message_id] = received_ms``."""

    def __init__(self, client: AsyncGatewayClient) -> None:
        self.client = client
        self.seen: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def _loop(self) -> None:
        cursor = 0
        while True:
            try:
                res = await self.client.inbox(after=cursor, limit=1000, wait=1.0)
            except Exception:  # a busy gateway: try again
                await asyncio.sleep(0.2)
                continue
            for m in res["messages"]:
                self.seen[m["message_id"]] = int(m["received_ms"])
            cursor = int(res["cursor"])
            if res["messages"]:
                self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_all(self, ids: Iterable[str], within_s: float) -> int:
        """Wait until every id is stored (or the timeout); returns how many are missing."""
        wanted = set(ids)
        deadline = time.monotonic() + within_s
        while True:
            missing = len(wanted - self.seen.keys())
            if not missing or time.monotonic() > deadline:
                return missing
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)


async def _burst(
    client: AsyncGatewayClient, n: int, concurrency: int, **send: Any
) -> tuple[list[str], int]:
    sem = asyncio.Semaphore(concurrency)
    ids: list[str] = []
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with sem:
            try:
                ids.append(await client.send("POLICE_MESSAGE", payload=PM, **send))
            except Exception:
                errors += 1

    await asyncio.gather(*(one() for _ in range(n)))
    return ids, errors


async def pipeline_burst(
    client: AsyncGatewayClient,
    watch: InboxWatch,
    meter: CpuMeter,
    n: int,
    concurrency: int,
    profiler: Profiler | None = None,
    profile_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    if profiler is not None and profile_pids:
        profiler.start(profile_pids)
    load0 = loadavg()
    c0 = meter.sample()
    t0 = time.time()
    ids, errors = await _burst(client, n, concurrency, to=[RECIPIENT])
    intake_s = time.time() - t0
    missing = await watch.wait_all(ids, within_s=120 + n / 50)
    stored = [watch.seen[i] for i in ids if i in watch.seen]
    elapsed = max(stored) / 1000 - t0 if stored else float("nan")
    c1 = meter.sample()
    profile = profiler.stop() if profiler is not None and profile_pids else None
    out: dict[str, Any] = {
        "messages": n,
        "concurrency": concurrency,
        "errors": errors,
        "missing": missing,
        "intake_msgs_per_s": len(ids) / intake_s,
        "msgs_per_s": len(stored) / elapsed,
        "elapsed_s": elapsed,
        "loadavg": f"{load0} → {loadavg()}",
        **phase_cpu(c0, c1, len(stored)),
    }
    if profile is not None:
        out["profile"] = profile
    return out


async def open_loop(
    client: AsyncGatewayClient,
    watch: InboxWatch,
    rate: float,
    duration_s: float,
    meter: CpuMeter | None = None,
    say: Say | None = None,
) -> dict[str, Any]:
    """Constant-rate sends on a fixed schedule; latency from the scheduled time;
    CPU of every process over the phase when ``meter`` is given."""
    offsets = open_loop_schedule(rate, duration_s)
    load0 = loadavg()
    c0 = meter.sample() if meter is not None else None
    next_note = time.monotonic() + 10
    scheduled: dict[str, float] = {}
    errors = 0
    lag: list[float] = []

    async def one(due_ms: float) -> None:
        nonlocal errors
        try:
            mid = await client.send("POLICE_MESSAGE", to=[RECIPIENT], payload=PM)
        except Exception:
            errors += 1
            return
        scheduled[mid] = due_ms

    tasks: list[asyncio.Task[None]] = []
    start, wall0 = time.perf_counter(), time.time() * 1000
    for off in offsets:
        delay = start + off - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(max(0.0, -delay) * 1000)
        tasks.append(asyncio.create_task(one(wall0 + off * 1000)))
        if say is not None and time.monotonic() > next_note:
            next_note += 10
            say(f"    ... {len(tasks)}/{len(offsets)} sent, {len(watch.seen)} stored so far")
    await asyncio.gather(*tasks)
    missing = await watch.wait_all(scheduled, within_s=60 + duration_s)
    lat = [watch.seen[m] - due for m, due in scheduled.items() if m in watch.seen]
    cpu = phase_cpu(c0, meter.sample(), len(lat)) if meter is not None and c0 else {}
    return {
        "loadavg": f"{load0} → {loadavg()}",
        **cpu,
        "target_rate": rate,
        "duration_s": duration_s,
        "scheduled": len(offsets),
        "stored": len(lat),
        "errors": errors,
        "missing": missing,
        "generator_lag_p99_ms": sorted(lag)[int(0.99 * (len(lag) - 1))] if lag else 0.0,
        **summarize(lat),
    }


class Deliveries:
    """Reads every ``i24.in.<station>`` topic read_committed from its end."""

    def __init__(self, conn: KafkaConnection, topics: Topics, stations: Iterable[str]) -> None:
        self.conn, self.topics = conn, topics
        self.parts = [TopicPartition(topics.inbox(c), 0) for c in stations]
        self.seen: dict[str, list[tuple[str, float, bytes]]] = defaultdict(list)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        c = AIOKafkaConsumer(
            **self.conn.client_kwargs(),
            isolation_level="read_committed",
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 << 20,
            fetch_max_bytes=64 << 20,
        )
        await c.start()
        c.assign(self.parts)
        await c.seek_to_end(*self.parts)
        for tp in self.parts:
            await c.position(tp)
        self._consumer = c
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=20000)
            now = time.time() * 1000
            for tp, records in batch.items():
                station = tp.topic.rsplit(".", 1)[1]
                for r in records:
                    mid = dict(r.headers).get("i24-msgid", b"").decode()
                    if r.value is not None:
                        self.seen[mid].append((station, now, r.value))

    async def wait(self, counts: dict[str, int], within_s: float) -> int:
        deadline = time.monotonic() + within_s
        while True:
            short = sum(max(0, n - len(self.seen.get(m, ()))) for m, n in counts.items())
            if not short or time.monotonic() > deadline:
                return short
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def broadcasts(
    cl: Cluster,
    client: AsyncGatewayClient,
    isolated: int,
    burst: int,
    say: Say,
    meter: CpuMeter | None = None,
    profiler: Profiler | None = None,
    profile_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Broadcasts to every other station: the last recipient of each one sent alone, then
    ``burst`` at once (broadcasts/s, and CPU ms per broadcast of every process when
    ``meter`` is given)."""
    assert cl.net is not None
    recipients = [c for c in cl.stations if c != SENDER]
    deliveries = Deliveries(cl.conn, cl.topics, recipients)
    await deliveries.start()
    try:
        last_ms: list[float] = []
        # The first broadcasts pay for 195 topics' metadata in the router's producer and
        # the readers (the first two took 0.6-10 s, the third 60-340 ms): warm-ups.
        for _ in range(WARM_BROADCASTS + isolated):
            t0 = time.time() * 1000
            mid = await client.send("POLICE_MESSAGE", to_all=True, payload=PM)
            short = await deliveries.wait({mid: len(recipients)}, 60)
            if short:
                raise RuntimeError(f"broadcast {mid}: {short} recipients never got it")
            last_ms.append(max(t for _, t, _ in deliveries.seen[mid]) - t0)
        warm, last_ms = last_ms[:WARM_BROADCASTS], last_ms[WARM_BROADCASTS:]
        say(
            f"  isolated broadcasts: last recipient after {[round(x) for x in last_ms]} ms "
            f"(warm-ups: {[round(x) for x in warm]} ms)"
        )
        if profiler is not None and profile_pids:
            profiler.start(profile_pids)
        c0 = meter.sample() if meter is not None else None
        t0 = time.time()
        ids, errors = await _burst(client, burst, 8, to_all=True)
        short = await deliveries.wait(dict.fromkeys(ids, len(recipients)), 120 + burst)
        stamps = [t for m in ids for _, t, _ in deliveries.seen[m]]
        elapsed = max(stamps) / 1000 - t0
        # per broadcast (the Deliveries reader of 195 topics is in the load generator)
        cpu = phase_cpu(c0, meter.sample(), len(ids)) if meter is not None and c0 else {}
        if profiler is not None and profile_pids:
            cpu["profile"] = profiler.stop()
        # every delivery opened by its station's Receiver (after the timed part)
        t1 = time.perf_counter()
        receivers = {
            c: Receiver(
                cl.net.secrets[c],
                cl.net.directory,
                ReplayWindow(clock=system_clock),
                router=GS,
                store=cl.net.store,
            )
            for c in recipients
        }
        verified = failed = 0
        versions: collections.Counter[str] = collections.Counter()
        for mid in [*ids, *(m for m in deliveries.seen if m not in ids)]:
            for station, _, value in deliveries.seen[mid]:
                try:
                    versions[f"v{receivers[station].open(value, record=False).version}"] += 1
                    verified += 1
                except Exception:
                    failed += 1
        verify_s = time.perf_counter() - t1
    finally:
        await deliveries.stop()
    per_recipient = [len({s for s, _, _ in deliveries.seen[m]}) for m in ids]
    return {
        "recipients": len(recipients),
        "isolated": isolated,
        "isolated_last_recipient_ms": last_ms,
        "warmup_last_recipient_ms": warm,
        "last_recipient_ms": sorted(last_ms)[len(last_ms) // 2] if last_ms else float("nan"),
        "burst": burst,
        "errors": errors,
        "short_deliveries": short,
        "broadcasts_per_s": len(ids) / elapsed,
        "deliveries_per_s": len(stamps) / elapsed,
        "burst_elapsed_s": elapsed,
        "all_recipients_each": all(n == len(recipients) for n in per_recipient),
        "verified": verified,
        "verify_failed": failed,
        "verify_us_per_delivery": verify_s / max(1, verified + failed) * 1e6,
        # which envelope version the deliveries were in (the bench's stations publish v1 and
        # hybrid ML-KEM-768 + X25519 v2 keys, so [envelope] version = auto seals v2 hybrid)
        "envelope_versions": dict(versions),
        "kem_suite": next(iter({str(s.kem_suite) for s in cl.net.secrets.values()})),
        "measured_at": "i24.in.<station> read_committed (no 195 gateways); opened by Receiver",
        **{("burst_" + k if k.startswith("cpu_ms_per_msg") else k): v for k, v in cpu.items()},
    }


def _seal_backlog(cl: Cluster, n: int, seed: int) -> list[tuple[str, bytes, str, bytes, Any]]:
    assert cl.net is not None
    rnd = random.Random(seed)
    senders = [c for c in cl.stations if c not in (SENDER, RECIPIENT)][:16]
    gws = {c: cl.net.gateway(c, _now_ms()) for c in senders}
    out = []
    for i in range(n):
        src = senders[i % len(senders)]
        dst = rnd.choice([c for c in senders if c != src])
        h, data = gws[src].message(
            "POLICE_MESSAGE", police_message(PAYLOAD_TEXT), Recipients.to(dst), _now_ms()
        )
        topic, key = station_out(cl.topics, src, h.message_id)
        out.append((topic, key, h.message_id, data, hints(h)))
    return out


async def scale(cl: Cluster, n: int, counts: tuple[int, ...], say: Say) -> dict[str, Any]:
    assert cl.net is not None
    out: dict[str, Any] = {"messages": n}
    recipients = [c for c in cl.stations if c not in (SENDER, RECIPIENT)][:16]
    for k in counts:
        backlog = _seal_backlog(cl, n, seed=k)
        routers = [cl.start_router(f"s{k}{chr(97 + i)}", legacy=False) for i in range(k)]
        try:
            await cl.group_members(k)
            deliveries = Deliveries(cl.conn, cl.topics, recipients)
            await deliveries.start()
            cpu0 = sum(r.cpu() for r in routers)
            producer = AIOKafkaProducer(
                **cl.conn.client_kwargs(), enable_idempotence=True, linger_ms=5
            )
            await producer.start()
            t0 = time.time()
            try:
                futs = [
                    await producer.send(t, key=key, value=v, headers=h)
                    for t, key, _, v, h in backlog
                ]
                await asyncio.gather(*futs)
            finally:
                await producer.stop()
            produced_s = time.time() - t0
            ids = {mid: 1 for _, _, mid, _, _ in backlog}
            short = await deliveries.wait(ids, 180)
            stamps = [t for m in ids for _, t, _ in deliveries.seen.get(m, ())]
            elapsed = max(stamps) / 1000 - t0
            cpu = sum(r.cpu() for r in routers) - cpu0
            rss = max(r.peak_rss() for r in routers)
            await deliveries.stop()
        finally:
            for r in routers:
                r.stop()
                cl.services.remove(r)
        out[f"routers_{k}_msgs_per_s"] = len(stamps) / elapsed
        out[f"routers_{k}_short"] = short
        out[f"routers_{k}_produce_s"] = produced_s
        out[f"routers_{k}_cpu_s_per_1k"] = cpu / max(1, len(stamps)) * 1000
        out[f"routers_{k}_peak_rss_mib"] = rss
        say(f"  {k} router(s): {out[f'routers_{k}_msgs_per_s']:,.0f} msgs/s")
    if len(counts) > 1:
        out["speedup"] = (
            out[f"routers_{counts[-1]}_msgs_per_s"] / out[f"routers_{counts[0]}_msgs_per_s"]
        )
    out["cores"] = os.cpu_count()
    return out


async def run(
    conn: KafkaConnection,
    *,
    parts: Iterable[str] = ("pipeline", "trickle", "latency", "broadcast", "scale"),
    messages: int = 3000,
    concurrency: int = 32,
    loads: tuple[float, ...] = (0.25, 0.5, 0.9),
    load_s: float = 15.0,
    trickle_rate: float = 30.0,
    trickle_s: float = 20.0,
    idle_s: float = 5.0,
    isolated: int = 3,
    burst: int = 30,
    scale_messages: int = 3000,
    max_rate: float | None = None,
    broker_pid: int | None = None,
    profile_dir: Path | None = None,
    say: Say = print,
) -> dict[str, Any]:
    """The end-to-end figures; ``max_rate`` (msgs/s) stands in if ``pipeline`` is not run.

    ``broker_pid``: the broker JVM, whose CPU is counted in every phase (its
    share of a message is often the largest: fetch requests that list every
    partition, transaction markers)."""
    parts = set(parts)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="i24net-bench-pipeline-") as d:
        cl = Cluster(conn, Path(d), say, profile_dir)
        try:
            await cl.setup()
            if parts & {"pipeline", "trickle", "latency", "broadcast"}:
                t0 = time.perf_counter()
                fr, jp = cl.start_gateway(SENDER), cl.start_gateway(RECIPIENT)
                await cl.ready(fr)
                await cl.ready(jp)
                legacy = not await cl.gateway_writes_ingress(fr)
                out["layout"] = {"pipeline": layout(legacy), "scale": layout(False)}
                if router_overrides():
                    out["router_overrides"] = router_overrides()
                say(f"  topics: {out['layout']['pipeline']}")
                router = cl.start_router("p", legacy=legacy)
                await cl.group_members(1)
                say(f"  FR + JP gateways and the router up in {time.perf_counter() - t0:.1f}s")
                services = {"gateway_FR": fr, "gateway_JP": jp, "router": router}
                pids = {k: s.pid for k, s in services.items()}
                if broker_pid is not None:
                    pids["broker"] = broker_pid
                pids["loadgen"] = os.getpid()
                meter = CpuMeter(pids)
                profiler = Profiler(profile_dir, phase="burst") if profile_dir else None
                trickle_prof = Profiler(profile_dir, phase="trickle") if profile_dir else None
                bcast_prof = Profiler(profile_dir, phase="broadcast") if profile_dir else None
                async with (
                    client(fr, max_connections=512) as cfr,
                    client(jp) as cjp,
                ):
                    watch = InboxWatch(cjp)
                    watch.start()
                    try:
                        # warm-up: connections, JIT-free but cache-warm paths, the
                        # transactional producers' first InitProducerId
                        warm, _ = await _burst(cfr, 40, 4, to=[RECIPIENT])
                        if await watch.wait_all(warm, 60):
                            raise RuntimeError(
                                "warm-up messages not stored at JP:\n"
                                + "\n".join(s.tail(10) for s in services.values())
                            )
                        if "trickle" in parts:
                            say(f"  idle for {idle_s:g}s: what each process burns with no traffic")
                            out["idle"] = await idle(meter, idle_s)
                            say(
                                "    idle CPU, % of a core: "
                                + ", ".join(
                                    f"{k.removeprefix('cpu_pct_')} {v:.0f}"
                                    for k, v in out["idle"].items()
                                    if k.startswith("cpu_pct_")
                                )
                            )
                            say(
                                f"  open-loop trickle at {trickle_rate:g} msgs/s for "
                                f"{trickle_s:g}s (CPU per message nearly idle) ..."
                            )
                            if trickle_prof is not None:
                                trickle_prof.start({k: s.pid for k, s in services.items()})
                            r = await open_loop(cfr, watch, trickle_rate, trickle_s, meter, say)
                            if trickle_prof is not None:
                                r["profile"] = trickle_prof.stop()
                            out["trickle"] = r
                            say(_cpu_line(r))
                        if "pipeline" in parts or max_rate is None:
                            say(f"  burst of {messages} messages, {concurrency} clients ...")
                            p = await pipeline_burst(
                                cfr,
                                watch,
                                meter,
                                messages,
                                concurrency,
                                profiler,
                                {k: s.pid for k, s in services.items()},
                            )
                            out["pipeline"] = p
                            max_rate = p["msgs_per_s"]
                            say(
                                f"  pipeline: {p['msgs_per_s']:,.0f} msgs/s end to end "
                                f"(intake {p['intake_msgs_per_s']:,.0f}/s)"
                            )
                            say(_cpu_line(p))
                        if "latency" in parts:
                            levels = []
                            for f in loads:
                                rate = f * max_rate
                                say(
                                    f"  open loop at {f:.0%} = {rate:,.0f} msgs/s for {load_s}s ..."
                                )
                                r = await open_loop(cfr, watch, rate, load_s, meter, say)
                                r["fraction"] = f
                                levels.append(r)
                                say(
                                    f"    p50 {r['p50_ms']:.1f}  p99 {r['p99_ms']:.1f}  "
                                    f"p99.9 {r['p999_ms']:.1f} ms ({r['stored']} stored)"
                                )
                                say(_cpu_line(r))
                            out["latency"] = {"max_rate": max_rate, "levels": levels}
                        if "broadcast" in parts:
                            say(f"  broadcasts to 195: {isolated} alone, then {burst} at once ...")
                            out["broadcast"] = await broadcasts(
                                cl,
                                cfr,
                                isolated,
                                burst,
                                say,
                                meter,
                                bcast_prof,
                                {k: s.pid for k, s in services.items()},
                            )
                    finally:
                        await watch.stop()
                        for pr in (profiler, trickle_prof, bcast_prof):
                            if pr is not None:
                                pr.kill()
                out["resources"] = {
                    f"peak_rss_mib_{k}": s.peak_rss() for k, s in services.items()
                } | {"cpu_s_total_" + k: s.cpu() for k, s in services.items()}
                for svc in services.values():
                    svc.stop()
                    cl.services.remove(svc)
            if "scale" in parts:
                if max_rate:  # about 15 s per drain at the pipeline's rate, on a slow host
                    scale_messages = int(min(scale_messages, max(100, 15 * max_rate)))
                say(f"  scale: a backlog of {scale_messages} drained by 1, then 2 routers ...")
                out["scale"] = await scale(cl, scale_messages, (1, 2), say)
        finally:
            cl.stop_all()
    return out


async def idle(meter: CpuMeter, seconds: float) -> dict[str, Any]:
    """CPU of each process with no traffic at all, in % of one core: the fixed cost
    (fetch loops, heartbeats, timers) that a trickle divides among few messages."""
    c0 = meter.sample()
    await asyncio.sleep(seconds)  # the phase *is* a duration: nothing to wait on
    c1 = meter.sample()
    wall = c1.wall_s - c0.wall_s
    out: dict[str, Any] = {"wall_s": wall, "loadavg": loadavg()}
    for name, v0 in c0.procs.items():
        out[f"cpu_pct_{name}"] = (c1.procs[name] - v0) / wall * 100
    host = c1.host_total_s - c0.host_total_s
    out["cpu_share_host"] = (c1.host_busy_s - c0.host_busy_s) / host if host > 0 else float("nan")
    return out


def _cpu_line(r: dict[str, Any]) -> str:
    """One progress line: CPU ms per message by process, host share, saturation."""
    if "cpu_ms_per_msg_total" not in r:
        return "    (no CPU figures)"
    parts = [
        f"{k.removeprefix('cpu_ms_per_msg_')} {v:.2f}"
        for k, v in r.items()
        if k.startswith("cpu_ms_per_msg_") and k != "cpu_ms_per_msg_total"
    ]
    flag = "  SATURATED (measures queueing)" if r.get("saturated") else ""
    return (
        f"    CPU ms/msg: total {r['cpu_ms_per_msg_total']:.2f} ({', '.join(parts)}); "
        f"host busy {r['cpu_share_host']:.0%}, ours {r['cpu_share_ours']:.0%}{flag}"
    )
