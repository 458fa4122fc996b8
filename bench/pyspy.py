"""``--profile``: py-spy on the service processes during a measured phase.

py-spy samples another process from outside (ptrace), so the service runs its
normal code: no profiler hooks in the interpreter, every thread seen (aiokafka's
sender and fetcher run as tasks, but SQLite writers and uvicorn's workers are
threads), and ``--native`` shows time spent in C (libsodium, SQLite, zlib, the
socket layer) instead of folding it into the Python frame that called it. Idle
samples are left out (py-spy's default), so the profile is where the CPU goes.

Output per process, in the results folder:

- ``pyspy-<name>.txt``: collapsed stacks (``frame;frame;... count``), which
  speedscope (https://www.speedscope.app) and ``flamegraph.pl`` read as is;
- ``pyspy-<name>.speedscope.json``: the same samples as a speedscope file;
- ``pyspy-<name>-top.txt``: the top-N frames by self and by total samples.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_THREAD = re.compile(r"^(thread|process) \(")
# A stack through one of these is a thread waiting, not working: py-spy's idle
# detection misses some with --native (a pool thread blocked on its queue's lock
# shows as PyThread_acquire_lock_timed → libc), so the summary drops them itself.
WAITING = frozenset(
    {
        "epoll_wait",
        "EpollSelector.select",
        "PyThread_acquire_lock_timed",
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "sem_wait",
        "sem_timedwait",
        "sem_clockwait",
        "nanosleep",
        "clock_nanosleep",
        "poll",
        "select",
    }
)


# Frames every busy stack passes through (the event loop, a thread's start): in a
# ranking by total they would sit at 100 % and push the informative ones out.
PLUMBING_FILES = frozenset(
    {"runners.py", "base_events.py", "events.py", "threading.py", "_asynciomodule.c", "<string>"}
)


def _plumbing(short: str) -> bool:
    return short.startswith(("[", "<module>")) or short.rsplit("(", 1)[-1][:-1] in PLUMBING_FILES


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0]


def py_spy() -> str | None:
    """The py-spy next to this interpreter (the dev extra), else one on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path


class Profiler:
    """``start(pids)`` before the phase, ``stop()`` after it; summaries then."""

    def __init__(self, folder: Path, rate_hz: int = 100, phase: str = "") -> None:
        self.folder, self.rate_hz = folder, rate_hz
        self.phase = phase  # in the file names: pyspy-<phase>-<process>.*
        self.recordings: list[Recording] = []

    def start(self, pids: Mapping[str, int]) -> None:
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (pip install -e '.[dev]')")
        self.folder.mkdir(parents=True, exist_ok=True)
        for proc_name, pid in pids.items():
            name = f"{self.phase}-{proc_name}" if self.phase else proc_name
            out = self.folder / f"pyspy-{name}.txt"
            log = self.folder / f"pyspy-{name}.log"
            cmd = [exe, "record", "--pid", str(pid), "--native", "--threads"]
            cmd += ["--format", "raw", "--rate", str(self.rate_hz), "--output", str(out)]
            with log.open("wb") as lf:
                proc = subprocess.Popen(cmd, stdout=lf, stderr=subprocess.STDOUT)
            self.recordings.append(Recording(name, proc, out, log))

    def stop(self, top: int = 25) -> dict[str, Any]:
        """SIGINT every recorder (py-spy then writes its file); summarise each."""
        for r in self.recordings:
            if r.proc.poll() is None:
                r.proc.send_signal(signal.SIGINT)
        out: dict[str, Any] = {}
        for r in self.recordings:
            try:
                r.proc.wait(30)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                r.proc.wait(5)
            if not r.out.exists():
                out[r.name] = {"error": r.log.read_text(errors="replace")[-500:]}
                continue
            stacks = parse_collapsed(r.out.read_text(errors="replace").splitlines())
            summary = summarize(stacks, top)
            (self.folder / f"pyspy-{r.name}-top.txt").write_text(render_top(r.name, summary))
            (self.folder / f"pyspy-{r.name}.speedscope.json").write_text(
                json.dumps(speedscope(r.name, stacks))
            )
            (self.folder / f"pyspy-{r.name}.svg").write_text(flamegraph_svg(r.name, stacks))
            out[r.name] = {
                "samples": summary["samples"],
                "busy_samples": summary["busy_samples"],
                "top_self": summary["self"][:10],
                "files": [str(r.out), str(self.folder / f"pyspy-{r.name}-top.txt")],
            }
        self.recordings.clear()
        return out

    def kill(self) -> None:
        for r in self.recordings:
            with contextlib.suppress(OSError):
                r.proc.kill()


def parse_collapsed(lines: Iterable[str]) -> list[tuple[tuple[str, ...], int]]:
    """``a;b;c 12`` lines into ((a, b, c), 12); malformed lines are skipped."""
    out: list[tuple[tuple[str, ...], int]] = []
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out.append((tuple(stack.split(";")), int(count)))
    return out


def _short(frame: str) -> str:
    """``fn (path/to/module.py:123)`` → ``fn (module.py)``: lines vary, functions do not;
    an unnamed native address ``0x7f… (libc.so.6)`` → ``[libc.so.6]``."""
    if frame.startswith("0x") and " (" in frame:
        return "[" + frame.split(" (", 1)[1].rstrip(")") + "]"
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    fn, where = m.groups()
    return f"{fn} ({Path(where).name})"


