"""The real pipeline on a 3-node cluster survives ``kill -9`` of a broker (issue 6).

Two gateway daemons (FR sends, JP receives) and the router run as their own
processes (``python -m i24net gateway|router --config``) against a 3-node KRaft
cluster; every topic they use has replication factor 3 and
``min.insync.replicas=2``. 2,000 messages are submitted at FR through the
integrator API, as a steady stream; after 500 are accepted one broker is killed
with ``kill -9``, and it is restarted after 1,200.

The victim is made the most disruptive single broker there is: it is the
router's **transaction coordinator** (the leader of the ``__transaction_state``
partition of ``i24.router.<instance>``), and the ingress topic ``i24.out`` (one
partition here, so FR's records are in it) and ``i24.in.JP`` are created with it as
their leader. Its death stops, all at once, FR's
outbox drain (``acks=all`` produce), the router's reads, writes and commits,
and JP's fetches, until the cluster fences it and moves leadership and the
coordinator elsewhere.

Checks, and what each proves:

* JP's inbox (``GET /v1/inbox`` paging) holds each submitted message id once and
  nothing else: end-to-end delivery, exactly once *as the integrator sees it*.
  The inbox has ``message_id UNIQUE``, so this alone would hide duplicates in
  Kafka; it proves that nothing is lost.
* ``i24.in.JP`` read ``read_committed`` holds one record per message id: the
  router's consume-transform-produce transactions committed each message once
  through the coordinator's failover (the real exactly-once check: a second
  committed copy would be a router bug masked by the gateway's dedup).
* ``i24.in.FR`` (status notices and JP's receipts, the same transactions) holds
  no record twice.
* FR's records on ``i24.out`` may hold a message twice (the outbox drain is at least once:
  a round that timed out is sent again); the count is reported, not asserted.

The stall figures (printed, and written to ``$I24NET_RESULTS_DIR`` if set): the
longest gap between two consecutive messages stored at JP, the longest
accepted-to-SENT wait at FR (outbox status), the longest end-to-end time and the
longest intake call.

Settings that differ from the shipped defaults: the router's come from
``i24net.router.testing.settings_toml``: ``session_timeout_ms = 6000`` (default
10000) and ``transaction_timeout_ms = 10000`` (default 60000: an open transaction
of the dead coordinator's era blocks read_committed readers for at most 10 s);
the gateways' ``request_timeout_ms = 5000`` (default 10000) and
``outbox.retry_backoff_s = 0.5`` (default 1.0); the brokers' ``broker.session.timeout.ms=3000``
(Kafka's default 9000) and ``broker.heartbeat.interval.ms=500`` (default 2000).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from i24net.audit.topic import prime
from i24net.client import AsyncGatewayClient
from i24net.errors import IntakeRefusedError, ServiceError
from i24net.gateway.auth import create_integrator
from i24net.kafka import KafkaConnection, TopicSpec, ensure_topics
from i24net.kafka.cluster import Cluster, ClusterSettings
from i24net.provision import OUT_TOPIC_CONFIG
from i24net.router.app import topic_specs
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import Network, build_network, provision, settings_toml

# ~2.5 min on an idle 2-core machine; the bound leaves room for a loaded one
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "deploy" / "policy" / "article3.toml"
MESSAGES = 2000
KILL_AT = 500
RESTART_AT = 1200
RATE_PER_S = 100.0  # a steady stream: ~20 s of submissions
CONCURRENCY = 8
STALLED_S = 90.0  # no message stored at JP for this long: the pipeline is stuck
INSTANCE = "a"
RF = 3
MIN_ISR = "2"
PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}
TRANSACTION, GROUP = 1, 0  # FindCoordinator key types


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    settings = ClusterSettings(
        data_dir=tmp_path_factory.mktemp("cluster"),
        nodes=3,
        heap="384m",
        # fence a dead broker after 3 s instead of 9 s (loopback, no network jitter)
        properties={"broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"},
    )
    with Cluster(settings) as c:  # started (and stopped) from the main thread
        yield c


# -- cluster helpers -----------------------------------------------------------------------


async def coordinator(conn: KafkaConnection, key_type: int, key: str) -> int:
    """The node coordinating a transactional id or a group (creates the internal topic)."""
    client = AIOKafkaClient(**conn.client_kwargs())
    await client.bootstrap()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                return int(await client.coordinator_lookup(key_type, key))
            except KafkaError:  # COORDINATOR_NOT_AVAILABLE while the topic is created
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.close()


async def describe(conn: KafkaConnection, names: list[str]) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(**conn.client_kwargs())
    await admin.start()
    try:
        topics = {t["topic"]: t for t in await admin.describe_topics(names)}
        resp = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
        configs: dict[str, dict[str, str]] = {}
        for r in resp:
            for res in r.resources:
                configs[res[3]] = {e[0]: e[1] for e in res[4]}
        return {
            n: {
                "leaders": [p["leader"] for p in topics[n]["partitions"]],
                "replicas": [len(p["replicas"]) for p in topics[n]["partitions"]],
                "min_isr": configs.get(n, {}).get("min.insync.replicas"),
            }
            for n in names
        }
    finally:
        await admin.close()


async def create_led_by(
    conn: KafkaConnection, leader: int, nodes: list[int], specs: list[TopicSpec]
) -> None:
    """Create single-partition RF 3 topics whose preferred (first) replica is ``leader``."""
    replicas = [leader, *(n for n in nodes if n != leader)]
    admin = AIOKafkaAdminClient(**conn.client_kwargs())
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    s.name, -1, -1, {0: replicas}, {**s.config, "min.insync.replicas": MIN_ISR}
                )
                for s in specs
            ]
        )
        deadline = time.monotonic() + 30
        while True:
            described = await admin.describe_topics([s.name for s in specs])
            if all(
                t["error_code"] == 0 and t["partitions"] and t["partitions"][0]["leader"] == leader
                for t in described
            ):
                return
            assert time.monotonic() < deadline, f"leaders not elected: {described}"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def count_ids(
    conn: KafkaConnection, topic: str, *, committed: bool, sender: str | None = None
) -> collections.Counter[str]:
    """Records per ``i24-msgid`` header in partition 0 of ``topic``, start to end
    (``sender``: only those whose ``i24-sender`` hint names it, on the shared ingress)."""
    c = AIOKafkaConsumer(
        **conn.client_kwargs(),
        isolation_level="read_committed" if committed else "read_uncommitted",
        enable_auto_commit=False,
    )
    await c.start()
    try:
        await prime(c, [topic])
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        end = (await c.end_offsets([tp]))[tp]
        seen: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + 60
        while await c.position(tp) < end and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for recs in batch.values():
                for r in recs:
                    hs = {k: bytes(v).decode() for k, v in r.headers if v is not None}
                    if "i24-msgid" in hs and (sender is None or hs.get("i24-sender") == sender):
                        seen[hs["i24-msgid"]] += 1
        return seen
    finally:
        await c.stop()


# -- services ------------------------------------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str | Path):
        return json.dumps(str(v))
    return str(v)


def write_toml(path: Path, top: dict[str, Any], sections: dict[str, dict[str, Any]]) -> Path:
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, values in sections.items():
        lines += ["", f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


class Services:
    """The gateway and router processes, each with its own log file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "i24net", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            assert p.poll() is None, f"{name} exited ({p.returncode}):\n{self.logs(name)}"

    def logs(self, name: str, tail: int = 4000) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)


