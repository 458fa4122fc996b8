"""Probe: what the broker does per message at a trickle, phase by phase, and why.

The pipeline of ``bench/pipeline.py`` (FR and JP gateways, one router, as
processes) on a broker started here, then phases in a fixed order::

    warm-up (40 messages) | idle | trickle | idle | trickle | [burst]

Each phase gives the CPU of every process (``/proc/<pid>/stat``) per message (and
per second for the idle ones), so the second trickle, minutes after the broker's
start, shows whether the first one paid for the JIT (time since start) or for the
load. With ``--requests`` the broker's ``kafka.request.logger`` is on (DEBUG: one
line per completed request, with its body) in a file of its own: each phase then
also gets the requests per message **by client and API**, and for fetches, how many
returned at once with nothing (woken by a marker or an empty long poll: ``remote``
time under 50 ms and no records) against those that waited out their
``max_wait_ms``. The request log costs the broker CPU itself: take CPU figures from
a run without it.

``--jfr`` records the broker with JFR (``settings=profile``) during the last
trickle and prints the top frames of its execution samples (Java threads only: the
JIT compiler and GC threads are in the per-thread CPU figures, not in JFR's samples).

    .venv/bin/python -m bench.probe_trickle                    # CPU per phase
    .venv/bin/python -m bench.probe_trickle --requests         # + requests by API
    .venv/bin/python -m bench.probe_trickle --jfr --jfr-out /tmp/trickle.jfr
    .venv/bin/python -m bench.probe_trickle --jit tiered --phases trickle trickle burst trickle
    .venv/bin/python -m bench.probe_trickle --router batch_linger_ms=40 --phases trickle trickle

Each trickle also gives its latency (p50/p99 from the scheduled send to storage at
JP) and the router's transactions per message (``Transactions``); ``--router k=v``
sets a ``[router]`` setting of the router it starts (``batch_linger_ms=40``).

Figures: bench/analysis.md, "The broker at a trickle".
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import pipeline as pl
from bench.procstat import PROC, CpuMeter, parse_stat_cpu
from bench.report import loadavg
from i24net.kafka import Broker, BrokerSettings, KafkaConnection
from i24net.kafka.dist import LOG4J_CONFIG

REQUEST_LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
    <File name="REQ" fileName="{path}" immediateFlush="false" bufferSize="262144">
      <PatternLayout pattern="%m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="kafka.server.KafkaConfig" level="WARN"/>
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="DEBUG" additivity="false">
      <AppenderRef ref="REQ"/>
    </Logger>
    <Root level="WARN"><AppenderRef ref="STDERR"/></Root>
  </Loggers>
</Configuration>
"""


class ProbeBroker(Broker):
    """A broker whose JVM gets another log4j2 configuration (the request log) and the
    JIT this probe compares (``--jit``: C1 only, as ``LOCAL_JVM_OPTIONS`` now; or the
    JVM's default tiered C1 + C2), whatever the code under test's default."""

    log4j: Path | None = None
    jvm_flags: tuple[str, ...] = ()

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        cmd = super()._java(main, *args, heap=heap)
        if self.log4j is not None:
            cmd = [
                f"-Dlog4j2.configurationFile={self.log4j}" if c.startswith("-Dlog4j2.") else c
                for c in cmd
            ]
        cmd = [c for c in cmd if not c.startswith("-XX:TieredStopAtLevel")]
        return [cmd[0], *self.jvm_flags, *cmd[1:]]


@contextlib.contextmanager
def broker(
    tmp: Path,
    heap: str,
    request_log: Path | None,
    jvm: tuple[str, ...] = (),
    props: dict[str, str] | None = None,
) -> Iterator[ProbeBroker]:
    b = ProbeBroker(BrokerSettings(data_dir=tmp / "kafka", heap=heap, properties=props or {}))
    b.jvm_flags = jvm
    if request_log is not None:
        cfg = tmp / "log4j2-requests.xml"
        cfg.write_text(REQUEST_LOG4J.format(path=request_log))
        b.log4j = cfg
    else:
        b.log4j = LOG4J_CONFIG
    b.start()
    try:
        yield b
    finally:
        b.stop()


