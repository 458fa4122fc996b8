"""Stopping a router is bounded in time, also in the middle of a rebalance.

Regression: ``RouterApp.stop()`` held the processing lock while the consumer
stopped; the consumer waits for its coordinator, whose rebalance callback
(``on_partitions_revoked``) waits for that same lock: a deadlock, so a
SIGTERM never finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from i24net.kafka import KafkaConnection
from i24net.router.app import RouterApp
from i24net.router.settings import RouterSettings, Topics, load_settings
from i24net.router.testing import build_network, provision, settings_toml

pytestmark = pytest.mark.kafka
POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
CLI = Path(sys.executable).parent / "i24net"
STATIONS = ("FR", "JP", "BR")
BOUND_S = 25.0


def now() -> int:
    return time.time_ns() // 1_000_000


async def _setup(conn: KafkaConnection, tmp: Path, prefix: str) -> Callable[[str], Path]:
    net = build_network(STATIONS, tmp / "keys", now_ms=now())
    await provision(conn, net, Topics(prefix=prefix))

    def config(instance: str) -> Path:
        cfg = tmp / f"router-{instance}.toml"
        cfg.write_text(
            settings_toml(
                instance=instance,
                bootstrap=conn.bootstrap,
                prefix=prefix,
                keys_dir=tmp / "keys",
                state_dir=tmp / f"state-{instance}",
                policy=POLICY,
                group=prefix + "router",
                extra_router={"audit_verify_interval_ms": 0},
            )
        )
        return cfg

    return config


async def _until(cond: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_stop_during_a_rebalance_started_by_another_instance_returns(
    kafka_conn: KafkaConnection, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    config = await _setup(kafka_conn, tmp_path, unique_name("t") + ".")
    sa: RouterSettings = load_settings(config("a"))
    sb: RouterSettings = load_settings(config("b"))
    a = RouterApp(sa, CollectorRegistry())
    b = RouterApp(sb, CollectorRegistry())
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    await a.start()
    run_a = asyncio.create_task(a.run(stop_a))
    run_b: asyncio.Task[None] | None = None
    stopping: asyncio.Task[None] | None = None
    held = False
    try:
        await _until(lambda: bool(a._consumer.assignment()), 60, "a's assignment")
        partitions = len(a._consumer.assignment())  # every i24.out.* partition
        stop_a.set()
        await asyncio.wait_for(run_a, 10)
        # A batch in flight holds the lock while stop() is called ...
        await a.lock.acquire()
        held = True
        stopping = asyncio.create_task(a.stop())
        await asyncio.sleep(0.2)
        # ... and b joins the group: a's coordinator revokes a's partitions, and its
        # callback waits for the lock too (queued after stop()).
        await b.start()
        run_b = asyncio.create_task(b.run(stop_b))
        await _until(lambda: a.revocations_waiting > 0, 60, "a's revocation callback")
        a.lock.release()  # the batch commits; stop() goes on with the consumer
        held = False
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.shield(stopping), BOUND_S)
        assert time.monotonic() - t0 < BOUND_S
        # b goes on routing, with every partition once a has left
        await _until(lambda: len(b._consumer.assignment()) == partitions, 60, "b alone")
    finally:
        if held:
            a.lock.release()
        stop_b.set()
        if run_b is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run_b, 10)
        t0 = time.monotonic()
        await asyncio.wait_for(b.stop(), BOUND_S)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(a.stop(), BOUND_S)


@pytest.mark.slow
async def test_sigterm_exits_0_in_bounded_time_while_another_instance_runs(
    kafka_conn: KafkaConnection, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    config = await _setup(kafka_conn, tmp_path, unique_name("t") + ".")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"router-{name}.log" for name in ("a", "b")}

    def start(name: str) -> None:
        with logs[name].open("ab") as log:
            procs[name] = subprocess.Popen(
                [str(CLI), "router", "--config", str(config(name))],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def routing(name: str) -> bool:
        assert procs[name].poll() is None, logs[name].read_text(errors="replace")[-2000:]
        return "routing" in logs[name].read_text(errors="replace")

    try:
        start("a")
        await _until(lambda: routing("a"), 90, "router a")
        start("b")
        await _until(lambda: routing("b"), 90, "router b")
        await asyncio.sleep(1.0)  # b's join: a rebalance under way
        for name in ("a", "b"):
            t0 = time.monotonic()
            procs[name].send_signal(signal.SIGTERM)
            rc = await asyncio.to_thread(procs[name].wait, BOUND_S)
            assert rc == 0, logs[name].read_text(errors="replace")[-2000:]
            assert time.monotonic() - t0 < BOUND_S
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
