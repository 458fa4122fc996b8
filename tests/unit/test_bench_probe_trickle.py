"""The broker probe's reading of Kafka's request log and of a process's threads
(bench/probe_trickle.py), from made-up lines and a fake /proc: no broker here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench/ package

from bench.probe_trickle import parse_requests, thread_cpu, thread_delta


def _line(api: int, client: str, **body: object) -> str:
    d = {"requestHeader": {"requestApiKey": api, "clientId": client}, **body}
    return "Completed request:" + json.dumps(d)


def _fetch(client: str, topic: str, size: int, remote_ms: float) -> str:
    return _line(
        1,
        client,
        request={"topics": [{"topic": topic, "partitions": [{"partition": 0}, {"partition": 1}]}]},
        response={"responses": [{"topic": topic, "partitions": [{"recordsSizeInBytes": size}]}]},
        remoteTimeMs=remote_ms,
    )


def test_requests_are_counted_by_client_and_api() -> None:
    got = parse_requests(
        [
            _line(26, "i24net-router-p"),
            _line(26, "i24net-router-p"),
            _line(8, "i24net-gw-JP"),
            _line(24, "AddPartitionsManager-client-1"),
            "not a request line",
        ]
    )
    assert got["requests"] == {
        "router/EndTxn": 2,
        "gw-JP/OffsetCommit": 1,
        "AddPartitionsManager-client-1/AddPartitionsToTxn": 1,
    }


def test_fetches_are_sorted_by_topic_and_outcome() -> None:
    got = parse_requests(
        [
            _fetch("i24net-router-p", "bench-1.i24.router.seen", 120, 3.0),
            _fetch("i24net-router-p", "bench-1.i24.out", 0, 500.2),
            _fetch("i24net-router-p", "bench-1.i24.out", 0, 2.0),
            _fetch("i24net-gw-JP", "bench-1.i24.in.JP", 900, 40.0),
        ]
    )
    assert got["fetches"] == {
        "router:seen/data": 1,
        "router:out/waited-empty": 1,
        "router:out/early-empty": 1,
        "gw-JP:in/data": 1,
    }
    assert got["fetch_partitions"] == {"router:seen": 2, "router:out": 4, "gw-JP:in": 2}


def _task(root: Path, tid: int, name: str, utime: int, stime: int) -> None:
    d = root / "7" / "task" / str(tid)
    d.mkdir(parents=True)
    fields = ["S"] + ["0"] * 10 + [str(utime), str(stime)] + ["0"] * 30
    (d / "stat").write_text(f"{tid} ({name}) " + " ".join(fields) + "\n")


def test_thread_cpu_folds_numbered_threads(tmp_path: Path) -> None:
    _task(tmp_path, 11, "C2 CompilerThre", 300, 0)
    _task(tmp_path, 12, "C1 CompilerThre", 100, 0)
    _task(tmp_path, 13, "data-plane-kafk", 50, 50)
    before = {"CN CompilerThre": 1.0}
    after = thread_cpu(7, proc=tmp_path)
    assert after == pytest.approx({"CN CompilerThre": 4.0, "data-plane-kafk": 1.0})
    # per unit (here 10 messages), largest first, in milliseconds
    assert thread_delta(before, after, 10) == {"CN CompilerThre": 300.0, "data-plane-kafk": 100.0}
