"""Run a real Apache Kafka 4.x broker (KRaft, combined broker+controller) locally.

Used by the demo, the integration tests and the benchmarks::

    broker = Broker(BrokerSettings(data_dir=Path("var/kafka")))
    broker.start()            # fetches jars if needed, formats storage, waits for metadata
    print(broker.bootstrap)   # "127.0.0.1:PORT"
    broker.stop()             # controlled shutdown; SIGKILL after the grace period

A broker started *attached* dies with the process that started it (Linux
``PR_SET_PDEATHSIG``), so an interrupted or killed test run leaves no JVM behind.
A *detached* broker (``i24net dev broker start``) outlives the command and is
found again through ``<data_dir>/broker.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i24net.errors import (
    BrokerStartError,
    PortInUseError,
    StorageNotFormattedError,
)
from i24net.kafka.admin import KafkaConnection
from i24net.kafka.dist import LOG4J_CONFIG, KafkaDistribution, find_java

log = logging.getLogger(__name__)

STATE_FILE = "broker.json"
LOG_FILE = "broker.log"

#: Settings for a single loopback node. Internal topics get replication factor 1
#: (transactions stall otherwise) and few partitions (a faster first group join).
SINGLE_NODE_DEFAULTS: Mapping[str, str] = {
    "process.roles": "broker,controller",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "6",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "6",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
    "log.retention.hours": "168",
}

#: JVM options of a local broker. ``TieredStopAtLevel=1``: compile with C1 only. A
#: local broker (tests, demo, bench) lives for minutes, and with the default tiered
#: compiler its C2 threads were most of its CPU for those minutes: at 30 msgs/s, 8-12
#: of the broker's 18-22 ms per message in the first minute, still 1.4-3 ms after two
#: (bench/probe_trickle.py, bench/analysis.md "The broker at a trickle"). C1 code
#: serves requests ~20 % slower than warmed C2 code, which a long-lived production
#: broker would reach; it is never paid back in a local broker's life.
LOCAL_JVM_OPTIONS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)


@dataclass(frozen=True)
class BrokerSettings:
    """How to run one local broker. Ports of 0 are picked free at first start."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    controller_port: int = 0
    node_id: int = 1
    heap: str = "512m"
    start_timeout_s: float = 90.0
    stop_timeout_s: float = 30.0
    #: Extra or overriding server.properties entries (listeners for TLS, ...).
    properties: Mapping[str, str] = field(default_factory=dict)
    #: SCRAM-SHA-512 users created when storage is formatted (name -> password):
    #: the bootstrap admin of a secured broker must exist before the first start.
    scram_users: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Format with this cluster id (every node of a cluster shares one); None: a new one.
    cluster_id: str | None = None
    #: Format with ``--standalone`` (a single-voter dynamic quorum). False for a
    #: static quorum, where ``controller.quorum.voters`` is in ``properties``.
    standalone: bool = True
    #: How the readiness probe connects (TLS/SASL for a secured broker); None: PLAINTEXT.
    probe_connection: KafkaConnection | None = None
    #: Extra JVM options of the broker and its storage tool (``LOCAL_JVM_OPTIONS``).
    jvm_options: tuple[str, ...] = LOCAL_JVM_OPTIONS


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUseError(
                f"port {host}:{port} is already in use; stop what holds it "
                f"(`ss -ltnp 'sport = :{port}'`) or choose another port"
            ) from exc


