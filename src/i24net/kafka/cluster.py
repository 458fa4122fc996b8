"""A 3-node KRaft cluster on loopback, for tests, benchmarks and failure drills.

Each node runs broker and controller in one JVM (``process.roles=broker,controller``)
with its own ``node.id``, ports and log directory; all share one static quorum
(``controller.quorum.voters``) and one cluster id, given to ``format`` on every
node **without** ``--standalone``. Topics default to replication factor 3 and
``min.insync.replicas=2``, so the cluster keeps accepting ``acks=all`` writes
with one node down::

    with Cluster(ClusterSettings(data_dir=tmp)) as cluster:   # starts all three
        cluster.bootstrap            # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.kill(2)              # kill -9 node 2
        cluster.restart(2)           # same ports, same storage

``secured=True`` gives every node the listeners of ``i24net.kafka.security``
(SASL_SSL/SCRAM for clients, mutual TLS between brokers and controllers,
``StandardAuthorizer``); ``admin_connection()`` is then the super user that
``i24net.provision.provision`` needs. Nodes are started attached: they die with
the process (and the thread) that launched them. ``docs/security.md`` describes
the same layout on three machines.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from i24net.errors import ConfigError
from i24net.kafka.admin import KafkaConnection
from i24net.kafka.broker import Broker, BrokerSettings, free_port
from i24net.kafka.dist import KafkaDistribution
from i24net.kafka.security import (
    ADMIN_USER,
    Credential,
    SecuredListeners,
    generate_password,
    password_file,
    read_password_file,
    secured_properties,
    write_dev_pki,
    write_password_file,
)

log = logging.getLogger(__name__)

#: Replication settings of a 3-node cluster (internal topics included).
CLUSTER_DEFAULTS: Mapping[str, str] = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
    "unclean.leader.election.enable": "false",
}


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with "-" (as Kafka's own ``Uuid.randomUuid``: the storage tool would read such an id
    as an option and fail, once in 64 runs)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class ClusterSettings:
    data_dir: Path
    nodes: int = 3
    host: str = "127.0.0.1"
    heap: str = "512m"
    secured: bool = False
    start_timeout_s: float = 150.0
    #: Extra server.properties for every node (e.g. a shorter broker.session.timeout.ms).
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Node:
    node_id: int
    port: int
    controller_port: int
    internal_port: int
    broker: Broker | None = None


class Cluster:
    """A static-quorum KRaft cluster of ``settings.nodes`` combined nodes."""

    def __init__(self, settings: ClusterSettings, dist: KafkaDistribution | None = None) -> None:
        if settings.nodes < 1:
            raise ConfigError("a cluster needs at least one node")
        self.settings = settings
        self.dist = dist or KafkaDistribution()
        self.data_dir = settings.data_dir.resolve()
        self.cluster_id = new_cluster_id()
        host = settings.host
        self._nodes = {
            i: _Node(i, free_port(host), free_port(host), free_port(host))
            for i in range(1, settings.nodes + 1)
        }
        self._admin_password: str | None = None
        self.ca_file: Path | None = None

    # -- addresses -----------------------------------------------------------
    @property
    def node_ids(self) -> list[int]:
        return sorted(self._nodes)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.settings.host}:{n.port}" for n in self._nodes.values())

    @property
    def voters(self) -> str:
        h = self.settings.host
        return ",".join(f"{n.node_id}@{h}:{n.controller_port}" for n in self._nodes.values())

    def broker(self, node_id: int) -> Broker:
        node = self._nodes[node_id]
        if node.broker is None:
            raise ConfigError(f"node {node_id} was never started")
        return node.broker

    def admin_connection(self) -> KafkaConnection:
        """PLAINTEXT, or SASL_SSL as the ``admin`` super user when secured."""
        if not self.settings.secured:
            return KafkaConnection(self.bootstrap, client_id="i24net-cluster")
        assert self._admin_password is not None and self.ca_file is not None
        return Credential(ADMIN_USER, self._admin_password).connection(
            self.bootstrap, self.ca_file, client_id="i24net-cluster"
        )

    @property
    def credentials_dir(self) -> Path:
        return self.data_dir / "credentials"

    # -- configuration -------------------------------------------------------
    def _settings(self, node: _Node) -> BrokerSettings:
        s = self.settings
        controllers = ",".join(f"{s.host}:{n.controller_port}" for n in self._nodes.values())
        props: dict[str, str] = dict(CLUSTER_DEFAULTS)
        replication = min(3, s.nodes)
        if replication < 3:
            for key in ("default.replication.factor", "offsets.topic.replication.factor"):
                props[key] = str(replication)
            props["transaction.state.log.replication.factor"] = str(replication)
            props["share.coordinator.state.topic.replication.factor"] = str(replication)
            for key in (
                "min.insync.replicas",
                "transaction.state.log.min.isr",
                "share.coordinator.state.topic.min.isr",
            ):
                props[key] = "1"
        props["controller.quorum.voters"] = self.voters
        props["controller.quorum.bootstrap.servers"] = controllers
        probe: KafkaConnection | None = None
        scram: dict[str, str] = {}
        if s.secured:
            pki = write_dev_pki(self.data_dir / "pki", [f"broker-{i}" for i in self._nodes])
            self.ca_file = pki.ca_file
            listeners = SecuredListeners(node.port, node.internal_port, node.controller_port)
            props.update(
                secured_properties(
                    pki.brokers[f"broker-{node.node_id}"],
                    listeners,
                    host=s.host,
                    super_users=[ADMIN_USER, *(f"broker-{i}" for i in self._nodes)],
                )
            )
            assert self._admin_password is not None
            scram = {ADMIN_USER: self._admin_password}
            probe = Credential(ADMIN_USER, self._admin_password).connection(
                f"{s.host}:{node.port}", pki.ca_file, client_id="i24net-probe"
            )
        props.update(s.properties)
        return BrokerSettings(
            data_dir=self.data_dir / f"node{node.node_id}",
            host=s.host,
            port=node.port,
            controller_port=node.controller_port,
            node_id=node.node_id,
            heap=s.heap,
            start_timeout_s=s.start_timeout_s,
            properties=props,
            scram_users=scram,
            cluster_id=self.cluster_id,
            standalone=False,
            probe_connection=probe,
        )

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> None:
        """Format (first time) and start every node; return when all answer metadata."""
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.secured:
            path = password_file(self.credentials_dir, ADMIN_USER)
            if not path.exists():
                write_password_file(path, generate_password())
            self._admin_password = read_password_file(path)
        launched: list[Broker] = []
        for node in self._nodes.values():
            if node.broker is None:
                node.broker = Broker(self._settings(node), self.dist)
        self._format_all()
        try:
            for node in self._nodes.values():
                assert node.broker is not None
                node.broker.start(wait=False)  # no node is ready before a quorum
                launched.append(node.broker)
            for broker in launched:
                broker.wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info(
            "%d-node Kafka cluster ready at %s in %.1fs",
            len(self._nodes),
            self.bootstrap,
            time.monotonic() - t0,
        )

    def _format_all(self) -> None:
        """Format the nodes that need it in parallel (a JVM each: seconds apiece)."""
        self.dist.ensure()
        todo = [n.broker for n in self._nodes.values() if n.broker and not n.broker.is_formatted()]
        if not todo:
            return

        def fmt(broker: Broker) -> None:
            broker.data_dir.mkdir(parents=True, exist_ok=True)
            broker._write_properties()
            broker.format_storage()

        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for future in [pool.submit(fmt, b) for b in todo]:
                future.result()

    def stop(self) -> None:
        """Stop every node (controlled shutdown), all at once. Idempotent.

        Stopping them one by one would leave the last ones without a controller
        quorum to acknowledge their shutdown, waiting for the SIGKILL timeout.
        """
        brokers = [n.broker for n in self._nodes.values() if n.broker is not None]
        if not brokers:
            return
        with ThreadPoolExecutor(max_workers=len(brokers)) as pool:
            for future in [pool.submit(b.stop) for b in brokers]:
                future.result()

    def kill(self, node_id: int) -> None:
        """``kill -9`` one node."""
        self.broker(node_id).kill()

    def stop_node(self, node_id: int) -> None:
        self.broker(node_id).stop()

    def restart(self, node_id: int, *, wait: bool = True) -> None:
        """Start a stopped or killed node again (same ports, same storage).

        ``wait=False`` returns once the JVM is launched; ``broker(node_id).wait_ready()``
        (safe in a worker thread) waits for it. Launch from a long-lived thread.
        """
        self.broker(node_id).start(format_if_needed=False, wait=wait)

    def is_running(self, node_id: int) -> bool:
        node = self._nodes[node_id]
        return node.broker is not None and node.broker.is_running()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


__all__ = ["CLUSTER_DEFAULTS", "Cluster", "ClusterSettings", "new_cluster_id"]