def gateway_token(tmp: Path, code: str) -> str:
    """An integrator of ``code``'s gateway (in its data_dir's store, before it starts)."""
    token = create_integrator(
        tmp / f"gw-{code}" / "integrators.sqlite3",
        "tester",
        ["send", "inbox:read", "status:read", "operator"],
        rate_per_s=10_000,
        burst=10_000,
    )
    assert token is not None
    return token


def gateway_config(tmp: Path, code: str, bootstrap: str, prefix: str, port: int) -> Path:
    keys = tmp / "keys"
    return write_toml(
        tmp / f"gateway-{code}.toml",
        {"station": code, "data_dir": tmp / f"gw-{code}", "shutdown_grace_s": 5},
        {
            "keys": {
                "secret": keys / f"{code}.secret.json",
                "root_public": keys / "gs-root.public.json",
            },
            "directory": {"entries": tmp / "entries"},
            "kafka": {
                "bootstrap": bootstrap,
                "topic_prefix": prefix + "i24",
                "request_timeout_ms": 5000,
            },
            "api": {"port": port},
            "outbox": {"retry_backoff_s": 0.5},
        },
    )


async def wait_http(url: str, services: Services, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            services.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{url} not ready"
            await asyncio.sleep(0.3)


async def provision_cluster(
    conn: KafkaConnection,
    net: Network,
    topics: Topics,
    router_cfg: Path,
    victim: int,
    nodes: list[int],
) -> None:
    """Every topic RF 3, min ISR 2; the ingress topic (one partition here, so FR's records
    are in it) and JP's in led by ``victim``; directory published."""
    big = {"max.message.bytes": str(2 << 20)}
    await create_led_by(
        conn,
        victim,
        nodes,
        [
            TopicSpec(topics.ingress, config={**big, **OUT_TOPIC_CONFIG}),
            TopicSpec(topics.inbox("JP"), config=big),
        ],
    )
    isr = {"min.insync.replicas": MIN_ISR}
    specs = [TopicSpec(topics.directory, 1, RF, {"cleanup.policy": "compact", **isr})]
    for code in net.secrets:
        specs += [TopicSpec(topics.inbox(code), 1, RF, {**big, **isr})]
    # the router's own topics, made first with RF 3 (its ensure_topics would make them RF 1)
    specs += [
        TopicSpec(s.name, s.partitions, RF, {**s.config, **isr})
        for s in topic_specs(load_settings(router_cfg))
        if s.name != topics.ingress  # made above, led by the victim
    ]
    await ensure_topics(conn, specs)  # leaves the two above as they are
    await provision(conn, net, topics, legacy=False)  # topics exist: publishes the directory


# -- the test ------------------------------------------------------------------------------


async def test_kill_9_of_a_broker_under_the_real_pipeline_delivers_exactly_once(
    cluster: Cluster, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    t_start = time.monotonic()
    conn = cluster.admin_connection()
    prefix = unique_name("t") + "."
    topics = Topics(prefix=prefix)
    net = build_network(("FR", "JP"), tmp_path / "keys", now_ms=now_ms())
    (tmp_path / "entries").mkdir()
    for code, entry in net.entries.items():
        (tmp_path / "entries" / f"{code}.entry").write_bytes(entry)

    router_port, fr_port, jp_port = free_port(), free_port(), free_port()
    router_cfg = tmp_path / "router.toml"
    router_cfg.write_text(
        settings_toml(
            instance=INSTANCE,
            bootstrap=cluster.bootstrap,
            prefix=prefix,
            keys_dir=tmp_path / "keys",
            state_dir=tmp_path / "router-state",
            policy=POLICY,
            port=router_port,
            group=prefix + "router",
        )
    )
    transactional_id = load_settings(router_cfg).transactional_id

    # The victim: the router's transaction coordinator, made leader of out.FR and in.JP too.
    victim = await coordinator(conn, TRANSACTION, transactional_id)
    await provision_cluster(conn, net, topics, router_cfg, victim, cluster.node_ids)

    services = Services(tmp_path)
    fr_cfg = gateway_config(tmp_path, "FR", cluster.bootstrap, prefix, fr_port)
    jp_cfg = gateway_config(tmp_path, "JP", cluster.bootstrap, prefix, jp_port)
    services.start("router", "router", "--config", str(router_cfg))
    services.start("gateway-FR", "gateway", "--config", str(fr_cfg))
    services.start("gateway-JP", "gateway", "--config", str(jp_cfg))
    try:
        await wait_http(f"http://127.0.0.1:{router_port}/readyz", services, 90)
        await wait_http(f"http://127.0.0.1:{fr_port}/healthz", services, 60)
        await wait_http(f"http://127.0.0.1:{jp_port}/healthz", services, 60)
        ready_s = time.monotonic() - t_start
        async with (
            AsyncGatewayClient(
                f"http://127.0.0.1:{fr_port}", timeout=30, token=gateway_token(tmp_path, "FR")
            ) as fr,
            AsyncGatewayClient(
                f"http://127.0.0.1:{jp_port}", timeout=60, token=gateway_token(tmp_path, "JP")
            ) as jp,
        ):
            result = await run_traffic(
                cluster, conn, topics, services, fr, jp, victim, transactional_id
            )
        result["setup_s"] = round(ready_s, 1)
    finally:
        services.stop()
    result["total_s"] = round(time.monotonic() - t_start, 1)
    print(f"\n3-node cluster + gateways + router, kill -9 of node {victim}: {json.dumps(result)}")
    _record(result)
    assert cluster.is_running(victim)


async def run_traffic(
    cluster: Cluster,
    conn: KafkaConnection,
    topics: Topics,
    services: Services,
    fr: AsyncGatewayClient,
    jp: AsyncGatewayClient,
    victim: int,
    transactional_id: str,
) -> dict[str, Any]:
    roles = {
        "router_transaction_coordinator": victim,
        "router_group_coordinator": await coordinator(conn, GROUP, f"{topics.prefix}router"),
        "jp_gateway_group_coordinator": await coordinator(conn, GROUP, f"{topics.prefix}i24.gw.JP"),
        **{
            f"leader_{t}": (await describe(conn, [t]))[t]["leaders"][0]
            for t in (topics.ingress, topics.inbox("JP"), topics.inbox("FR"))
        },
    }

    ids: dict[int, str] = {}
    intake_s: list[float] = []
    sem = asyncio.Semaphore(CONCURRENCY)
    tasks: set[asyncio.Task[None]] = set()
    retries = 0

    async def submit(i: int) -> None:
        nonlocal retries
        try:
            for attempt in itertools.count():
                t0 = time.monotonic()
                try:
                    ids[i] = await fr.send(
                        "POLICE_MESSAGE", to=["JP"], payload=PM, idempotency_key=f"m{i}"
                    )
                    intake_s.append(time.monotonic() - t0)
                    return
                except (ServiceError, IntakeRefusedError) as exc:
                    if (isinstance(exc, IntakeRefusedError) and not exc.retriable) or attempt >= 20:
                        raise
                    retries += 1
                    await asyncio.sleep(0.5)
        finally:
            sem.release()

    t0 = time.monotonic()
    kill_wall = restart_wall = 0
    kill_at_s = restart_at_s = 0.0
    restarted: asyncio.Future[None] | None = None
    for i in range(MESSAGES):
        await sem.acquire()
        if not kill_wall and len(ids) >= KILL_AT:
            await asyncio.to_thread(cluster.kill, victim)
            kill_wall, kill_at_s = now_ms(), time.monotonic() - t0
        if kill_wall and restarted is None and len(ids) >= RESTART_AT:
            # launched from this (the main) thread: an attached JVM dies with its thread
            cluster.restart(victim, wait=False)
            restart_wall, restart_at_s = now_ms(), time.monotonic() - t0
            restarted = asyncio.ensure_future(asyncio.to_thread(cluster.broker(victim).wait_ready))
        await asyncio.sleep(max(0.0, t0 + i / RATE_PER_S - time.monotonic()))
        task = asyncio.create_task(submit(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if i % 200 == 0:
            services.check_alive()
    await asyncio.gather(*tasks)
    submitted_s = time.monotonic() - t0
    assert kill_wall, "the broker was never killed"
    if restarted is None:
        cluster.restart(victim, wait=False)
        restart_wall, restart_at_s = now_ms(), time.monotonic() - t0
        restarted = asyncio.ensure_future(asyncio.to_thread(cluster.broker(victim).wait_ready))
    await restarted
    restart_ready_s = time.monotonic() - t0 - restart_at_s
    submitted = set(ids.values())
    assert len(submitted) == MESSAGES

    # JP's inbox, paged, until it holds every message (or the deadline)
    stored: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + STALLED_S  # moved on by every page that brings messages
    while len(stored) < MESSAGES and time.monotonic() < deadline:
        page = await jp.inbox(after=cursor, limit=1000, wait=5)
        if page["messages"]:
            deadline = time.monotonic() + STALLED_S
        stored += page["messages"]
        cursor = page["cursor"]
        services.check_alive()
    delivered_s = time.monotonic() - t0
    stored_ids = [m["message_id"] for m in stored]
    counts = collections.Counter(stored_ids)
    missing = submitted - set(counts)
    assert not missing, f"{len(missing)} of {MESSAGES} never stored at JP\n" + "\n".join(
        f"--- {n}\n{services.logs(n)}" for n in services.procs
    )
    assert len(stored_ids) == len(counts) == MESSAGES, "a message stored twice at JP"
    assert set(counts) == submitted, f"unexpected messages at JP: {set(counts) - submitted}"
    assert len((await jp.inbox(after=cursor, limit=10))["messages"]) == 0

    # the committed logs: the router's transactions wrote each message (and notice) once
    in_jp = await count_ids(conn, topics.inbox("JP"), committed=True)
    dupes = {k: v for k, v in in_jp.items() if v != 1}
    assert not dupes, f"{len(dupes)} message ids committed more than once to {topics.inbox('JP')}"
    assert set(in_jp) == submitted
    notices = await count_ids(conn, topics.inbox("FR"), committed=True)
    notice_dupes = {k: v for k, v in notices.items() if v != 1}
    assert not notice_dupes, f"{len(notice_dupes)} status notices committed more than once"
    assert len(notices) >= MESSAGES  # a notice (own message id) per message, and JP's receipts
    out_fr = await count_ids(conn, topics.ingress, committed=False, sender="FR")
    assert set(out_fr) == submitted

    # the stalls: at JP (stored), at FR (accepted -> SENT), end to end
    received = sorted(m["received_ms"] for m in stored)
    gaps = [(b - a, a) for a, b in itertools.pairwise(received)]
    longest_gap, gap_from = max(gaps)
    received_of = {m["message_id"]: m["received_ms"] for m in stored}
    sent_wait: list[tuple[int, int]] = []
    e2e: list[int] = []
    status_sem = asyncio.Semaphore(16)

    async def outbox_status(mid: str) -> None:
        async with status_sem:
            st = await fr.status(mid)
        accepted = min(
            (e["at_ms"] for e in st["events"] if e["status"] == "ACCEPTED"),
            default=st["created_ms"],
        )
        assert st["sent_ms"] is not None, st
        sent_wait.append((st["sent_ms"] - accepted, accepted))
        e2e.append(received_of[mid] - accepted)

    await asyncio.gather(*(outbox_status(m) for m in submitted))
    longest_sent_wait, sent_wait_from = max(sent_wait)

    internal = await describe(conn, ["__consumer_offsets", "__transaction_state"])
    for name, d in internal.items():
        assert set(d["replicas"]) == {RF} and d["min_isr"] == MIN_ISR, (name, d)

    return {
        "messages": MESSAGES,
        "killed_node": victim,
        "killed_node_roles": [k for k, v in roles.items() if v == victim],
        "roles": roles,
        "transactional_id": transactional_id,
        "kill_after_s": round(kill_at_s, 2),
        "restart_after_s": round(restart_at_s, 2),
        "restarted_broker_ready_in_s": round(restart_ready_s, 1),
        "all_submitted_s": round(submitted_s, 1),
        "all_stored_at_jp_s": round(delivered_s, 1),
        "longest_gap_between_stored_at_jp_s": longest_gap / 1000,
        "that_gap_began_after_kill_s": (gap_from - kill_wall) / 1000,
        "longest_accepted_to_sent_s": longest_sent_wait / 1000,
        "that_message_accepted_after_kill_s": (sent_wait_from - kill_wall) / 1000,
        "longest_accepted_to_stored_at_jp_s": max(e2e) / 1000,
        "longest_intake_call_s": round(max(intake_s), 3),
        "intake_retries": retries,
        "restart_wall_offset_from_kill_s": (restart_wall - kill_wall) / 1000,
        "out_fr_records": sum(out_fr.values()),
        "out_fr_duplicates": sum(v - 1 for v in out_fr.values()),
        "in_jp_committed_records": sum(in_jp.values()),
        "internal_topics": internal,
    }


def _record(result: dict[str, object]) -> None:
    results_dir = os.environ.get("I24NET_RESULTS_DIR")
    if results_dir:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        (Path(results_dir) / "cluster_pipeline_failover.json").write_text(
            json.dumps(result, indent=2)
        )
