"""``--profile``'s summary of py-spy's collapsed stacks: the top frames by self
and by total, per-thread shares, and the speedscope file (no py-spy run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench/ package

from bench.pyspy import parse_collapsed, render_top, speedscope, summarize

RAW = [
    "thread (101);<module> (/x/cli.py:3);run (/x/app.py:10);fetch (/y/fetcher.py:200) 60",
    "thread (101);<module> (/x/cli.py:3);run (/x/app.py:12);sign (/z/signing.py:5) 20",
    "thread (202);writer (/x/store.py:40);0x7f0011 (libc.so.6) 20",
    "thread (303);0x7f0001 (libc.so.6);worker (/t.py:9);PyThread_acquire_lock_timed (x.c) 50",
    "thread (101);run (/x/app.py:9);EpollSelector.select (selectors.py:1);epoll_wait (libc) 50",
    "not a stack line",
    "",
]


def test_parse_collapsed_skips_malformed_lines() -> None:
    stacks = parse_collapsed(RAW)
    assert len(stacks) == 5
    assert stacks[0] == (
        (
            "thread (101)",
            "<module> (/x/cli.py:3)",
            "run (/x/app.py:10)",
            "fetch (/y/fetcher.py:200)",
        ),
        60,
    )


def test_summary_shares_by_self_total_and_thread() -> None:
    s = summarize(parse_collapsed(RAW), top=10)
    assert s["samples"] == 200
    # waiting threads are counted apart, and the shares are of the 100 busy samples
    assert s["busy_samples"] == 100 and s["waiting_share"] == pytest.approx(0.5)
    assert "worker (t.py)" not in dict(s["total"])
    assert s["self"][0] == ("fetch (fetcher.py)", pytest.approx(0.6))
    assert dict(s["self"])["[libc.so.6]"] == pytest.approx(0.2)  # unnamed native frames
    total = dict(s["total"])
    # the two run() lines are one function: counted once per stack, lines ignored
    assert total["run (app.py)"] == pytest.approx(0.8)
    assert "<module> (cli.py)" not in total  # in every stack: plumbing, not a hot spot
    assert dict(s["threads"]) == {
        "thread (101)": pytest.approx(0.8),
        "thread (202)": pytest.approx(0.2),
    }
    text = render_top("router", s)
    assert "router: 200 samples, 100 busy (50% were threads waiting" in text
    assert "[libc.so.6]" not in dict(
        s["total"]
    )  # a thread's start routine, not a hot spot and " 60.0%  fetch (fetcher.py)" in text
    assert summarize([])["self"] == []
    # a recursive function is in a stack once, whatever its depth
    rec = summarize(parse_collapsed(["thread (1);walk (/t.py:3);walk (/t.py:5) 10"]))
    assert dict(rec["total"])["walk (t.py)"] == pytest.approx(1.0)


def test_speedscope_file_has_one_sample_per_stack_with_its_weight() -> None:
    stacks = parse_collapsed(RAW)
    doc = speedscope("router", stacks)
    frames = [f["name"] for f in doc["shared"]["frames"]]
    prof = doc["profiles"][0]
    assert prof["weights"] == [60, 20, 20, 50, 50] and prof["endValue"] == 200
    assert [frames[i] for i in prof["samples"][1]] == list(stacks[1][0])
    assert len(frames) == len(set(frames)) == 16  # distinct frames, shared


def test_flamegraph_has_a_box_per_busy_frame_sized_by_its_samples() -> None:
    from bench.pyspy import flamegraph_svg

    svg = flamegraph_svg("router", parse_collapsed(RAW), width=1000)
    # busy frames: root, <module>, run, fetch, sign, writer, [libc.so.6] (waiting stacks out)
    assert svg.count("<rect ") == 7
    assert "100 busy samples" in svg
    assert 'width="1000.0"' in svg  # the root: every busy sample
    assert 'width="800.0"' in svg  # <module> → run: 80 of the 100
    assert "<title>fetch (fetcher.py): 60 samples, 60.0%</title>" in svg
    assert "worker" not in svg and "epoll_wait" not in svg
