"""The router and envelope v2 (issue 17): delivery in the inbound's version, notices in the
highest version the recipient reads, and a clear refusal when a recipient lost its v2 key
between the sending gateway's choice and the routing. Real keys and envelopes, no broker
(``Pipeline.process`` is a pure decider, as in test_router_pipeline.py).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from i24net.audit import Action
from i24net.directory import Directory
from i24net.envelope import Receiver, Recipients, envelope_version
from i24net.policy import Engine, load_policy
from i24net.replay import ReplayWindow
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import Decided, Pipeline, VersionMetrics
from i24net.router.settings import Topics
from i24net.router.testing import Network, build_network, police_message

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
T0 = 1_780_000_000_000
TOPICS = Topics(prefix="t.")


def clock() -> int:
    return T0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(("FR", "JP", "BR"), tmp_path_factory.mktemp("keys"), now_ms=T0)


@dataclasses.dataclass
class World:
    net: Network
    directory: Directory
    registry: CollectorRegistry
    pipeline: Pipeline

    def process(self, data: bytes) -> Decided:
        return self.pipeline.process(TOPICS.ingress, "t.i24.out:0:1", b"k", data, [], set())

    def to_inbox(self, d: Decided, station: str) -> list[bytes]:
        return [o.value for o in d.outputs if o.topic == TOPICS.inbox(station)]

    def open_as(self, station: str, data: bytes) -> Any:
        rx = Receiver(self.net.secrets[station], self.directory, ReplayWindow(clock=clock))
        return rx.open(data)

    def sample(self, version: str, stage: str) -> float:
        labels = {"version": version, "stage": stage}
        return self.registry.get_sample_value("i24net_router_envelopes_total", labels) or 0.0

    def drop_v2_key(self, station: str) -> None:
        """``station``'s record without its v2 key: the directory changed under a message."""
        rec = self.directory.record(station)
        v1 = tuple(k for k in rec.encryption_keys if len(k.public_key) == 32)
        self.directory.put(dataclasses.replace(rec, encryption_keys=v1, serial=rec.serial + 1))


@pytest.fixture
def world(net: Network) -> World:
    directory = Directory(list(net.directory))
    registry = CollectorRegistry()
    pipeline = Pipeline(
        secrets=net.secrets["GS"],
        directory=directory,
        replay=ReplayWindow(clock=clock),
        engine=Engine(load_policy(POLICY)),
        topics=TOPICS,
        store=net.store,
        actor="router/a",
        metrics=RouterMetrics.create(registry),
        versions=VersionMetrics.create(registry),
    )
    return World(net, directory, registry, pipeline)


@pytest.mark.parametrize("version", [1, 2])
def test_a_message_is_delivered_in_its_own_version_and_the_notice_in_v2(
    world: World, version: int
) -> None:
    gw = world.net.gateway("FR", T0, version=version)
    _, data = gw.message("POLICE_MESSAGE", police_message("hi"), Recipients.to("JP", "BR"), T0)
    assert envelope_version(data) == version
    d = world.process(data)
    assert d.status == "delivered"
    for st in ("JP", "BR"):
        (env,) = world.to_inbox(d, st)
        assert envelope_version(env) == version
        assert world.open_as(st, env).version == version
    (notice,) = world.to_inbox(d, "FR")
    assert envelope_version(notice) == 2  # FR reads v2: the GS's own notices use it
    assert world.open_as("FR", notice).header.kind == "STATUS_NOTICE"
    assert world.sample(str(version), "opened") == 1
    assert world.sample(str(version), "delivered") == 2
    assert world.sample("2", "originated") == 1


def test_a_recipient_that_lost_its_v2_key_is_left_out_with_the_reason(world: World) -> None:
    gw = world.net.gateway("FR", T0, version=2)
    _, data = gw.message("POLICE_MESSAGE", police_message("hi"), Recipients.to("JP", "BR"), T0)
    world.drop_v2_key("BR")
    d = world.process(data)
    assert d.status == "delivered"
    assert world.to_inbox(d, "BR") == []
    (env,) = world.to_inbox(d, "JP")
    assert envelope_version(env) == 2
    (notice,) = world.to_inbox(d, "FR")
    _, n = world.net.store.decode_single(
        world.open_as("FR", notice).payload, expected="net.i24.StatusNotice"
    )
    assert n["status"] == "DELIVERED" and n["stations"] == ["JP"]
    assert "BR (no_v2_key)" in n["explanation"]


def test_a_v2_message_whose_only_recipient_lost_its_v2_key_is_dead_lettered(
    world: World,
) -> None:
    gw = world.net.gateway("FR", T0, version=2)
    _, data = gw.message("POLICE_MESSAGE", police_message("hi"), Recipients.to("BR"), T0)
    world.drop_v2_key("BR")
    d = world.process(data)
    assert d.status == "refused" and d.reason == "unknown_recipient"
    assert [o.topic for o in d.outputs if o.topic == TOPICS.dlq] == [TOPICS.dlq]
    (entry,) = d.audit
    assert entry.action is Action.REFUSED
    (notice,) = world.to_inbox(d, "FR")
    _, n = world.net.store.decode_single(
        world.open_as("FR", notice).payload, expected="net.i24.StatusNotice"
    )
    assert n["status"] == "REFUSED" and n["reason"] == "unknown_recipient"
    assert "BR=no_v2_key" in n["explanation"]
    assert json.loads(entry.reason or "{}")["reasons"] == ["unknown_recipient"]


def test_a_v1_message_still_reaches_a_station_that_lost_its_v2_key(world: World) -> None:
    world.drop_v2_key("BR")
    gw = world.net.gateway("FR", T0, version=1)
    _, data = gw.message("POLICE_MESSAGE", police_message("hi"), Recipients.to("BR"), T0)
    d = world.process(data)
    assert d.status == "delivered"
    (env,) = world.to_inbox(d, "BR")
    assert world.open_as("BR", env).version == 1
    (notice,) = world.to_inbox(d, "FR")
    assert envelope_version(notice) == 2
