"""``make soak``: a reliability soak a user runs by hand (not in CI), issue 11.

    python -m bench.soak [--minutes 10] [--seed N] [--hostile-rate 0.01] [--rate 8]
                         [--out bench/results/soak-<time>.json]

What runs, all real: a 3-node KRaft cluster (``i24net.kafka.cluster``, every topic
replication factor 3, ``min.insync.replicas`` 2), the router (``i24net router``)
and three gateways FR, JP, BR (``i24net gateway``) as processes. DE and US are
in the directory without a gateway: their inbox topics are read by the checker
only. For ``--minutes``:

* traffic: an open-loop stream (``--rate`` messages/s) submitted through the
  gateways' integrator API (``i24net.client``) with idempotency keys, retried
  while a gateway is down, so every submission ends with a known message id:
  police messages to one or several stations, and a few Red Notices to ALL;
* hostile records, about ``--hostile-rate`` of the records, written by the
  soak's own producer straight onto the shared ingress topic ``i24.out`` in the
  name of a station (as an attacker with that station's credentials could), one
  class after the other (``bench/soak_check.HOSTILE_CLASSES``: null header,
  garbage, truncated, replay of a delivered envelope on its own or another
  partition, tampered ciphertext, expired, contradicting hint);
* ``kill -9`` at seeded random moments: the router (restarted at once), one
  gateway (restarted after a pause) and one broker of the cluster (restarted
  after 5-30 s; one broker down at a time, so writes go on with 2 in sync).

A progress line every 10 s. Then a drain (until everything is delivered and
refused, or nothing moves for ``--stall-limit`` s), and the **independent
reader**: a fresh ``read_committed`` consumer reads every ``i24.in.<station>``
and ``i24.dlq`` from offset 0, and ``bench/soak_check`` counts each accepted
message once per intended recipient (lost, duplicated, misdelivered), each
hostile record dead-lettered once with its class's reason, and no hostile
envelope delivered. The gateways' stored inboxes are paged through their API
too. Max stall: the longest interval with no delivery seen (by a live
``read_committed`` monitor) while some delivery was pending.

Exit status 0 when nothing was lost or duplicated, every hostile record was
refused with its reason and no daemon exited by itself; 1 otherwise. State and
process logs go to ``var/soak/`` (wiped at each start); the result JSON to
``--out``. ``docs/reliability.md`` has the figures of a run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.soak_check import (
    HOSTILE_CLASSES,
    Hostile,
    check_deliveries,
    check_hostile,
    duplicates_among_others,
    hostile_key,
    max_stall,
)
from i24net.audit.topic import prime
from i24net.client import AsyncGatewayClient
from i24net.demo import POLICY, Net, gateway_toml
from i24net.directory import MANIFEST_KEY
from i24net.envelope import Recipients
from i24net.errors import IntakeRefusedError, ServiceError
from i24net.gateway.auth import create_integrator
from i24net.kafka import KafkaConnection, ensure_topics
from i24net.kafka.broker import free_port
from i24net.kafka.cluster import Cluster, ClusterSettings
from i24net.router.app import topic_specs
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import (
    DAY_MS,
    Network,
    build_network,
    hints,
    police_message,
    provision,
    red_notice,
    settings_toml,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GATEWAYS = ("FR", "JP", "BR")
SILENT = ("DE", "US")
"""In the directory without a gateway: recipients whose topics only the checker reads."""
INGRESS_PARTITIONS = 12  # router/testing.provision's ingress topic
NOTICE_KINDS = {"STATUS_NOTICE", "DELIVERY_RECEIPT"}
PROGRESS_S = 10.0
log = logging.getLogger("bench.soak")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def say(text: str) -> None:
    print(text, flush=True)


# -- the schedule ------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Kill:
    at_s: float
    kind: str  # router | gateway | broker
    target: str  # "router", a station code, or a node id
    pause_s: float  # down time before the restart


def schedule(rng: random.Random, duration_s: float, nodes: Sequence[int]) -> list[Kill]:
    """Kills at random moments in the middle 80 % of the traffic: about one router and one
    gateway kill per 200 s and one broker kill per 300 s (at least one of each); broker
    kills at least 60 s apart so one is back before the next goes down."""
    lo, hi = 0.1 * duration_s, 0.85 * duration_s
    n_proc = max(1, round(duration_s / 200))
    n_broker = max(1, round(duration_s / 300))
    kills = [
        Kill(rng.uniform(lo, hi), "router", "router", rng.uniform(0, 3)) for _ in range(n_proc)
    ]
    kills += [
        Kill(rng.uniform(lo, hi), "gateway", rng.choice(GATEWAYS), rng.uniform(1, 8))
        for _ in range(n_proc)
    ]
    slot = (hi - lo) / n_broker
    for i in range(n_broker):
        pause = rng.uniform(5, 30)
        at = lo + i * slot + rng.uniform(0, max(0.0, slot - pause - 30))
        kills.append(Kill(at, "broker", str(rng.choice(list(nodes))), pause))
    return sorted(kills)


# -- processes -----------------------------------------------------------------------------


class Daemons:
    """The router and gateway processes: started, ``kill -9``-ed and restarted by the soak;
    one that exits by itself is recorded (a finding) and started again."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.args: dict[str, list[str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        self.unexpected: list[dict[str, Any]] = []

    def start(self, name: str, *args: str) -> None:
        self.args[name] = list(args)
        with (self.logs / f"{name}.log").open("ab") as log_file:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "i24net", *args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.killed.discard(name)

    def kill9(self, name: str) -> None:
        p = self.procs[name]
        self.killed.add(name)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

    def restart(self, name: str) -> None:
        self.start(name, *self.args[name])

    def check(self, at_s: float) -> None:
        """Record and restart a daemon that exited without being killed."""
        for name, p in list(self.procs.items()):
            if name not in self.killed and p.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]
                self.unexpected.append(
                    {"name": name, "code": p.returncode, "at_s": round(at_s, 1), "log_tail": tail}
                )
                say(f"!! {name} exited by itself (code {p.returncode}); restarting it")
                self.restart(name)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


