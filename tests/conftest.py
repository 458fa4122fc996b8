"""Shared fixtures: a real Kafka broker for tests marked ``kafka``.

One broker is started per test session (KRaft, loopback, free ports) and
stopped at the end; it is started attached, so it dies with the test process
even when the run is interrupted. Tests that must stop or kill a broker use
``broker_factory`` for one of their own.

Set ``I24NET_TEST_BOOTSTRAP=host:port`` to run against a broker you started
yourself (``i24net dev broker start``) and skip the start-up.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from i24net.kafka import Broker, BrokerSettings, KafkaConnection


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("I24NET_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    broker = Broker(BrokerSettings(data_dir=tmp_path_factory.mktemp("kafka"), heap="768m"))
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_conn(kafka_bootstrap: str) -> KafkaConnection:
    return KafkaConnection(bootstrap=kafka_bootstrap, client_id="i24net-tests")


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Start brokers owned by one test (to stop, kill and restart them)."""
    brokers: list[Broker] = []

    def make(**overrides: object) -> Broker:
        settings = BrokerSettings(data_dir=tmp_path / f"kafka{len(brokers)}", **overrides)  # type: ignore[arg-type]
        broker = Broker(settings)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name("out")`` → a topic or group name no other test uses."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:40].strip("-")

    def make(prefix: str) -> str:
        return f"{prefix}.{test}.{uuid.uuid4().hex[:8]}"

    return make