def _die_with_parent() -> None:  # pragma: no cover - runs in the child after fork
    """Ask Linux to SIGTERM this child when its parent dies (PR_SET_PDEATHSIG = 1)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def probe_metadata(
    bootstrap: str, timeout_s: float = 5.0, conn: KafkaConnection | None = None
) -> list[int]:
    """Ask the broker for cluster metadata; return the live broker node ids.

    ``conn`` gives TLS/SASL settings (its bootstrap is replaced by ``bootstrap``).
    """
    from aiokafka import AIOKafkaClient

    kwargs: dict[str, Any] = conn.client_kwargs() if conn is not None else {}
    kwargs["bootstrap_servers"] = bootstrap
    client = AIOKafkaClient(**kwargs, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout_s)
        return sorted(b.nodeId for b in metadata.brokers())
    finally:
        await client.close()


class Broker:
    """One local Kafka broker process."""

    def __init__(self, settings: BrokerSettings, dist: KafkaDistribution | None = None) -> None:
        self.settings = settings
        self.dist = dist or KafkaDistribution()
        self.data_dir = settings.data_dir.resolve()
        self.port = settings.port
        self.controller_port = settings.controller_port
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self.started_in_s: float | None = None
        self._t0 = time.monotonic()

    # -- paths -----------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "kraft"

    @property
    def bootstrap(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._pid

    # -- configuration ---------------------------------------------------
    def server_properties(self) -> dict[str, str]:
        host = self.settings.host
        props = dict(SINGLE_NODE_DEFAULTS)
        props.update(
            {
                "node.id": str(self.settings.node_id),
                "controller.quorum.bootstrap.servers": f"{host}:{self.controller_port}",
                "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
                "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
                "log.dirs": str(self.storage_dir),
            }
        )
        props.update(self.settings.properties)
        return props

    def _write_properties(self) -> None:
        lines = [f"{k}={v}" for k, v in sorted(self.server_properties().items())]
        self.properties_path.write_text(
            "# written by i24net.kafka.broker\n" + "\n".join(lines) + "\n"
        )

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            find_java(),
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            *self.settings.jvm_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self.dist.classpath,
            main,
            *args,
        ]

    def is_formatted(self) -> bool:
        return (self.storage_dir / "meta.properties").exists()

    def format_storage(self) -> str:
        """Format the KRaft log directory (``settings.cluster_id`` or a new id); return the id."""
        cluster_id = (
            self.settings.cluster_id
            or (
                subprocess.run(
                    self._java("kafka.tools.StorageTool", "random-uuid"),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
        )
        extra: list[str] = ["--standalone"] if self.settings.standalone else []
        for name, password in self.settings.scram_users.items():
            extra += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        proc = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",  # one argument even if an id starts with "-"
                f"--config={self.properties_path}",
                *extra,
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise BrokerStartError(
                f"formatting {self.storage_dir} failed:\n{(proc.stdout + proc.stderr)[-2000:]}"
            )
        return cluster_id

    # -- lifecycle -------------------------------------------------------
    def start(
        self, *, attached: bool = True, format_if_needed: bool = True, wait: bool = True
    ) -> None:
        """Start the broker and wait until it answers a metadata request.

        ``wait=False`` returns once the JVM is launched (the nodes of a cluster
        start together, as no node is ready before a quorum); call ``wait_ready()``.
        Launch from a long-lived thread: an attached JVM gets SIGTERM when the
        launching *thread* exits (``PR_SET_PDEATHSIG``).
        """
        if self.is_running():
            return
        t0 = time.monotonic()
        self.dist.ensure()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        host = self.settings.host
        if not self.port:
            self.port = free_port(host)
        if not self.controller_port:
            self.controller_port = free_port(host)
        check_port_free(host, self.port)
        check_port_free(host, self.controller_port)
        self._write_properties()
        if not self.is_formatted():
            if not format_if_needed:
                raise StorageNotFormattedError(
                    f"{self.storage_dir} is not formatted (no meta.properties); "
                    "run `i24net dev broker start` once, which formats it"
                )
            self.format_storage()
        heap = self.settings.heap
        cmd = self._java("kafka.Kafka", str(self.properties_path), heap=heap)
        cmd.insert(1, f"-Xms{heap}")
        logf = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if attached else None,
                start_new_session=not attached,
            )
        finally:
            logf.close()
        self._pid = self._proc.pid
        self.state_path.write_text(
            json.dumps(
                {
                    "pid": self._pid,
                    "bootstrap": self.bootstrap,
                    "controller": f"{host}:{self.controller_port}",
                    "log": str(self.log_path),
                    "attached": attached,
                }
            )
        )
        self._t0 = t0
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until the launched broker answers a metadata request (stop it if not)."""
        t0 = self._t0
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.monotonic() - t0
        log.info(
            "Kafka %s broker ready at %s in %.1fs (pid %d, log %s)",
            self.dist.version,
            self.bootstrap,
            self.started_in_s,
            self._pid,
            self.log_path,
        )

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.settings.start_timeout_s
        last: BaseException | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerStartError(
                    f"the broker exited with code {self._proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if not _port_open(self.settings.host, self.port):
                time.sleep(0.3)
                continue
            try:
                nodes = run_sync(
                    probe_metadata(
                        self.bootstrap, timeout_s=3.0, conn=self.settings.probe_connection
                    )
                )
                if self.settings.node_id in nodes:
                    return
            except Exception as exc:
                last = exc
            time.sleep(0.3)
        raise BrokerStartError(
            f"the broker did not answer a metadata request within "
            f"{self.settings.start_timeout_s:.0f}s ({last!r}); "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self._pid is not None and _pid_is_kafka(self._pid)

    def stop(self, timeout_s: float | None = None) -> None:
        """Controlled shutdown (SIGTERM), then SIGKILL after the grace period. Idempotent."""
        self._signal_and_wait(
            signal.SIGTERM, self.settings.stop_timeout_s if timeout_s is None else timeout_s
        )

    def kill(self) -> None:
        """``kill -9`` the broker, as a crash test would."""
        self._signal_and_wait(signal.SIGKILL, 10.0)

    def _signal_and_wait(self, sig: signal.Signals, timeout_s: float) -> None:
        pid = self._pid
        if pid is None or not self.is_running():
            self._reap()
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.is_running():
            time.sleep(0.1)
        if self.is_running():
            log.warning("broker pid %d ignored %s for %.0fs; killing it", pid, sig.name, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self.is_running():
                time.sleep(0.1)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        self._pid = None

    @classmethod
    def from_state(cls, data_dir: Path, dist: KafkaDistribution | None = None) -> Broker | None:
        """The detached broker recorded in ``data_dir/broker.json``, if any."""
        path = data_dir / STATE_FILE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        host, port = state["bootstrap"].rsplit(":", 1)
        _, cport = state["controller"].rsplit(":", 1)
        broker = cls(
            BrokerSettings(
                data_dir=data_dir, host=host, port=int(port), controller_port=int(cport)
            ),
            dist,
        )
        broker._pid = int(state["pid"])
        return broker


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pid_is_kafka(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline
