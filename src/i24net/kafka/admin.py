"""Connection settings shared by every Kafka client of i24net, and topic creation.

``KafkaConnection.client_kwargs()`` gives the keyword arguments that aiokafka's
producer, consumer and admin client all accept, so TLS and SASL credentials are
configured once (gateway, router, provisioning, tests).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i24net.errors import BrokerAuthorizationError, BrokerError, ConfigError

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31


@dataclass(frozen=True)
class KafkaConnection:
    """Where a client connects and how it authenticates."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None  # e.g. SCRAM-SHA-512
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    client_id: str = "i24net"

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.security_protocol:
            return None
        if self.ca_file is None:
            raise ConfigError(f"security_protocol {self.security_protocol} needs ca_file")
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        ctx = self.ssl_context()
        if ctx is not None:
            kwargs["ssl_context"] = ctx
        if self.security_protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.username and self.password):
                raise ConfigError(
                    f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                    "username and password"
                )
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        return kwargs


#: Let the broker choose (its ``default.replication.factor``): 1 on a dev node, 3 on a cluster.
BROKER_DEFAULT = -1


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int = 1
    replication_factor: int = BROKER_DEFAULT
    config: Mapping[str, str] = field(default_factory=dict)


async def _wait_for_leaders(admin: Any, names: list[str], timeout_s: float = 15.0) -> None:
    """Wait until every partition of ``names`` has a leader (fresh topics have none)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        described = await admin.describe_topics(names)
        ready = all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.1)


async def ensure_topics(conn: KafkaConnection, topics: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Idempotent: a topic that already exists is left as it is. Existing topics are
    looked up first, so a principal without the right to create topics (a station
    or the router on a secured broker) passes when ``i24net provision`` made them.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    specs = list(topics)
    if not specs:
        return []
    admin = AIOKafkaAdminClient(**conn.client_kwargs())
    await admin.start()
    try:
        described = await admin.describe_topics([s.name for s in specs])
        existing = {t["topic"] for t in described if t["error_code"] == 0}
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    # aiokafka's check wants a non-None assignment when a factor is -1;
                    # an empty one lets the broker place the replicas.
                    replica_assignments={} if s.replication_factor == BROKER_DEFAULT else None,
                    topic_configs=dict(s.config),
                )
                for s in missing
            ]
        )
        await _wait_for_leaders(admin, [s.name for s in missing])
    finally:
        await admin.close()
    created: list[str] = []
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        message = entry[2] if len(entry) > 2 else ""
        if code == 0:
            created.append(name)
        elif code in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED):
            raise BrokerAuthorizationError(
                f"topic {name} does not exist and user {conn.username or 'ANONYMOUS'} may not "
                "create it: create it with `i24net provision`"
            )
        elif code != TOPIC_ALREADY_EXISTS:
            raise BrokerError(f"creating topic {name} failed: error code {code} {message}")
    if created:
        log.info("created topics: %s", ", ".join(created))
    return created