def summarize(stacks: list[tuple[tuple[str, ...], int]], top: int = 25) -> dict[str, Any]:
    """Samples; top frames by self (the leaf) and by total (anywhere in the stack,
    counted once per stack); the share of each thread. Stacks of a waiting thread
    (``WAITING``) are counted apart and left out of the rankings, whose shares are
    of the busy samples. Unnamed native frames (``[libc.so.6]``) and the event
    loop's and threads' own frames (``PLUMBING_FILES``) rank by self only: as outer
    frames they are in every stack, which says nothing."""
    total = busy = 0
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for stack, n in stacks:
        total += n
        frames = [f for f in stack if not _THREAD.match(f)]
        if not frames or any(_function(f) in WAITING for f in frames):
            continue
        busy += n
        thread = next((f for f in stack if _THREAD.match(f)), "all")
        threads[thread] += n
        self_c[_short(frames[-1])] += n
        for f in {_short(f) for f in frames}:
            if not _plumbing(f):
                incl[f] += n

    def shares(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, v / busy) for k, v in c.most_common(top)] if busy else []

    return {
        "samples": total,
        "busy_samples": busy,
        "waiting_share": (total - busy) / total if total else 0.0,
        "self": shares(self_c),
        "total": shares(incl),
        "threads": shares(threads),
    }


def render_top(name: str, summary: dict[str, Any]) -> str:
    lines = [
        f"py-spy --native --threads, {name}: {summary['samples']} samples, "
        f"{summary['busy_samples']} busy ({summary['waiting_share']:.0%} were threads "
        "waiting: left out); shares below are of the busy samples"
    ]
    for title, key in (("self", "self"), ("total (inclusive)", "total"), ("threads", "threads")):
        lines += ["", f"top by {title}:"]
        lines += [f"  {share:6.1%}  {frame}" for frame, share in summary[key]]
    return "\n".join(lines) + "\n"


@dataclass
class _Node:
    count: int = 0
    children: dict[str, _Node] | None = None


def _busy_tree(stacks: list[tuple[tuple[str, ...], int]]) -> _Node:
    root = _Node()
    for stack, n in stacks:
        frames = [f for f in stack if not _THREAD.match(f)]
        if not frames or any(_function(f) in WAITING for f in frames):
            continue
        root.count += n
        node = root
        for f in (_short(f) for f in frames):
            if node.children is None:
                node.children = {}
            node = node.children.setdefault(f, _Node())
            node.count += n
    return root


def flamegraph_svg(
    name: str, stacks: list[tuple[tuple[str, ...], int]], width: int = 1200, row: int = 16
) -> str:
    """A flame graph of the busy samples as a standalone SVG (no flamegraph.pl needed)."""
    from html import escape
    from zlib import crc32

    root = _busy_tree(stacks)
    boxes: list[str] = []
    depth_max = 0

    def place(node: _Node, label: str, x: float, depth: int) -> None:
        nonlocal depth_max
        w = node.count / root.count * width
        if w < 0.5:
            return
        depth_max = max(depth_max, depth)
        hue = crc32(label.encode()) % 60  # warm colours, stable per frame
        share = node.count / root.count
        title = escape(f"{label}: {node.count} samples, {share:.1%}")
        text = escape(label[: int(w / 7)]) if w > 35 else ""
        boxes.append(
            f'<g><title>{title}</title><rect x="{x:.1f}" y="{{Y{depth}}}" width="{w:.1f}" '
            f'height="{row - 1}" fill="hsl({hue},80%,60%)"/>'
            f'<text x="{x + 3:.1f}" y="{{T{depth}}}">{text}</text></g>'
        )
        cx = x
        for child_label, child in sorted((node.children or {}).items()):
            place(child, child_label, cx, depth + 1)
            cx += child.count / root.count * width

    if root.count:
        place(root, f"all busy samples of {name}", 0.0, 0)
    height = (depth_max + 1) * row + 30
    svg = "".join(boxes)
    for d in range(depth_max + 1):  # root at the bottom
        y = height - (d + 1) * row
        svg = svg.replace(f"{{Y{d}}}", str(y)).replace(f"{{T{d}}}", str(y + row - 4))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<text x="4" y="16" font-size="13">py-spy --native --threads: {escape(name)}, '
        f"{root.count} busy samples</text>{svg}</svg>\n"
    )


def speedscope(name: str, stacks: list[tuple[tuple[str, ...], int]]) -> dict[str, Any]:
    """A speedscope "sampled" profile of the collapsed stacks."""
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, n in stacks:
        samples.append([index.setdefault(f, len(index)) for f in stack])
        weights.append(n)
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": [{"name": f} for f in index]},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": f"i24net bench {name}",
        "exporter": "bench/pyspy.py",
    }


if __name__ == "__main__":  # python -m bench.pyspy pyspy-<name>.txt ...: the top-N again
    for arg in sys.argv[1:]:
        path = Path(arg)
        summary = summarize(parse_collapsed(path.read_text(errors="replace").splitlines()), 30)
        print(render_top(path.stem.removeprefix("pyspy-"), summary))