# --- the request log ---------------------------------------------------------------

_FETCH_WAIT_MS = 50.0  # a fetch answered sooner than this did not wait out its long poll


def _client(cid: str) -> str:
    """``i24net-router-p`` -> ``router``; ``i24net-gw-FR`` -> ``gw-FR``; others as given."""
    if cid.startswith("i24net-router"):
        return "router"
    return cid.removeprefix("i24net-") or "?"


def _fetch_records(resp: Any) -> int:
    """Bytes of record data in a FetchResponse (0: nothing for the client; control
    batches of a read_committed fetch are data here, the client filters them)."""
    return sum(
        int(p.get("recordsSizeInBytes", 0))
        for t in resp.get("responses", ())
        for p in t.get("partitions", ())
    )


def _topic_kind(topic: str) -> str:
    """``bench-x.i24.in.JP`` -> ``in``; ``...i24.router.seen`` -> ``seen``; ``out``, ..."""
    rest = topic.split("i24.", 1)[-1]
    return {"router.seen": "seen", "directory": "directory", "out": "out"}.get(
        rest, rest.split(".", 1)[0]
    )


def parse_requests(lines: list[str]) -> dict[str, Any]:
    """Requests by ``client/api`` and the fetches' outcomes from request-log lines."""
    by: collections.Counter[str] = collections.Counter()
    fetch: collections.Counter[str] = collections.Counter()
    parts: collections.Counter[str] = collections.Counter()
    for line in lines:
        i = line.find("{")
        if i < 0:
            continue
        try:
            d = json.loads(line[i:])
        except ValueError:
            continue
        hdr = d.get("requestHeader", {})
        api = _API.get(hdr.get("requestApiKey"), str(hdr.get("requestApiKey")))
        who = _client(str(hdr.get("clientId", "?")))
        if who.startswith("controller") or who.startswith("broker") or "raft" in who:
            who = "internal"
        by[f"{who}/{api}"] += 1
        if api == "Fetch" and who != "internal":
            req = d.get("request", {})
            tops = req.get("topics", ())
            n = sum(len(t.get("partitions", ())) for t in tops)
            who += ":" + "+".join(sorted({_topic_kind(str(t.get("topic"))) for t in tops}))
            parts[f"{who}"] += n
            data = _fetch_records(d.get("response", {}))
            waited = float(d.get("remoteTimeMs", 0.0)) >= _FETCH_WAIT_MS
            kind = "data" if data else ("waited-empty" if waited else "early-empty")
            fetch[f"{who}/{kind}"] += 1
    return {"requests": dict(by), "fetches": dict(fetch), "fetch_partitions": dict(parts)}


_API = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    18: "ApiVersions",
    19: "CreateTopics",
    22: "InitProducerId",
    24: "AddPartitionsToTxn",
    25: "AddOffsetsToTxn",
    26: "EndTxn",
    27: "WriteTxnMarkers",
    28: "TxnOffsetCommit",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    36: "SaslHandshake",
    37: "CreatePartitions",
    55: "DescribeQuorum",
    60: "DescribeCluster",
    62: "BrokerRegistration",
    63: "BrokerHeartbeat",
    67: "AllocateProducerIds",
    68: "ConsumerGroupHeartbeat",
}


class RequestLog:
    """Reads what the broker appended to the request log since the last mark."""

    def __init__(self, path: Path | None, keep: Path | None = None) -> None:
        self.path, self.keep = path, keep
        self.pos = 0

    def mark(self) -> None:
        if self.path is not None and self.path.exists():
            self.pos = self.path.stat().st_size

    def since(self) -> dict[str, Any]:
        if self.path is None or not self.path.exists():
            return {}
        time.sleep(1.5)  # the appender's buffer: log4j flushes on a full buffer or idle
        with self.path.open("r", errors="replace") as f:
            f.seek(self.pos)
            text = f.read()
        self.pos += len(text.encode(errors="replace"))
        if self.keep is not None:
            with self.keep.open("a") as f:
                f.write(text)
        return parse_requests(text.splitlines())


