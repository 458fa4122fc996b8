"""Forward secrecy of envelope v2, shown on the real broker (issue 17, "done when").

FR sends a message to JP in envelope v2 through a real ``RouterApp``; the test
records the raw bytes of every record on the ingress topic, on ``i24.in.JP`` (the
delivery) and on ``i24.in.FR`` (the router's status notice). Then FR, JP and the
GS rotate their key sets (new KEM keys published with the next serials, the old
ones until the rotation); the router restarts on its new key file with the old one
under ``[keys] previous``; the test moves the clocks past the hold, and the old
key files are destroyed by the real code paths: the router's (``RouterKeyring``,
which also writes a ``KEY_DESTROYED`` audit record) and the gateways'
(``PreviousKeys.retire``, what each inbound batch calls). Finally every key file
left on disk is handed to an opener -- as the router, as a recipient, each one
current with all the others as previous keys -- and none of the recorded
envelopes opens. Before the destruction the same envelopes did open with the
keys of their time, so the test fails if destruction or the wraps' ephemeral
keys stop doing their job.

A second test is the v1 -> v2 transition: a station with only a v1 key keeps
receiving (in v1) while the others use v2, with the gateways' ``auto`` choice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from i24net.audit.topic import prime
from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.envelope import Receiver, Recipients, Router, envelope_version
from i24net.gateway.keyring import PreviousKeys
from i24net.kafka import KafkaConnection
from i24net.keys import StationSecrets, load_station, save_station
from i24net.replay import ReplayWindow
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import (
    Network,
    build_network,
    hints,
    police_message,
    provision,
    publish_directory,
    revise,
    settings_toml,
)
from i24net.stations import station

pytestmark = pytest.mark.kafka
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
HOLD_S = 3600
GRACE_MS = 3600_000


class Clock:
    """The router's (and the gateways') clock: the real one, moved on by the test."""

    def __init__(self) -> None:
        self.shift_ms = 0

    def __call__(self) -> int:
        return system_clock() + self.shift_ms


@asynccontextmanager
async def running_router(
    tmp: Path,
    conn: KafkaConnection,
    prefix: str,
    clock: Clock,
    *,
    gs_secret: Path | None = None,
    previous: Iterable[Path] = (),
) -> AsyncIterator[tuple[RouterApp, CollectorRegistry]]:
    keys = tmp / "keys"
    toml = settings_toml(
        instance="fs",
        bootstrap=conn.bootstrap,
        prefix=prefix,
        keys_dir=keys,
        state_dir=tmp / "state",
        policy=POLICY,
        group=prefix + "router",
        extra_router={"directory_refresh_ms": 200},
    )
    if gs_secret is not None:
        listed = ", ".join(f'"{p}"' for p in previous)
        toml = toml.replace(
            f'gs_secret = "{keys / "GS.secret.json"}"',
            f'gs_secret = "{gs_secret}"\nprevious = [{listed}]\nprevious_hold_s = {HOLD_S}',
        )
    cfg = tmp / "router.toml"
    cfg.write_text(toml)
    registry = CollectorRegistry()
    stop = asyncio.Event()
    async with RouterApp(load_settings(cfg), registry, clock=clock) as app:
        task = asyncio.create_task(app.run(stop))
        try:
            yield app, registry
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)  # a router crash fails the test here


async def records(conn: KafkaConnection, topic: str, want: int, wait_s: float = 45) -> list[Any]:
    """At least ``want`` committed records of ``topic``, from its start."""
    c = AIOKafkaConsumer(
        **conn.client_kwargs(), isolation_level="read_committed", enable_auto_commit=False
    )
    await c.start()
    try:
        await prime(c, [topic])
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or {0}]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + wait_s
        while len(out) < want:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(out)} records, {want} expected")
            for recs in (await c.getmany(timeout_ms=300)).values():
                out.extend(recs)
        return out
    finally:
        await c.stop()


async def until(cond: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def send(
    producer: Any,
    topics: Topics,
    net: Network,
    sender: str,
    to: Recipients,
    text: str,
    *,
    version: int | None,
) -> str:
    gw = net.gateway(sender, system_clock(), version=version)
    h, data = gw.message("POLICE_MESSAGE", police_message(text), to, system_clock())
    await producer.send_and_wait(
        topics.ingress, key=h.message_id.encode(), value=data, headers=hints(h)
    )
    return h.message_id


def rotated(net: Network, code: str, new: StationSecrets, at_ms: int) -> StationRecord:
    """``code``'s record with its old encryption/KEM keys until ``at_ms`` and the new key
    set's from then (the new signing key added, the old one kept for what it signed)."""
    old = net.directory.record(code)
    fresh = StationRecord.for_station(
        station(code), [new.public()], valid_from_ms=at_ms, issued_ms=at_ms
    )
    return dataclasses.replace(
        old,
        signing_keys=(*old.signing_keys, *fresh.signing_keys),
        encryption_keys=(
            *(dataclasses.replace(k, valid_until_ms=at_ms) for k in old.encryption_keys),
            *fresh.encryption_keys,
        ),
        issued_ms=at_ms,
    )


