"""The replay window: skew, expiry, seen ids, persistence, memory bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from i24net.clock import FixedClock
from i24net.errors import Reason, VerificationError
from i24net.replay import ReplayWindow

T0 = 1_795_000_000_000
MIN = 60_000


def reason_of(w: ReplayWindow, mid: str, created: int, expires: int) -> Reason | None:
    try:
        w.check(mid, created, expires)
    except VerificationError as e:
        return e.reason
    return None


def test_time_window() -> None:
    w = ReplayWindow(clock=FixedClock(T0), skew_ms=5 * MIN)
    assert reason_of(w, "a", T0 + 5 * MIN, T0 + 60 * MIN) is None
    assert reason_of(w, "a", T0 + 5 * MIN + 1, T0 + 60 * MIN) is Reason.NOT_YET_VALID
    assert reason_of(w, "a", T0 - 60 * MIN, T0 - 5 * MIN + 1) is None
    assert reason_of(w, "a", T0 - 60 * MIN, T0 - 5 * MIN) is Reason.EXPIRED


def test_seen_ids_until_expiry() -> None:
    clock = FixedClock(T0)
    w = ReplayWindow(clock=clock, skew_ms=MIN)
    w.record("a", T0 + 10 * MIN)
    assert reason_of(w, "a", T0, T0 + 10 * MIN) is Reason.REPLAYED
    clock.advance(11 * MIN)
    w.record("b", T0 + 60 * MIN)  # purges "a"
    assert len(w) == 1


def test_persisted_across_restart(tmp_path: Path) -> None:
    db = tmp_path / "seen.sqlite3"
    clock = FixedClock(T0)
    w = ReplayWindow(clock=clock, path=db)
    w.record("a", T0 + 10 * MIN)
    w.close()
    w.close()
    w2 = ReplayWindow(clock=clock, path=db)
    assert reason_of(w2, "a", T0, T0 + 10 * MIN) is Reason.REPLAYED
    w2.close()


def test_memory_bound_evicts_closest_to_expiry() -> None:
    w = ReplayWindow(clock=FixedClock(T0), max_entries=2)
    w.record("a", T0 + 1 * MIN)
    w.record("b", T0 + 3 * MIN)
    w.record("c", T0 + 2 * MIN)
    assert len(w) == 2 and w.evicted == 1 and not w.seen("a") and w.seen("b")


def test_bad_config() -> None:
    with pytest.raises(Exception, match="replay window"):
        ReplayWindow(clock=FixedClock(T0), skew_ms=-1)


def test_record_many_one_transaction_persisted(tmp_path: Path) -> None:
    db = tmp_path / "seen.sqlite3"
    clock = FixedClock(T0)
    w = ReplayWindow(clock=clock, path=db, skew_ms=MIN)
    n = w.record_many([("a", T0 + 10 * MIN), ("b", T0 + 20 * MIN), ("old", T0 - 2 * MIN)])
    assert n == 2 and len(w) == 2
    assert w.record_many([]) == 0
    assert reason_of(w, "b", T0, T0 + 20 * MIN) is Reason.REPLAYED
    w.close()
    w2 = ReplayWindow(clock=clock, path=db, skew_ms=MIN)
    assert w2.seen("a") and w2.seen("b") and not w2.seen("old")
    w2.close()


def test_record_many_respects_memory_bound() -> None:
    w = ReplayWindow(clock=FixedClock(T0), max_entries=2)
    w.record_many([("a", T0 + 1 * MIN), ("b", T0 + 3 * MIN), ("c", T0 + 2 * MIN)])
    assert len(w) == 2 and w.evicted == 1 and not w.seen("a") and w.seen("b") and w.seen("c")


def test_replayed_error_carries_the_message_id() -> None:
    w = ReplayWindow(clock=FixedClock(T0))
    w.record("m-1", T0 + MIN)
    with pytest.raises(VerificationError) as e:
        w.check("m-1", T0, T0 + MIN)
    assert e.value.reason is Reason.REPLAYED and e.value.message_id == "m-1"
    assert str(e.value) == "envelope verification failed"
    with pytest.raises(VerificationError) as e2:
        w.check("m-2", T0, T0 - 10 * MIN)
    assert e2.value.message_id is None


def synchronous_level(w: ReplayWindow) -> int:
    assert w._db is not None
    return int(w._db.execute("PRAGMA synchronous").fetchone()[0])


def test_a_cache_of_a_durable_log_is_not_fsynced_per_commit(tmp_path: Path) -> None:
    """The router's SQLite copy of its changelog commits without fsync (NORMAL in WAL);
    a window that is the only copy keeps FULL (an fsync per commit)."""
    full = ReplayWindow(clock=FixedClock(T0), path=tmp_path / "full.sqlite3")
    cache = ReplayWindow(clock=FixedClock(T0), path=tmp_path / "cache.sqlite3", synchronous=False)
    assert synchronous_level(full) == 2 and synchronous_level(cache) == 1
    full.close()
    cache.close()


def test_a_cache_still_keeps_ids_and_their_mark_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "seen.sqlite3"
    clock = FixedClock(T0)
    w = ReplayWindow(clock=clock, path=db, synchronous=False)
    w.record_many([("a", T0 + 10 * MIN)], mark=("seen_offset", 41))
    w.close()
    w2 = ReplayWindow(clock=clock, path=db, synchronous=False)
    assert w2.seen("a") and w2.mark("seen_offset") == 41
    w2.close()


def test_ids_recorded_in_memory_only_are_not_in_the_database(tmp_path: Path) -> None:
    """``persist=False``: refused as replays from now on, but written to the database only
    when they come back from the changelog with its offset."""
    db = tmp_path / "seen.sqlite3"
    clock = FixedClock(T0)
    w = ReplayWindow(clock=clock, path=db)
    assert w.record_many([("a", T0 + 10 * MIN)], persist=False) == 1
    assert reason_of(w, "a", T0, T0 + 10 * MIN) is Reason.REPLAYED
    w.close()
    w2 = ReplayWindow(clock=clock, path=db)
    assert not w2.seen("a")
    w2.close()