# --- transactions ------------------------------------------------------------------


class Transactions:
    """Router transactions, counted on ``i24.router.seen``: each routing transaction
    writes its message ids there and ends with one commit marker, which takes an
    offset but is no record, so transactions = offsets taken - records read."""

    def __init__(self, conn: KafkaConnection, topic: str) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.tp = TopicPartition(topic, 0)
        self.consumer = AIOKafkaConsumer(
            **conn.client_kwargs(), enable_auto_commit=False, isolation_level="read_committed"
        )

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign([self.tp])
        self.consumer.pause(self.tp)  # no fetch of ours in the measured phases

    async def stop(self) -> None:
        await self.consumer.stop()

    async def end(self) -> int:
        return int((await self.consumer.end_offsets([self.tp]))[self.tp])

    async def between(self, start: int, end: int) -> int:
        """Transactions committed in ``[start, end)`` of the topic."""
        c, records = self.consumer, 0
        c.seek(self.tp, start)
        c.resume(self.tp)
        try:
            deadline = time.monotonic() + 30
            while await c.position(self.tp) < end and time.monotonic() < deadline:
                batch = await c.getmany(self.tp, timeout_ms=500)
                records += sum(1 for r in batch.get(self.tp, ()) if r.offset < end)
        finally:
            c.pause(self.tp)
        return (end - start) - records


# --- the broker's threads -----------------------------------------------------------