def opens(
    data: bytes,
    current: StationSecrets,
    previous: tuple[StationSecrets, ...],
    d: Directory,
    *,
    as_router: bool,
) -> bool:
    """Whether ``data`` opens with these keys (as the GS router, or as a recipient)."""
    window = ReplayWindow(clock=system_clock)
    try:
        if as_router:
            Router(current, d, window, previous=previous).open(data, record=False)
        else:
            Receiver(current, d, window, previous=previous).open(data, record=False)
    except Exception:  # any refusal: it did not open
        return False
    return True


def key_sets_left(tmp: Path) -> list[StationSecrets]:
    """Every station key file anywhere under ``tmp`` (the GS root key opens nothing)."""
    files = sorted(tmp.rglob("*.secret.json"))
    return [load_station(p) for p in files if not p.name.startswith("gs-root")]


async def test_recorded_v2_envelopes_do_not_open_with_the_keys_left_after_rotation_and_destruction(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("fs") + "."
    topics = Topics(prefix=prefix)
    keys = tmp_path / "keys"
    net = build_network(["FR", "JP"], keys, now_ms=system_clock() - 60_000)
    await provision(kafka_conn, net, topics, legacy=False)
    clock = Clock()
    producer = AIOKafkaProducer(**kafka_conn.client_kwargs(), max_request_size=2 << 20)
    await producer.start()
    try:
        # 1. FR -> JP in v2, through the router; record every record's bytes.
        async with running_router(tmp_path, kafka_conn, prefix, clock):
            mid = await send(
                producer, topics, net, "FR", Recipients.to("JP"), "the secret", version=2
            )
            delivered = await records(kafka_conn, topics.inbox("JP"), 1)
            notices = await records(kafka_conn, topics.inbox("FR"), 1)
        ingress = await records(kafka_conn, topics.ingress, 1)
        recorded = {
            "ingress": [r.value for r in ingress],
            "in.JP": [r.value for r in delivered],
            "in.FR": [r.value for r in notices],
        }
        assert [r.key for r in delivered] == [mid.encode()]
        assert {envelope_version(v) for vs in recorded.values() for v in vs} == {2}

        # ... and with the keys of their time, they open.
        before = net.directory
        old = {c: net.secrets[c] for c in ("GS", "FR", "JP")}
        assert all(opens(v, old["GS"], (), before, as_router=True) for v in recorded["ingress"])
        assert all(opens(v, old["JP"], (), before, as_router=False) for v in recorded["in.JP"])
        assert all(opens(v, old["FR"], (), before, as_router=False) for v in recorded["in.FR"])

        # 2. The rotation: new key sets for GS, FR and JP, published with the next serials.
        at = system_clock()
        new_dir = tmp_path / "new"
        new: dict[str, StationSecrets] = {}
        for code in ("GS", "FR", "JP"):
            new[code] = StationSecrets.generate(code, now_ms=at)
            save_station(new[code], new_dir)
            revise(net, rotated(net, code, new[code], at))
        await publish_directory(producer, net, topics)
        after = net.directory
        assert after.current_encryption_key("JP", at + 1, version=2).key_id == new["JP"].kem_key_id

        # 3. The router on its new key file, the old one under [keys] previous; the gateways'
        # previous keys as PreviousKeys holds them. Past the hold, the real code paths destroy.
        old_gs = keys / "GS.secret.json"
        gateways = {
            c: PreviousKeys.load(new[c], [keys / f"{c}.secret.json"], grace_ms=GRACE_MS)
            for c in ("FR", "JP")
        }
        async with running_router(
            tmp_path,
            kafka_conn,
            prefix,
            clock,
            gs_secret=new_dir / "GS.secret.json",
            previous=[old_gs],
        ) as (app, registry):
            await until(
                lambda: app.directory.record("GS").serial == after.record("GS").serial,
                30,
                "the rotated GS record at the router",
            )
            assert old_gs.exists()  # within the hold: kept
            for c, pk in gateways.items():
                assert pk.retire(after, clock()) == [], c
            clock.shift_ms = HOLD_S * 1000 + 60_000
            await until(lambda: not old_gs.exists(), 30, "the router destroying the old GS key")
            destroyed = registry.get_sample_value("i24net_router_encryption_keys_destroyed_total")
            assert destroyed == 1
            for c, pk in gateways.items():
                assert pk.retire(after, clock()), c
                assert not (keys / f"{c}.secret.json").exists()
            # The file goes first, its audit entry is committed after: read until it is there
            # (while the router still runs, so a failed commit is retried at its next pass).
            store = net.store
            deadline = time.monotonic() + 45
            while True:
                reasons = []
                for r in await records(kafka_conn, topics.audit, 1):
                    _, rec = store.decode_single(r.value, expected="net.i24.AuditRecord")
                    if rec["action"] == "KEY_DESTROYED":
                        reasons += json.loads(rec["reason"])["reasons"]
                if reasons or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
        assert f"key_id:{old['GS'].kem_key_id}" in reasons
        assert f"key_id:{old['GS'].encryption_key_id}" in reasons

        # 4. Every key file left on disk, every way round: nothing recorded opens.
        left = key_sets_left(tmp_path)
        assert {s.station for s in left} == {"GS", "FR", "JP"}
        assert not {s.kem_key_id for s in left} & {s.kem_key_id for s in old.values()}
        for s in left:
            others = tuple(o for o in left if o is not s)
            for name, values in recorded.items():
                for v in values:
                    for as_router in (True, False):
                        for d in (before, after):
                            assert not opens(v, s, others, d, as_router=as_router), (
                                f"a recorded {name} envelope opened with {s!r}"
                            )
    finally:
        await producer.stop()


async def test_a_station_with_only_a_v1_key_still_receives_in_v1_while_others_use_v2(
    tmp_path: Path, kafka_conn: KafkaConnection, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("v1v2") + "."
    topics = Topics(prefix=prefix)
    net = build_network(
        ["FR", "JP", "BR"], tmp_path / "keys", now_ms=system_clock() - 60_000, v1_only=["BR"]
    )
    assert net.directory.envelope_versions("BR", system_clock()) == {1}
    assert net.directory.envelope_versions("JP", system_clock()) == {1, 2}
    await provision(kafka_conn, net, topics, legacy=False)
    producer = AIOKafkaProducer(**kafka_conn.client_kwargs(), max_request_size=2 << 20)
    await producer.start()
    try:
        async with running_router(tmp_path, kafka_conn, prefix, Clock()) as (_, registry):
            both = await send(
                producer, topics, net, "FR", Recipients.to("JP", "BR"), "to both", version=None
            )
            jp_only = await send(
                producer, topics, net, "FR", Recipients.to("JP"), "to JP", version=None
            )
            at_jp = await records(kafka_conn, topics.inbox("JP"), 2)
            at_br = await records(kafka_conn, topics.inbox("BR"), 1)
            notices = await records(kafka_conn, topics.inbox("FR"), 2)
            versions = {r.key.decode(): envelope_version(r.value) for r in at_jp}
            assert versions == {both: 1, jp_only: 2}
            assert [(r.key.decode(), envelope_version(r.value)) for r in at_br] == [(both, 1)]
            assert {envelope_version(r.value) for r in notices} == {2}  # FR reads v2
            jp = Receiver(net.secrets["JP"], net.directory, ReplayWindow(clock=system_clock))
            br = Receiver(net.secrets["BR"], net.directory, ReplayWindow(clock=system_clock))
            assert {jp.open(r.value).version for r in at_jp} == {1, 2}
            assert br.open(at_br[0].value).payload  # v1, opened by the v1-only station
            assert (
                registry.get_sample_value(
                    "i24net_router_envelopes_total", {"version": "1", "stage": "delivered"}
                )
                == 2
            )
            assert (
                registry.get_sample_value(
                    "i24net_router_envelopes_total", {"version": "2", "stage": "delivered"}
                )
                == 1
            )
    finally:
        await producer.stop()
