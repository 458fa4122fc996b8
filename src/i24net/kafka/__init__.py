"""Kafka transport: the local broker manager, connection settings, topic creation."""

from i24net.kafka.admin import KafkaConnection, TopicSpec, ensure_topics
from i24net.kafka.broker import Broker, BrokerSettings, probe_metadata
from i24net.kafka.dist import KafkaDistribution

__all__ = [
    "Broker",
    "BrokerSettings",
    "KafkaConnection",
    "KafkaDistribution",
    "TopicSpec",
    "ensure_topics",
    "probe_metadata",
]
