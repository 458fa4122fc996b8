"""Router figures: msgs/s, 195-station broadcasts/s, quiet-station p99 under a flood.

``run(conn, ...)`` builds a network (keys, signed directory, topics under a
unique prefix), runs one in-process RouterApp per scenario against the
broker of ``conn`` and returns a dict of figures. Wired into ``make bench``
by the lead.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from i24net.envelope import Precedence, Recipients
from i24net.kafka import KafkaConnection
from i24net.router.app import RouterApp
from i24net.router.settings import Topics, load_settings
from i24net.router.testing import (
    Network,
    build_network,
    hints,
    police_message,
    provision,
    settings_toml,
)
from i24net.stations import MEMBER_COUNTRIES

POLICY = Path(__file__).resolve().parents[1] / "deploy" / "policy" / "article3.toml"


def _say(msg: str) -> None:
    import sys

    print(f"[bench.router {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _now() -> int:
    return time.time_ns() // 1_000_000


def _p(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


class _Scenario:
    def __init__(self, conn: KafkaConnection, tmp: Path, net: Network, topics: Topics) -> None:
        self.conn, self.tmp, self.net, self.topics = conn, tmp, net, topics

    async def app(self, name: str) -> RouterApp:
        cfg = self.tmp / f"{name}.toml"
        cfg.write_text(
            settings_toml(
                instance=name,
                bootstrap=self.conn.bootstrap,
                prefix=self.topics.prefix,
                keys_dir=self.tmp / "keys",
                state_dir=self.tmp / f"state-{name}",
                policy=POLICY,
                group=f"{self.topics.prefix}router",  # shared: each scenario resumes
            )
        )
        return RouterApp(load_settings(cfg), CollectorRegistry())

    async def produce(
        self, station: str, n: int, to: Recipients, prec: Precedence = Precedence.ROUTINE
    ) -> None:
        gw = self.net.gateway(station, _now())
        p = AIOKafkaProducer(**self.conn.client_kwargs(), enable_idempotence=True, linger_ms=5)
        await p.start()
        try:
            futs = []
            for i in range(n):
                h, data = gw.message(
                    "POLICE_MESSAGE", police_message(f"Theft {i}"), to, _now(), precedence=prec
                )
                futs.append(
                    await p.send(
                        self.topics.out(station),
                        key=h.message_id.encode(),
                        value=data,
                        headers=hints(h),
                    )
                )
            await asyncio.gather(*futs)
        finally:
            await p.stop()


def _decided(app: RouterApp) -> float:
    total = 0.0
    for m in app.registry.collect():
        if m.name == "i24net_router_messages":
            total += sum(s.value for s in m.samples if s.name.endswith("_total"))
    return total


async def _drain(app: RouterApp, n: int, timeout_s: float) -> float:
    """Run the app until it decided ``n`` messages; seconds from the first batch's start
    to the last batch's commit (group join excluded)."""
    times: list[float] = []
    orig = app.process

    async def timed(batch: Any, **kw: Any) -> Any:
        if not times:
            times.append(time.perf_counter())
        ds = await orig(batch, **kw)
        times.append(time.perf_counter())
        return ds

    app.process = timed  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    deadline = time.monotonic() + timeout_s
    try:
        while _decided(app) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return times[-1] - times[0] if len(times) > 1 else float("nan")
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def _assigned(app: RouterApp) -> None:
    while not app._consumer.assignment():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)


async def run(
    conn: KafkaConnection,
    *,
    messages: int = 2000,
    broadcasts: int = 30,
    flood: int = 4000,
    quiet: int = 100,
    quiet_interval_s: float = 0.02,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        topics = Topics(prefix=f"bench-{uuid.uuid4().hex[:8]}.")
        net = build_network(sorted(MEMBER_COUNTRIES), tmp / "keys", now_ms=_now())
        _say("network built; provisioning topics")
        await provision(conn, net, topics, out_partitions=3)
        sc = _Scenario(conn, tmp, net, topics)
        _say("provisioned; single-recipient")

        # 1. single-recipient throughput (backlog first, then drain)
        await sc.produce("FR", messages, Recipients.to("JP"))
        async with await sc.app("single") as app:
            secs = await _drain(app, messages, 300)
        out["router_single_msgs_per_s"] = messages / secs if secs else float("nan")
        _say(f"single: {out['router_single_msgs_per_s']:.1f} msgs/s; broadcasts")

        # 2. broadcasts to 195 stations
        await sc.produce("BR", broadcasts, Recipients.all())
        async with await sc.app("broadcast") as app:
            secs = await _drain(app, broadcasts, 300)
        out["router_broadcasts_per_s"] = broadcasts / secs if secs else float("nan")
        out["router_broadcast_deliveries_per_s"] = out["router_broadcasts_per_s"] * 195
        _say(f"broadcast: {out['router_broadcasts_per_s']:.2f}/s; quiet vs flood")

        # 3. quiet station p99, alone and while another station floods
        for label, flooding in (("alone", False), ("flood", True)):
            async with await sc.app(f"quiet-{label}") as app:
                lat: list[float] = []
                orig = app.process

                async def timed(
                    batch: Any, _orig: Any = orig, _lat: list[float] = lat, **kw: Any
                ) -> Any:
                    ds = await _orig(batch, **kw)
                    t = _now()
                    for x in ds:
                        if x.header is not None and x.header.sender == "JP":
                            _lat.append((t - x.header.created_ms) / 1000)
                    return ds

                app.process = timed  # type: ignore[method-assign]
                stop = asyncio.Event()
                task = asyncio.create_task(app.run(stop))
                try:
                    await _assigned(app)
                    if flooding:
                        await sc.produce("DE", flood, Recipients.to("IT"))
                    gw_task = asyncio.create_task(_paced(sc, quiet, quiet_interval_s))
                    await gw_task
                    deadline = time.monotonic() + 120
                    while len(lat) < quiet and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                finally:
                    stop.set()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, 10)
                out[f"router_quiet_p99_ms_{label}"] = _p(lat, 0.99) * 1000
                out[f"router_quiet_p50_ms_{label}"] = _p(lat, 0.50) * 1000
        alone = out["router_quiet_p99_ms_alone"]
        out["router_quiet_p99_ratio_flood_vs_alone"] = out["router_quiet_p99_ms_flood"] / alone
    return out


async def _paced(sc: _Scenario, n: int, interval: float) -> None:
    gw = sc.net.gateway("JP", _now())
    p = AIOKafkaProducer(**sc.conn.client_kwargs(), enable_idempotence=True, linger_ms=0)
    await p.start()
    try:
        for i in range(n):
            h, data = gw.message(
                "POLICE_MESSAGE", police_message(f"Quiet {i}"), Recipients.to("FR"), _now()
            )
            await p.send(
                sc.topics.out("JP"), key=h.message_id.encode(), value=data, headers=hints(h)
            )
            await asyncio.sleep(interval)
        await p.flush()
    finally:
        await p.stop()


if __name__ == "__main__":  # python -m bench.router HOST:PORT
    import json
    import sys

    print(json.dumps(asyncio.run(run(KafkaConnection(bootstrap=sys.argv[1]))), indent=2))
