"""The local broker's JVM runs C1 only by default (kafka/broker.py, LOCAL_JVM_OPTIONS):
its C2 compiler threads were most of a fresh broker's CPU at a trickle. No JVM here."""

from __future__ import annotations

from pathlib import Path

from i24net.kafka import Broker, BrokerSettings
from i24net.kafka.broker import LOCAL_JVM_OPTIONS


def test_local_broker_compiles_with_c1_only(tmp_path: Path) -> None:
    cmd = Broker(BrokerSettings(data_dir=tmp_path))._java("kafka.Kafka", "server.properties")
    assert "-XX:TieredStopAtLevel=1" in LOCAL_JVM_OPTIONS
    assert "-XX:TieredStopAtLevel=1" in cmd
    # JVM options go before the main class, or the JVM would pass them to Kafka
    assert cmd.index("-XX:TieredStopAtLevel=1") < cmd.index("kafka.Kafka")


def test_jvm_options_can_be_replaced(tmp_path: Path) -> None:
    settings = BrokerSettings(data_dir=tmp_path, jvm_options=("-XX:+UseSerialGC",))
    cmd = Broker(settings)._java("kafka.Kafka", "server.properties")
    assert "-XX:+UseSerialGC" in cmd
    assert not any(c.startswith("-XX:TieredStopAtLevel") for c in cmd)