def thread_cpu(pid: int, proc: Path = PROC) -> dict[str, float]:
    """CPU seconds of a process's threads by name (digits folded: ``C2 CompilerThreN``),
    from ``/proc/<pid>/task/*/stat``: which of the JVM's threads (request handlers,
    network, JIT compilers, GC, the log cleaner, ...) burns the broker's CPU."""
    out: collections.Counter[str] = collections.Counter()
    for task in (proc / str(pid) / "task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (task / "stat").read_text()
            name = re.sub(r"\d+", "N", stat[stat.index("(") + 1 : stat.rindex(")")])
            out[name] += parse_stat_cpu(stat)
    return dict(out)


def sys_seconds(pid: int, proc: Path = PROC, ticks: int = 100) -> float:
    """Kernel-mode CPU seconds (stime) of a process: syscalls, wake-ups, the network."""
    stat = (proc / str(pid) / "stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[12]) / ticks


def thread_delta(a: dict[str, float], b: dict[str, float], per: float) -> dict[str, float]:
    """Milliseconds per unit (message or second) by thread name, largest first."""
    d = {k: (b.get(k, 0.0) - a.get(k, 0.0)) * 1000 / per for k in b}
    return {k: round(v, 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v >= 0.05}


# --- JFR ---------------------------------------------------------------------------


def jfr(pid: int, *args: str) -> None:
    """``jcmd <pid> JFR.start|JFR.stop name=probe ...`` (JFR.stop writes the file)."""
    subprocess.run(["jcmd", str(pid), *args, "name=probe"], check=True, capture_output=True)


def jfr_record(pid: int, out: Path) -> dict[str, Any]:
    """Stop the recording into ``out`` and read its top frames."""
    jfr(pid, "JFR.stop", f"filename={out}")
    return jfr_top(out)


def jfr_top(path: Path, top: int = 25) -> dict[str, Any]:
    """Top frames (self) and top 'interesting' frames (first frame in kafka/apache
    code) of the execution samples, by share of samples."""
    text = subprocess.run(
        ["jfr", "print", "--events", "jdk.ExecutionSample", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    selfs: collections.Counter[str] = collections.Counter()
    kafka: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    n = 0
    for ev in text.split("jdk.ExecutionSample")[1:]:
        frames = re.findall(r"^\s+([\w$.<>/]+\(.*?\))\s+line:", ev, re.M)
        th = re.search(r'sampledThread = "([^"]*)"', ev)
        if not frames:
            continue
        n += 1
        selfs[frames[0]] += 1
        name = re.sub(r"\d+", "N", th.group(1)) if th else "?"
        threads[name] += 1
        for fr in frames:
            if fr.startswith(("kafka.", "org.apache.kafka")):
                kafka[fr] += 1
                break
    pct = lambda c: {k: round(v / max(1, n) * 100, 1) for k, v in c.most_common(top)}  # noqa: E731
    return {"samples": n, "threads": pct(threads), "self": pct(selfs), "kafka_frame": pct(kafka)}


# --- phases ------------------------------------------------------------------------


async def measure(
    conn: KafkaConnection, b: ProbeBroker, args: argparse.Namespace, reqlog: RequestLog
) -> dict[str, Any]:
    out: dict[str, Any] = {"phases": []}
    say = print
    with tempfile.TemporaryDirectory(prefix="i24net-probe-trickle-") as d:
        cl = pl.Cluster(conn, Path(d), say)
        try:
            await cl.setup()
            fr, jp = cl.start_gateway(pl.SENDER), cl.start_gateway(pl.RECIPIENT)
            await cl.ready(fr)
            await cl.ready(jp)
            legacy = not await cl.gateway_writes_ingress(fr)
            router = cl.start_router("p", legacy=legacy)
            await cl.group_members(1)
            assert b.pid is not None
            pids = {"gateway_FR": fr.pid, "gateway_JP": jp.pid, "router": router.pid}
            meter = CpuMeter({**pids, "broker": b.pid, "loadgen": os.getpid()})
            txns = Transactions(conn, cl.topics.seen)
            await txns.start()
            async with pl.client(fr, max_connections=512) as cfr, pl.client(jp) as cjp:
                watch = pl.InboxWatch(cjp)
                watch.start()
                try:
                    warm, _ = await pl._burst(cfr, 40, 4, to=[pl.RECIPIENT])
                    if await watch.wait_all(warm, 60):
                        raise RuntimeError("warm-up messages not stored at JP")
                    for i, name in enumerate(args.phases):
                        reqlog.mark()
                        threads0, sys0 = thread_cpu(b.pid), sys_seconds(b.pid)
                        seen0 = await txns.end()
                        t_start = time.monotonic() - b._t0
                        if name == "idle":
                            r: dict[str, Any] = await pl.idle(meter, args.idle_s)
                            per = r["wall_s"]
                        elif name == "trickle":
                            last = i == len(args.phases) - 1 - args.phases[::-1].index("trickle")
                            if args.jfr and last:
                                await asyncio.to_thread(jfr, b.pid, "JFR.start", "settings=profile")
                            r = await pl.open_loop(cfr, watch, args.rate, args.seconds, meter)
                            per = r["stored"]
                            if args.jfr and last:
                                path = args.jfr_out or Path(d) / "trickle.jfr"
                                out["jfr_top"] = await asyncio.to_thread(jfr_record, b.pid, path)
                        elif name == "burst":
                            r = await pl.pipeline_burst(cfr, watch, meter, args.burst, 32)
                            per = r["messages"] - r["missing"]
                        else:
                            raise SystemExit(f"unknown phase {name}")
                        r = {k: v for k, v in r.items() if not isinstance(v, (list, dict))}
                        r["phase"], r["since_broker_start_s"] = name, round(t_start, 1)
                        r["broker_threads_ms"] = thread_delta(threads0, thread_cpu(b.pid), per)
                        r["broker_sys_ms"] = round((sys_seconds(b.pid) - sys0) * 1000 / per, 2)
                        n_txns = await txns.between(seen0, await txns.end())
                        r["router_transactions_per_unit"] = round(n_txns / max(per, 1e-9), 2)
                        req = reqlog.since()
                        if req:
                            r["requests_per_unit"] = {
                                k: round(v / per, 2) for k, v in sorted(req["requests"].items())
                            }
                            r["fetches_per_unit"] = {
                                k: round(v / per, 2) for k, v in sorted(req["fetches"].items())
                            }
                            r["fetch_partitions"] = req["fetch_partitions"]
                            r["unit"] = "second" if name == "idle" else "message"
                        out["phases"].append(r)
                        say(_line(r))
                finally:
                    await watch.stop()
                    await txns.stop()
        finally:
            cl.stop_all()
    return out


def _line(r: dict[str, Any]) -> str:
    if r["phase"] == "idle":
        cpu = ", ".join(
            f"{k.removeprefix('cpu_pct_')} {v:.1f}" for k, v in r.items() if k.startswith("cpu_pct")
        )
        head = f"  idle @{r['since_broker_start_s']}s: % of a core: {cpu}"
    else:
        cpu = ", ".join(
            f"{k.removeprefix('cpu_ms_per_msg_')} {v:.2f}"
            for k, v in r.items()
            if k.startswith("cpu_ms_per_msg_")
        )
        head = f"  {r['phase']} @{r['since_broker_start_s']}s: CPU ms/msg: {cpu}"
        if "p50_ms" in r:
            head += f"; latency p50 {r['p50_ms']:.0f} p99 {r['p99_ms']:.0f} ms"
    unit = "s" if r["phase"] == "idle" else "msg"
    head += f"\n    router transactions per {unit}: {r['router_transactions_per_unit']:g}"
    head += f"\n    broker threads, ms/{unit} (kernel {r['broker_sys_ms']:g}): " + ", ".join(
        f"{k} {v:g}" for k, v in list(r["broker_threads_ms"].items())[:12]
    )
    if "requests_per_unit" in r:
        head += f"\n    requests per {r['unit']}: {r['requests_per_unit']}"
        head += f"\n    fetches per {r['unit']}: {r['fetches_per_unit']}"
    return head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--burst", type=int, default=0, help="messages of a final burst (0: none)")
    ap.add_argument("--phases", nargs="*", default=["idle", "trickle", "idle", "trickle"])
    ap.add_argument("--heap", default="1g", help="broker heap (the bench's: 1g)")
    ap.add_argument("--requests", action="store_true", help="broker request log, by API")
    ap.add_argument("--jfr", action="store_true", help="JFR during the last trickle")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--jit", choices=("c1", "tiered"), default="c1", help="the broker's JIT")
    ap.add_argument("--jvm", action="append", default=[], help="a broker JVM flag (repeat)")
    ap.add_argument(
        "--router", action="append", default=[], help="a [router] setting k=v (TOML value)"
    )
    ap.add_argument("--prop", action="append", default=[], help="a broker property k=v")
    ap.add_argument("--jfr-out", type=Path, help="keep the JFR recording here")
    ap.add_argument("--keep-requests", type=Path, help="append the raw request log here")
    args = ap.parse_args()
    if args.router:
        extra = {k: json.loads(v) for k, v in (x.split("=", 1) for x in args.router)}
        base = pl.router_extra
        pl.router_extra = lambda *, legacy: {**base(legacy=legacy), **extra}  # type: ignore[assignment]
    if args.burst and "burst" not in args.phases:
        args.phases.append("burst")
    with tempfile.TemporaryDirectory(prefix="i24net-probe-broker-") as tmp:
        reqpath = Path(tmp) / "requests.log" if args.requests else None
        props = dict(p.split("=", 1) for p in args.prop)
        jvm = (*(["-XX:TieredStopAtLevel=1"] if args.jit == "c1" else []), *args.jvm)
        with broker(Path(tmp), args.heap, reqpath, jvm, props) as b:
            conn = KafkaConnection(bootstrap=b.bootstrap, client_id="probe-trickle")
            print(f"broker pid {b.pid} up in {b.started_in_s:.1f}s; load {loadavg()}")
            res = asyncio.run(measure(conn, b, args, RequestLog(reqpath, args.keep_requests)))
    res["load_end"] = loadavg()
    if "jfr_top" in res:
        print(json.dumps(res["jfr_top"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