async def wait_http(url: str, daemons: Daemons, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            daemons.check(0)
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready in {within_s:.0f}s")
            await asyncio.sleep(0.3)


# -- hostile records -----------------------------------------------------------------------


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at ``pos``: (value, next position)."""
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def tamper_ciphertext(envelope: bytes) -> bytes:
    """Flip one byte in the middle of the ciphertext (docs/envelope.md: after the 10-byte
    prefix come header, signature, nonce and ciphertext, each length-prefixed)."""
    pos = 10
    for _ in range(3):  # header, sender signature, nonce
        n, pos = _long(envelope, pos)
        pos += n
    n, pos = _long(envelope, pos)
    i = pos + n // 2
    return envelope[:i] + bytes([envelope[i] ^ 0x01]) + envelope[i + 1 :]


@dataclass
class Forger:
    """Makes the hostile records of each class for a station's ``i24.out`` topic."""

    net: Network
    rng: random.Random
    sent: dict[str, tuple[bytes, list[tuple[str, bytes]], int]] = field(default_factory=dict)
    """message id -> (envelope, headers, partition) as the gateways wrote them (for replays)."""
    copies: collections.Counter[str] = field(default_factory=collections.Counter)
    """message id -> records the gateways wrote with it (an outbox re-send makes two)."""

    def envelope(self, station: str, *, created_ms: int | None = None) -> tuple[Any, bytes]:
        t = now_ms()
        to = self.rng.choice([s for s in (*GATEWAYS, *SILENT) if s != station])
        return self.net.gateway(station, t).message(
            "POLICE_MESSAGE",
            police_message("forged: stolen bicycle", "Hostile"),
            Recipients.to(to),
            t if created_ms is None else created_ms,
        )

    def make(
        self, cls: str, station: str, replayable: list[str]
    ) -> tuple[bytes, list[tuple[str, bytes | None]], str | None, int | None] | None:
        """(value, headers, envelope message id, partition or None) of one hostile record."""
        if cls == "garbage":
            return self.rng.randbytes(self.rng.randint(16, 2048)), [], None, None
        if cls == "replay":
            mine = [m for m in replayable if m in self.sent]
            if not mine:
                return None
            mid = self.rng.choice(mine)
            value, headers, partition = self.sent[mid]
            moved = self.rng.random() < 0.5
            part = (partition + 1) % INGRESS_PARTITIONS if moved else partition
            return value, list(headers), mid, part
        if cls == "expired":
            h, env = self.envelope(station, created_ms=now_ms() - 2 * DAY_MS)
            return env, list(hints(h)), h.message_id, None
        h, env = self.envelope(station)
        hs: list[tuple[str, bytes | None]] = list(hints(h))
        if cls == "null_header":
            hs = [(k, None if k == "i24-kind" else v) for k, v in hs]
        elif cls == "contradicting_hint":
            hs = [(k, b"RED_NOTICE_REQUEST" if k == "i24-kind" else v) for k, v in hs]
        elif cls == "truncated":
            env = env[: self.rng.randint(len(env) // 4, len(env) - 1)]
        elif cls == "tampered":
            env = tamper_ciphertext(env)
        else:
            raise ValueError(cls)
        return env, hs, h.message_id, None


# -- the soak ------------------------------------------------------------------------------


@dataclass
class State:
    """What the soak knows, gathered as it goes (times are monotonic seconds from t0)."""

    t0: float
    accepted: dict[str, tuple[float, frozenset[str], str, str]] = field(default_factory=dict)
    """message id -> (accepted at, recipients, sender, kind)."""
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    """(station, message id) -> first seen committed at the station's inbox topic."""
    dlq_keys: set[str] = field(default_factory=set)
    injected: list[Hostile] = field(default_factory=list)
    hostile_send_failures: int = 0
    kills: list[dict[str, Any]] = field(default_factory=list)
    submit_retries: int = 0
    intake_refused: list[str] = field(default_factory=list)
    intake_s: list[float] = field(default_factory=list)
    late_s: float = 0.0
    """How far behind its open-loop schedule the submitter fell at most."""
    refusals_metric: collections.Counter[str] = field(default_factory=collections.Counter)
    """``i24net_router_refusals_total`` summed over router incarnations (scraped before each
    kill and at the end: a kill loses what was counted since the last scrape)."""

    def now(self) -> float:
        return time.monotonic() - self.t0

    def delivered_pairs(self) -> int:
        return sum(
            1
            for mid, (_, stations, _, _) in self.accepted.items()
            for st in stations
            if (st, mid) in self.seen
        )

    def expected_pairs(self) -> int:
        return sum(len(v[1]) for v in self.accepted.values())

    def fully_delivered(self) -> list[str]:
        return [
            mid
            for mid, (_, stations, _, _) in self.accepted.items()
            if all((st, mid) in self.seen for st in stations)
        ]


def header(record: Any, name: str) -> str | None:
    for k, v in record.headers or ():
        if k == name:
            return None if v is None else bytes(v).decode("utf-8", "replace")
    return None


async def assigned_consumer(
    conn: KafkaConnection, topics: Sequence[str], *, committed: bool
) -> AIOKafkaConsumer:
    c = AIOKafkaConsumer(
        **conn.client_kwargs(),
        enable_auto_commit=False,
        isolation_level="read_committed" if committed else "read_uncommitted",
        max_partition_fetch_bytes=2 << 20,
    )
    await c.start()
    await prime(c, list(topics))
    tps: list[TopicPartition] = []
    for t in topics:
        parts = c.partitions_for_topic(t) or {0}
        tps += [TopicPartition(t, p) for p in sorted(parts)]
    c.assign(tps)
    await c.seek_to_beginning(*tps)
    return c


async def monitor(conn: KafkaConnection, topics: Topics, st: State, stop: asyncio.Event) -> None:
    """Live view for progress and stalls: deliveries as they become committed, and the
    dead-letter keys (the final verdict is the independent reader's, not this)."""
    inboxes = [topics.inbox(s) for s in (*GATEWAYS, *SILENT)]
    c = await assigned_consumer(conn, [*inboxes, topics.dlq], committed=True)
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=200, max_records=5000)
            t = st.now()
            for tp, records in batch.items():
                if tp.topic == topics.dlq:
                    st.dlq_keys.update(
                        bytes(r.key).decode("utf-8", "replace") for r in records if r.key
                    )
                    continue
                station = tp.topic.rsplit(".", 1)[1]
                for r in records:
                    mid = header(r, "i24-msgid")
                    if mid is not None:
                        st.seen.setdefault((station, mid), t)
    finally:
        await c.stop()


async def out_reader(
    conn: KafkaConnection, topics: Topics, forger: Forger, stop: asyncio.Event
) -> None:
    """Keeps the envelopes the gateways wrote, so a replay can copy a delivered one."""
    c = await assigned_consumer(conn, [topics.ingress], committed=False)
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=300, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    mid = header(r, "i24-msgid")
                    if mid and r.value and not (r.key or b"").startswith(b"soak-"):
                        forger.copies[mid] += 1
                        hs = [(k, bytes(v)) for k, v in r.headers or () if v is not None]
                        forger.sent.setdefault(mid, (bytes(r.value), hs, tp.partition))
    finally:
        await c.stop()


async def scrape_refusals(url: str) -> collections.Counter[str]:
    out: collections.Counter[str] = collections.Counter()
    with contextlib.suppress(httpx.HTTPError):
        async with httpx.AsyncClient(timeout=3) as http:
            text = (await http.get(url)).text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == "i24net_router_refusals_total":
                    out[s.labels.get("reason", "?")] += int(s.value)
    return out


@dataclass
class Soak:
    args: argparse.Namespace
    base: Path
    cluster: Cluster
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.args.seed)
        self.topics = Topics()
        self.conn = self.cluster.admin_connection()
        self.daemons = Daemons(self.base / "logs")
        self.ports: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.out_copies: collections.Counter[str] = collections.Counter()

    # -- set-up -------------------------------------------------------------------------

    async def setup(self) -> Network:
        net = build_network((*GATEWAYS, *SILENT), self.base / "keys", now_ms=now_ms())
        entries = self.base / "directory"
        entries.mkdir()
        for code, entry in net.entries.items():
            (entries / f"{code}.entry").write_bytes(entry)
        if net.manifest is not None:
            (entries / MANIFEST_KEY).write_bytes(net.manifest)
        self.ports["router"] = free_port()
        router_cfg = self.base / "router.toml"
        router_cfg.write_text(
            settings_toml(
                instance="soak",
                bootstrap=self.cluster.bootstrap,
                prefix="",
                keys_dir=self.base / "keys",
                state_dir=self.base / "router-state",
                policy=POLICY,
                port=self.ports["router"],
            )
        )
        # broker defaults of the cluster: replication factor 3, min.insync.replicas 2
        await provision(
            self.conn, net, self.topics, ingress_partitions=INGRESS_PARTITIONS, legacy=False
        )
        await ensure_topics(self.conn, topic_specs(load_settings(router_cfg)))
        self.daemons.start("router", "router", "--config", str(router_cfg))
        kafka = Net(self.cluster.bootstrap, self.conn)
        for code in GATEWAYS:
            self.ports[code] = free_port()
            # the soak's integrator (loopback, plain HTTP): a token, a rate it never reaches
            token = create_integrator(
                self.base / f"gw-{code}" / "integrators.sqlite3",
                "soak",
                ["send", "inbox:read", "status:read", "operator"],
                rate_per_s=100_000,
                burst=100_000,
            )
            assert token is not None
            self.tokens[code] = token
            cfg = gateway_toml(code, self.base, kafka, self.ports[code])
            self.daemons.start(f"gateway-{code}", "gateway", "--config", str(cfg))
        await wait_http(self.url("router") + "/readyz", self.daemons, 120)
        for code in GATEWAYS:
            await wait_http(self.url(code) + "/readyz", self.daemons, 90)
        return net

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # -- traffic --------------------------------------------------------------------------

    def message(self, i: int, sender: str) -> tuple[str, dict[str, Any], frozenset[str]]:
        """(kind, send options, recipients) of message ``i``: mostly police messages to one
        station, some to several, a few Red Notices to ALL (the sender's 4 peers here)."""
        others = [s for s in (*GATEWAYS, *SILENT) if s != sender]
        roll = self.rng.random()
        precedence = self.rng.choice(["ROUTINE", "ROUTINE", "PRIORITY", "IMMEDIATE", "FLASH"])
        if roll < 0.05:
            payload = red_notice(
                f"Investment fraud case {i}: EUR {1000 + i} diverted through shell companies.",
                family_name="Martin",
                forenames="Paul",
                nationalities=[sender],
            )
            opts = {
                "to_all": True,
                "payload": payload,
                "precedence": "PRIORITY",
                "offence_categories": ["FRAUD"],
            }
            return "RED_NOTICE_REQUEST", opts, frozenset(others)
        n = 1 if roll < 0.7 else self.rng.randint(2, 3)
        to = self.rng.sample(others, n)
        text = f"Stolen vehicle {i}: plate AB-{i:06d}-CD seen near the border crossing."
        opts = {
            "to": to,
            "payload": police_message(text, "Stolen vehicle"),
            "precedence": precedence,
        }
        return "POLICE_MESSAGE", opts, frozenset(to)

    async def submit(
        self, st: State, clients: dict[str, AsyncGatewayClient], i: int, sender: str
    ) -> None:
        kind, opts, recipients = self.message(i, sender)
        for attempt in range(10_000):
            t = time.monotonic()
            try:
                mid = await clients[sender].send(kind, idempotency_key=f"soak-{i}", **opts)
            except (ServiceError, IntakeRefusedError) as exc:
                if isinstance(exc, IntakeRefusedError) and not exc.retriable:
                    st.intake_refused.append(f"{i}: {exc}")
                    return
                st.submit_retries += 1
                await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
                continue
            st.intake_s.append(time.monotonic() - t)
            st.accepted[mid] = (st.now(), recipients, sender, kind)
            return

    async def inject(self, st: State, forger: Forger, producer: Any, n: int) -> None:
        classes = list(HOSTILE_CLASSES)
        cls = classes[n % len(classes)]
        station = self.rng.choice(GATEWAYS)
        replayable = [m for m in st.fully_delivered() if st.accepted[m][2] == station]
        made = forger.make(cls, station, replayable)
        if made is None:  # nothing delivered from that station yet: another class
            cls = "garbage"
            made = forger.make(cls, station, replayable)
            assert made is not None
        value, headers, mid, partition = made
        key = hostile_key(cls, n)
        try:
            await producer.send_and_wait(
                self.topics.ingress,
                key=key.encode(),
                value=value,
                headers=headers,
                partition=partition,
            )
        except Exception as exc:  # a send that failed for good: not injected (reported)
            log.warning("hostile record %s not written: %r", key, exc)
            st.hostile_send_failures += 1
            return
        st.injected.append(Hostile(key, cls, station, mid if cls != "replay" else None))

    async def traffic(
        self,
        st: State,
        clients: dict[str, AsyncGatewayClient],
        forger: Forger,
        producer: Any,
        duration_s: float,
    ) -> set[asyncio.Task[None]]:
        tasks: set[asyncio.Task[None]] = set()
        rate = self.args.rate
        hostile_n = 0
        for i in range(int(duration_s * rate)):
            due = i / rate
            await asyncio.sleep(max(0.0, due - st.now()))
            st.late_s = max(st.late_s, st.now() - due)
            sender = GATEWAYS[i % len(GATEWAYS)]
            task = asyncio.create_task(self.submit(st, clients, i, sender))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if self.rng.random() < self.args.hostile_rate:
                h = asyncio.create_task(self.inject(st, forger, producer, hostile_n))
                hostile_n += 1
                tasks.add(h)
                h.add_done_callback(tasks.discard)
        return tasks

    # -- kills ----------------------------------------------------------------------------

    async def killer(self, st: State, kills: list[Kill]) -> None:
        """Each kill at its own moment (a broker's down time does not delay the others)."""
        await asyncio.gather(*(self.kill(st, k) for k in kills))

    async def kill(self, st: State, k: Kill) -> None:
        await asyncio.sleep(max(0.0, k.at_s - st.now()))
        lock = self.locks.setdefault(k.target, asyncio.Lock())  # one kill per target at once
        async with lock:
            entry: dict[str, Any] = {"kind": k.kind, "target": k.target, "at_s": round(st.now(), 1)}
            say(f"-- {st.now():6.1f}s kill -9 {k.kind} {k.target} (down {k.pause_s:.1f}s)")
            if k.kind == "broker":
                node = int(k.target)
                await asyncio.to_thread(self.cluster.kill, node)
                await asyncio.sleep(k.pause_s)
                # launched from this (the main) thread: an attached JVM dies with its thread
                self.cluster.restart(node, wait=False)
                await asyncio.to_thread(self.cluster.broker(node).wait_ready)
                entry["back_after_s"] = round(st.now() - entry["at_s"], 1)
            else:
                name = "router" if k.kind == "router" else f"gateway-{k.target}"
                if k.kind == "router":
                    st.refusals_metric += await scrape_refusals(self.url("router") + "/metrics")
                self.daemons.kill9(name)
                await asyncio.sleep(k.pause_s)
                self.daemons.restart(name)
                port = self.ports["router" if k.kind == "router" else k.target]
                try:
                    await wait_http(f"http://127.0.0.1:{port}/readyz", self.daemons, 180)
                    entry["ready_after_s"] = round(st.now() - entry["at_s"], 1)
                except TimeoutError:
                    entry["ready_after_s"] = None
            st.kills.append(entry)

    # -- progress and drain -----------------------------------------------------------------

    def progress(self, st: State) -> str:
        kinds = collections.Counter(k["kind"] for k in st.kills)
        refused = sum(1 for h in st.injected if h.key in st.dlq_keys)
        return (
            f"[{st.now():6.1f}s] accepted {len(st.accepted)}  delivered "
            f"{st.delivered_pairs()}/{st.expected_pairs()}  hostile {len(st.injected)} "
            f"refused {refused}  kills router {kinds['router']} gateway {kinds['gateway']} "
            f"broker {kinds['broker']}"
        )

    async def reporter(self, st: State, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROGRESS_S)
            if not stop.is_set():
                say(self.progress(st))

    async def watchdog(self, st: State, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.daemons.check(st.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def drain(self, st: State) -> float:
        """Wait until every delivery and refusal is seen, or nothing moved for a while."""
        t_start = st.now()
        last_change, last = st.now(), (-1, -1)
        while st.now() - t_start < self.args.drain_s:
            refused = sum(1 for h in st.injected if h.key in st.dlq_keys)
            now = (st.delivered_pairs(), refused)
            if now == (st.expected_pairs(), len(st.injected)):
                break
            if now != last:
                last, last_change = now, st.now()
            elif st.now() - last_change > self.args.stall_limit:
                say(f"nothing moved for {self.args.stall_limit:.0f}s: stop draining")
                break
            await asyncio.sleep(1.0)
        return st.now() - t_start

    # -- the independent reader -------------------------------------------------------------

    async def read_back(self) -> tuple[list[tuple[str, str]], dict[str, str | None], list[Any]]:
        """Every committed record of every inbox topic and of the DLQ, from offset 0."""
        topics = [self.topics.inbox(s) for s in (*GATEWAYS, *SILENT)] + [self.topics.dlq]
        c = await assigned_consumer(self.conn, topics, committed=True)
        delivered: list[tuple[str, str]] = []
        kinds: dict[str, str | None] = {}
        dlq: list[Any] = []
        try:
            tps = list(c.assignment())
            end = await c.end_offsets(tps)
            deadline = time.monotonic() + 300
            while [tp for tp in tps if await c.position(tp) < end[tp]]:
                if time.monotonic() > deadline:
                    raise TimeoutError("reading the topics back took over 300 s")
                batch = await c.getmany(timeout_ms=500, max_records=10_000)
                for tp, records in batch.items():
                    if tp.topic == self.topics.dlq:
                        dlq.extend(records)
                        continue
                    station = tp.topic.rsplit(".", 1)[1]
                    for r in records:
                        mid = header(r, "i24-msgid") or f"<no id at {tp.topic}:{r.offset}>"
                        delivered.append((station, mid))
                        kinds[mid] = header(r, "i24-kind")
        finally:
            await c.stop()
        return delivered, kinds, dlq

    async def stored_at_gateways(self, st: State) -> dict[str, Any]:
        """The gateways' own stored inbox rows (API paging): the integrator's view."""
        out: dict[str, Any] = {}
        for code in GATEWAYS:
            ids: list[str] = []
            async with AsyncGatewayClient(
                self.url(code), timeout=60, token=self.tokens[code]
            ) as gw:
                cursor = 0
                while True:
                    page = await gw.inbox(after=cursor, limit=1000)
                    ids += [m["message_id"] for m in page["messages"]]
                    if not page["messages"]:
                        break
                    cursor = page["cursor"]
            stored = collections.Counter(ids)
            want = {m for m, v in st.accepted.items() if code in v[1]}
            out[code] = {
                "expected": len(want),
                "stored": len(want & set(stored)),
                "missing": len(want - set(stored)),
                "stored_twice": sum(1 for m in want if stored[m] > 1),
            }
        return out

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        a = self.args
        duration_s = a.minutes * 60
        say(
            f"soak: {a.minutes:g} min, {a.rate:g} msgs/s, hostile rate {a.hostile_rate:g}, "
            f"seed {a.seed}; state and logs in {self.base}"
        )
        t_setup = time.monotonic()
        net = await self.setup()
        setup_s = time.monotonic() - t_setup
        kills = schedule(self.rng, duration_s, self.cluster.node_ids)
        say(
            f"ready in {setup_s:.0f}s; kills planned at "
            + ", ".join(f"{k.at_s:.0f}s {k.kind} {k.target}" for k in kills)
        )
        st = State(t0=time.monotonic())
        forger = Forger(net, random.Random(a.seed + 1))
        stop = asyncio.Event()
        producer = AIOKafkaProducer(
            **self.conn.client_kwargs(), enable_idempotence=True, request_timeout_ms=30_000
        )
        await producer.start()
        clients = {
            c: AsyncGatewayClient(self.url(c), timeout=30, token=self.tokens[c]) for c in GATEWAYS
        }
        background = [
            asyncio.create_task(monitor(self.conn, self.topics, st, stop)),
            asyncio.create_task(out_reader(self.conn, self.topics, forger, stop)),
            asyncio.create_task(self.reporter(st, stop)),
            asyncio.create_task(self.watchdog(st, stop)),
        ]
        try:
            killer = asyncio.create_task(self.killer(st, kills))
            pending = await self.traffic(st, clients, forger, producer, duration_s)
            traffic_s = st.now()
            await killer
            if pending:
                await asyncio.gather(*pending)
            say(f"traffic done at {st.now():.0f}s; draining ...")
            drain_s = await self.drain(st)
            end = st.now()
            st.refusals_metric += await scrape_refusals(self.url("router") + "/metrics")
            say(self.progress(st))
        finally:
            stop.set()
            for t in background:
                with contextlib.suppress(Exception):
                    await t
            for c in clients.values():
                await c.aclose()
            await producer.stop()
        say("independent reader: every inbox topic and the DLQ, read_committed from offset 0 ...")
        delivered, kinds, dlq_records = await self.read_back()
        self.out_copies = forger.copies
        return self.verdict(
            st,
            delivered,
            kinds,
            dlq_records,
            await self.stored_at_gateways(st),
            setup_s=setup_s,
            traffic_s=traffic_s,
            drain_s=drain_s,
            end=end,
        )

    def verdict(
        self,
        st: State,
        delivered: list[tuple[str, str]],
        kinds: dict[str, str | None],
        dlq_records: list[Any],
        gateways: dict[str, Any],
        *,
        setup_s: float,
        traffic_s: float,
        drain_s: float,
        end: float,
    ) -> dict[str, Any]:
        accepted = {m: v[1] for m, v in st.accepted.items()}
        deliveries = check_deliveries(accepted, delivered)
        dlq = [
            (
                None if r.key is None else bytes(r.key).decode("utf-8", "replace"),
                header(r, "i24-reason"),
            )
            for r in dlq_records
        ]
        hostile = check_hostile(st.injected, dlq, (mid for _, mid in delivered))
        others = duplicates_among_others(accepted, delivered)
        unexpected = sorted(
            {
                mid
                for _, mid in delivered
                if mid not in accepted and kinds.get(mid) not in NOTICE_KINDS
            }
        )
        stall, stall_from = max_stall(
            {m: (v[0], v[1]) for m, v in st.accepted.items()}, st.seen, end
        )
        other_dlq = collections.Counter(
            reason for key, reason in dlq if not (key or "").startswith("soak-hostile:")
        )
        kinds_of = collections.Counter(v[3] for v in st.accepted.values())
        ok = (
            deliveries.ok
            and hostile.ok
            and not others
            and not unexpected
            and not self.daemons.unexpected
            and all(g["missing"] == 0 for g in gateways.values())
        )
        intake = sorted(st.intake_s)
        return {
            "ok": ok,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "options": {
                "minutes": self.args.minutes,
                "rate_per_s": self.args.rate,
                "hostile_rate": self.args.hostile_rate,
                "seed": self.args.seed,
            },
            "run_s": {
                "setup": round(setup_s, 1),
                "traffic": round(traffic_s, 1),
                "drain": round(drain_s, 1),
                "total": round(end, 1),
            },
            "messages": {
                **deliveries.summary(),
                "by_kind": dict(kinds_of),
                "broadcasts_to_all": kinds_of.get("RED_NOTICE_REQUEST", 0),
            },
            "hostile": {**hostile.summary(), "send_failures": st.hostile_send_failures},
            "other_records": {
                "notices_and_receipts_committed_twice": len(others),
                "sample": dict(list(others.items())[:20]),
                "unexpected_ids_delivered": len(unexpected),
                "unexpected_sample": unexpected[:20],
                "dlq_records_not_injected_by_reason": dict(other_dlq),
            },
            "gateway_out_records": {
                "records": sum(self.out_copies.values()),
                "ids": len(self.out_copies),
                "ids_written_more_than_once": sum(1 for n in self.out_copies.values() if n > 1),
                "extra_copies": sum(n - 1 for n in self.out_copies.values()),
            },
            "kills": {
                "total": len(st.kills),
                "by_kind": dict(collections.Counter(k["kind"] for k in st.kills)),
                "events": st.kills,
            },
            "router_refusals_metric": dict(st.refusals_metric),
            "daemons_exited_by_themselves": self.daemons.unexpected,
            "gateways_stored": gateways,
            "max_stall_s": round(stall, 2),
            "max_stall_began_at_s": None if stall_from is None else round(stall_from, 1),
            "intake": {
                "retries": st.submit_retries,
                "refused": st.intake_refused[:20],
                "p50_s": round(intake[len(intake) // 2], 3) if intake else None,
                "max_s": round(intake[-1], 3) if intake else None,
                "submitter_late_max_s": round(st.late_s, 2),
            },
        }


def summary(r: dict[str, Any]) -> str:
    m, h, k = r["messages"], r["hostile"], r["kills"]["by_kind"]
    lines = [
        f"soak {'PASSED' if r['ok'] else 'FAILED'} in {r['run_s']['total']:.0f}s "
        f"(traffic {r['run_s']['traffic']:.0f}s, drain {r['run_s']['drain']:.0f}s)",
        f"  messages accepted {m['messages']} ({m['broadcasts_to_all']} to ALL), deliveries "
        f"{m['delivered']}/{m['expected_deliveries']}, lost {m['lost']}, duplicated "
        f"{m['duplicated']}, misdelivered {m['misdelivered']}",
        f"  kills: router {k.get('router', 0)}, gateway {k.get('gateway', 0)}, "
        f"broker {k.get('broker', 0)}; max stall {r['max_stall_s']}s",
        f"  hostile injected {h['injected']}, refused with the expected reason "
        f"{h['refused_with_expected_reason']}",
    ]
    for name, c in h["by_class"].items():
        bad = {
            x: c[x] for x in ("wrong_reason", "missing", "dead_lettered_twice", "delivered") if c[x]
        }
        lines.append(
            f"    {name:<19} {c['refused']}/{c['injected']} {c['expected_reason']}"
            + (f"  PROBLEM {bad}" if bad else "")
        )
    o = r["other_records"]
    if o["notices_and_receipts_committed_twice"] or o["unexpected_ids_delivered"]:
        lines.append(f"  PROBLEM other records: {o}")
    for d in r["daemons_exited_by_themselves"]:
        lines.append(f"  PROBLEM {d['name']} exited by itself (code {d['code']}) at {d['at_s']}s")
    for code, g in r["gateways_stored"].items():
        if g["missing"]:
            lines.append(f"  PROBLEM gateway {code} stored {g['stored']}/{g['expected']}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Reliability soak (make soak, not in CI): mixed traffic through real "
        "gateways and the router on a 3-node cluster, kill -9 of the router, a gateway and "
        "a broker at random moments, hostile records injected; an independent reader counts "
        "every accepted message exactly once and every hostile record refused.",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="traffic duration (default 10)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument(
        "--hostile-rate",
        type=float,
        default=0.01,
        help="hostile records per message (default 0.01)",
    )
    p.add_argument(
        "--rate", type=float, default=8.0, help="messages per second, open loop (default 8)"
    )
    p.add_argument(
        "--drain-s",
        type=float,
        default=300.0,
        help="longest wait for the last deliveries after the traffic (default 300)",
    )
    p.add_argument(
        "--stall-limit",
        type=float,
        default=90.0,
        help="stop draining when nothing moved for this long (default 90)",
    )
    p.add_argument(
        "--base",
        type=Path,
        default=ROOT / "var" / "soak",
        help="state and logs (wiped at start; default var/soak)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default bench/results/soak-<UTC time>.json)",
    )
    p.add_argument("--heap", default="384m", help="heap of each broker JVM (default 384m)")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if not 0 <= args.hostile_rate < 1 or args.rate <= 0 or args.minutes <= 0:
        p.error("--hostile-rate in [0, 1), --rate and --minutes > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("aiokafka", "i24net.kafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    base = args.base.resolve()
    if base.exists():
        shutil.rmtree(base)
    (base / "logs").mkdir(parents=True)
    settings = ClusterSettings(
        data_dir=base / "cluster",
        heap=args.heap,
        # fence a dead broker after 3 s instead of 9 s (loopback, no network jitter)
        properties={"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"},
    )
    say("starting a 3-node KRaft cluster ...")
    cluster = Cluster(settings)
    cluster.start()  # from the main thread: the attached JVMs live as long as it does
    soak = Soak(args, base, cluster)
    try:
        result = asyncio.run(soak.run())
    finally:
        soak.daemons.stop()
        say("stopping the cluster ...")
        cluster.stop()
    out = args.out or RESULTS / f"soak-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    say(summary(result))
    say(f"result: {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
