"""Stopping a router is bounded in time, also in the middle of a rebalance.

Regression: ``RouterApp.stop()`` held the processing lock while the consumer
stopped; the consumer waits for its coordinator, whose rebalance callback
(``on_partitions_revoked``) waits for that same lock: a deadlock, so a
SIGTERM never finished.

The race itself is driven by the in-process test, which controls every step:
it holds the processing lock (a batch in flight), starts ``stop()``, makes a
second instance join, and proceeds only once ``RouterApp.revocations_waiting``
shows the revocation callback queued behind the lock. The SIGTERM test runs the
real CLI in two processes, where the test cannot reach inside: it proves the
signal path (exit status 0 within ``BOUND_S``) once the group has settled with
both members, not the race.

Settings that differ from the shipped defaults (``i24net.router.testing.settings_toml``):
``session_timeout_ms = 6000`` (default 10000: a member that left is noticed sooner),
``transaction_timeout_ms = 10000`` (default 60000), ``audit_verify_interval_ms = 0``
(default 300000: no audit walk competing with the rebalance).
"""

from __future__ import annotations

import asyncio
import logging
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
from i24net.router.app import STOP_TIMEOUT_S, RouterApp
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
    kafka_conn: KafkaConnection,
    tmp_path: Path,
    unique_name: Callable[[str], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="i24net.router.app")
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
        # stop() clears ``ready`` just before it waits for the lock (the batch in flight)
        await _until(lambda: not a.ready.is_set(), 10, "stop() waiting for the batch")
        assert not stopping.done() and a.revocations_waiting == 0
        # ... and b joins the group: a's coordinator revokes a's partitions, and its
        # callback waits for the lock too (queued after stop()).
        await b.start()
        run_b = asyncio.create_task(b.run(stop_b))
        await _until(lambda: a.revocations_waiting > 0, 60, "a's revocation callback")
        assert not stopping.done()  # still waiting for the batch: the race is set up
        a.lock.release()  # the batch commits; stop() goes on with the consumer
        held = False
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(stopping), BOUND_S)
        except TimeoutError:
            pytest.fail(f"stop() did not return within {BOUND_S} s (deadlock with the rebalance)")
        # ... and not merely thanks to the per-client time bound: the consumer left cleanly
        abandoned = [r.getMessage() for r in caplog.records if "did not stop within" in r.msg]
        assert not abandoned, abandoned
        assert time.monotonic() - t0 < STOP_TIMEOUT_S, "a client was waited for until its bound"
        # b goes on routing, with every partition once a has left
        await _until(lambda: len(b._consumer.assignment()) == partitions, 60, "b alone")
    finally:
        if held:
            a.lock.release()
        stop_b.set()
        if run_b is not None:
            await asyncio.wait_for(run_b, 10)  # a crash of b fails the test
        await asyncio.wait_for(b.stop(), BOUND_S)
        await asyncio.wait_for(stopping or a.stop(), BOUND_S)


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

    def log_of(name: str) -> str:
        assert procs[name].poll() is None, logs[name].read_text(errors="replace")[-2000:]
        return logs[name].read_text(errors="replace")

    try:
        start("a")
        await _until(lambda: "routing" in log_of("a"), 90, "router a")
        await _until(lambda: "assigned" in log_of("a"), 60, "a's first assignment")
        start("b")
        # b's join revokes and reassigns a's partitions: a logs its second assignment
        # ("assigned N partitions", the rebalance listener) and b its first
        await _until(lambda: log_of("a").count("assigned") >= 2, 90, "a's reassignment")
        await _until(lambda: "assigned" in log_of("b"), 90, "b's assignment")
        for name in ("a", "b"):  # a leaves (b's partitions are revoked and reassigned), then b
            procs[name].send_signal(signal.SIGTERM)
            try:
                rc = await asyncio.to_thread(procs[name].wait, BOUND_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"router {name} still running {BOUND_S} s after SIGTERM")
            assert rc == 0, logs[name].read_text(errors="replace")[-2000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
