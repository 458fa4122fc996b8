"""Resource figures of processes from /proc (Linux; psutil is not a dependency).

``peak_rss_mib(pid)``: ``VmHWM`` (the resident-set high-water mark since start);
``cpu_seconds(pid)``: user + system CPU time (``/proc/<pid>/stat`` utime + stime).

Phases: ``CpuMeter`` samples the CPU seconds of every process that takes part in
a measured phase (router, gateways, the broker JVM, the load generator) and the
host's busy time (``/proc/stat``) at its start and its end; ``phase_cpu`` turns
two samples into CPU milliseconds per end-to-end message for each process and
says whether the host was saturated. Why per message and not msgs/s: the host is
shared with other work, and CPU per message is the figure that noise moves least
(another process's load stretches wall time, not our CPU seconds). Why the host
busy time too: a phase during which *something* kept both cores busy measures
queueing for a core, not the design, and the report must say so.

Every reader takes a ``proc`` root so that the tests can feed a fake /proc.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")

# A phase is flagged saturated when our processes, or the host as a whole, kept
# this share of every core busy: latency is then time spent waiting for a core.
SATURATED_SHARE = 0.9
# The processes whose CPU is the design's cost of a message (the target):
# the load generator is measured and reported, but it is not part of the system.
SERVICE_PREFIXES = ("router", "gateway", "broker")


def _status_kib(pid: int, field: str, proc: Path = PROC) -> float:
    for line in (proc / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def peak_rss_mib(pid: int, proc: Path = PROC) -> float:
    return _status_kib(pid, "VmHWM", proc) / 1024


def rss_mib(pid: int, proc: Path = PROC) -> float:
    return _status_kib(pid, "VmRSS", proc) / 1024


def parse_stat_cpu(stat: str, ticks: int = _TICKS) -> float:
    """utime + stime in seconds from a ``/proc/<pid>/stat`` line.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted after its closing parenthesis: utime and stime are fields 14 and 15.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / ticks


def cpu_seconds(pid: int, proc: Path = PROC, ticks: int = _TICKS) -> float:
    return parse_stat_cpu((proc / str(pid) / "stat").read_text(), ticks)


def parse_host_busy(stat: str, ticks: int = _TICKS) -> tuple[float, float]:
    """(busy seconds, total seconds) summed over all cores from ``/proc/stat``'s
    ``cpu`` line; idle and iowait are the not-busy part."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            vals = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal (guest is inside user)
            total = sum(vals[:8])
            idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
            return (total - idle) / ticks, total / ticks
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds of each named process, host busy/total seconds, wall time."""

    wall_s: float
    procs: Mapping[str, float]
    host_busy_s: float
    host_total_s: float


class CpuMeter:
    """Samples the named processes (``{"router": pid, ...}``) and the host."""

    def __init__(
        self,
        pids: Mapping[str, int],
        *,
        proc: Path = PROC,
        ticks: int = _TICKS,
        clock: Any = time.monotonic,
    ) -> None:
        self.pids = dict(pids)
        self.proc, self.ticks, self.clock = proc, ticks, clock

    def sample(self) -> CpuSample:
        procs: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                procs[name] = cpu_seconds(pid, self.proc, self.ticks)
            except (OSError, ValueError, IndexError):  # gone: no figure, not a zero
                procs[name] = float("nan")
        try:
            busy, total = parse_host_busy((self.proc / "stat").read_text(), self.ticks)
        except (OSError, ValueError):
            busy = total = float("nan")
        return CpuSample(self.clock(), procs, busy, total)


def is_service(name: str) -> bool:
    return name.startswith(SERVICE_PREFIXES)


def phase_cpu(
    start: CpuSample, end: CpuSample, messages: int, cores: int | None = None
) -> dict[str, Any]:
    """CPU per end-to-end message over one phase, per process and in total.

    - ``cpu_ms_per_msg_<name>``: that process's CPU milliseconds per message;
    - ``cpu_ms_per_msg_total``: router + gateways + broker (the target's sum; the
      load generator is reported on its own, not in the total);
    - ``cpu_share_ours``: all sampled processes' CPU over the wall time of every
      core; ``cpu_share_host``: the host's busy share (anyone's work);
    - ``saturated``: either share reached ``SATURATED_SHARE``.
    """
    cores = cores or os.cpu_count() or 1
    wall = end.wall_s - start.wall_s
    n = max(1, messages)
    out: dict[str, Any] = {"wall_s": wall, "messages": messages}
    total = ours = 0.0
    for name, s0 in start.procs.items():
        used = end.procs.get(name, float("nan")) - s0
        out[f"cpu_ms_per_msg_{name}"] = used / n * 1000
        if used == used:  # not NaN
            ours += used
            if is_service(name):
                total += used
    out["cpu_ms_per_msg_total"] = total / n * 1000
    out["cpu_s_ours"] = ours
    out["cpu_share_ours"] = ours / (wall * cores) if wall > 0 else float("nan")
    host_total = end.host_total_s - start.host_total_s
    host_busy = end.host_busy_s - start.host_busy_s
    out["cpu_share_host"] = host_busy / host_total if host_total > 0 else float("nan")
    out["saturated"] = saturated(out["cpu_share_ours"], out["cpu_share_host"])
    return out


def saturated(share_ours: float, share_host: float, limit: float = SATURATED_SHARE) -> bool:
    """True when our processes or the whole host kept ``limit`` of the cores busy
    (NaN, an unknown share, never counts as saturated)."""
    return any(x == x and x >= limit for x in (share_ours, share_host))


def cpu_model() -> str:
    try:
        for line in (PROC / "cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def memory_gib() -> float:
    try:
        return _status_meminfo("MemTotal") / 1024 / 1024
    except OSError:
        return float("nan")


def _status_meminfo(field: str) -> float:
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")
