"""Resource figures of a process from /proc (Linux; psutil is not a dependency).

``peak_rss_mib(pid)``: ``VmHWM`` (the resident-set high-water mark since start);
``cpu_seconds(pid)``: user + system CPU time (``/proc/<pid>/stat`` utime + stime).
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _status_kib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")


def peak_rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def parse_stat_cpu(stat: str, ticks: int = _TICKS) -> float:
    """utime + stime in seconds from a ``/proc/<pid>/stat`` line.

    The command name (field 2) may hold spaces and parentheses, so fields are
    counted after its closing parenthesis: utime and stime are fields 14 and 15.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / ticks


def cpu_seconds(pid: int) -> float:
    return parse_stat_cpu(Path(f"/proc/{pid}/stat").read_text())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
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
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return float("nan")
