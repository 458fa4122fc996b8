"""CPU accounting of ``make bench`` from a fake /proc: per process, per message,
the total the issue's target counts (router + gateways + broker), the host's busy
share and the saturation flag (no broker, no real processes)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench/ package

from bench.procstat import CpuMeter, parse_host_busy, phase_cpu, saturated


class FakeProc:
    """/proc/<pid>/stat (utime, stime in ticks) and /proc/stat (host jiffies)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)

    def process(self, pid: int, utime: int, stime: int, comm: str = "java") -> None:
        d = self.root / str(pid)
        d.mkdir(exist_ok=True)
        fields = ["S", *["0"] * 10, str(utime), str(stime), *["0"] * 30]
        (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")

    def host(self, busy: int, idle: int, iowait: int = 0) -> None:
        # user nice system idle iowait irq softirq steal guest guest_nice
        (self.root / "stat").write_text(
            f"cpu  {busy} 0 0 {idle} {iowait} 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0\n"
        )


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


PIDS = {"router": 11, "gateway_FR": 12, "gateway_JP": 13, "broker": 14, "loadgen": 15}


def _meter(tmp_path: Path) -> tuple[FakeProc, Clock, CpuMeter]:
    fake, clock = FakeProc(tmp_path / "proc"), Clock()
    for pid in PIDS.values():
        fake.process(pid, 0, 0)
    fake.host(busy=0, idle=0)
    return fake, clock, CpuMeter(PIDS, proc=fake.root, ticks=100, clock=clock)


def test_cpu_per_message_counts_each_process_and_the_services_total(tmp_path: Path) -> None:
    fake, clock, meter = _meter(tmp_path)
    start = meter.sample()
    # over 10 s and 200 messages: router 2 s, FR 1 s, JP 0.5 s, broker 3 s, loadgen 4 s
    for pid, (u, s) in {
        11: (150, 50),
        12: (80, 20),
        13: (50, 0),
        14: (200, 100),
        15: (400, 0),
    }.items():
        fake.process(pid, u, s)
    fake.host(busy=1200, idle=800)  # 12 s busy of 20 core-seconds
    clock.t += 10
    out = phase_cpu(start, meter.sample(), messages=200, cores=2)
    assert out["cpu_ms_per_msg_router"] == pytest.approx(10.0)
    assert out["cpu_ms_per_msg_gateway_FR"] == pytest.approx(5.0)
    assert out["cpu_ms_per_msg_gateway_JP"] == pytest.approx(2.5)
    assert out["cpu_ms_per_msg_broker"] == pytest.approx(15.0)
    assert out["cpu_ms_per_msg_loadgen"] == pytest.approx(20.0)
    # the target's sum leaves the load generator out
    assert out["cpu_ms_per_msg_total"] == pytest.approx(32.5)
    assert out["cpu_s_ours"] == pytest.approx(10.5)
    assert out["cpu_share_ours"] == pytest.approx(10.5 / 20)
    assert out["cpu_share_host"] == pytest.approx(0.6)
    assert out["saturated"] is False
    assert out["wall_s"] == 10


def test_a_busy_host_or_our_own_load_flags_the_phase_saturated(tmp_path: Path) -> None:
    fake, clock, meter = _meter(tmp_path)
    start = meter.sample()
    fake.host(busy=1900, idle=100)  # someone else kept both cores 95 % busy
    fake.process(11, 100, 0)
    clock.t += 10
    out = phase_cpu(start, meter.sample(), messages=100, cores=2)
    assert out["cpu_share_ours"] == pytest.approx(0.05)
    assert out["cpu_share_host"] == pytest.approx(0.95)
    assert out["saturated"] is True
    # our own processes alone at 90 % of both cores, the host figure unknown
    assert saturated(0.9, float("nan")) is True
    assert saturated(0.89, 0.5) is False
    assert saturated(float("nan"), float("nan")) is False


def test_a_process_gone_during_the_phase_has_no_figure_not_a_zero(tmp_path: Path) -> None:
    fake, clock, meter = _meter(tmp_path)
    start = meter.sample()
    (fake.root / "13" / "stat").unlink()
    fake.process(11, 100, 0)
    clock.t += 1
    out = phase_cpu(start, meter.sample(), messages=10, cores=2)
    assert math.isnan(out["cpu_ms_per_msg_gateway_JP"])
    assert out["cpu_ms_per_msg_total"] == pytest.approx(100.0)  # router's 1 s / 10 msgs


def test_host_busy_excludes_idle_and_iowait() -> None:
    busy, total = parse_host_busy("cpu  100 20 30 500 50 5 5 0 0 0\n", ticks=100)
    assert busy == pytest.approx(1.6)  # user + nice + system + irq + softirq
    assert total == pytest.approx(7.1)
    with pytest.raises(ValueError):
        parse_host_busy("intr 1 2 3\n")
