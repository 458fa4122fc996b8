"""The broker manager's configuration and its clear errors (no JVM started here)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from i24net.errors import BrokerFetchError, PortInUseError, ToolMissingError
from i24net.kafka import Broker, BrokerSettings, KafkaDistribution
from i24net.kafka.broker import check_port_free
from i24net.kafka.dist import find_java


def test_single_node_properties_make_transactions_work(tmp_path: Path) -> None:
    broker = Broker(BrokerSettings(data_dir=tmp_path, port=19092, controller_port=19093))
    props = broker.server_properties()
    assert props["process.roles"] == "broker,controller"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["share.coordinator.state.topic.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"


def test_extra_properties_override_defaults(tmp_path: Path) -> None:
    broker = Broker(BrokerSettings(data_dir=tmp_path, properties={"num.partitions": "4"}))
    assert broker.server_properties()["num.partitions"] == "4"


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port 127.0.0.1:{port} is already in use"):
            check_port_free("127.0.0.1", port)


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError, match="java was not found"):
        find_java()


def test_missing_maven_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    dist = KafkaDistribution(cache_dir=tmp_path)
    with pytest.raises(ToolMissingError, match="mvn was not found"):
        dist.ensure()


def test_failed_download_says_how_to_retry(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text(
        "<project><modelVersion>4.0.0</modelVersion><groupId>x</groupId><artifactId>y</artifactId>"
        "<version>1</version><packaging>pom</packaging><properties>"
        "<kafka.version>0.0.0-does-not-exist</kafka.version></properties><dependencies>"
        "<dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>"
        "<version>${kafka.version}</version></dependency></dependencies></project>"
    )
    dist = KafkaDistribution(pom=pom, cache_dir=tmp_path / "cache")
    with pytest.raises(BrokerFetchError, match="retry with: mvn") as info:
        dist.ensure()
    assert info.value.retriable
    assert not dist.is_fetched()


def test_new_cluster_ids_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """An id starting with "-" is read as an option by the storage tool (a setup error once
    in 64 cluster tests): the generator draws again, as Kafka's own Uuid.randomUuid does."""
    import uuid

    from i24net.kafka import cluster

    draws = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(cluster.uuid, "uuid4", lambda: next(draws))
    cid = cluster.new_cluster_id()
    assert cid == "AAAAAAAAAAAAAAAAAAAAAA"
