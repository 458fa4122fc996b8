"""Fair scheduler: precedence first, senders in turn, no starvation by a flood."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from i24net.router.app import RouterApp
from i24net.router.scheduler import FairScheduler
from i24net.router.settings import RouterSettings


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    key: bytes | None = None
    value: bytes = b""
    timestamp: int = 0
    timestamp_type: int = 0


def rec(sender: str, offset: int, prec: str = "ROUTINE", partition: int = 0) -> Rec:
    return Rec(f"i24.out.{sender}", partition, offset, (("i24-precedence", prec.encode()),))


def test_a_flood_does_not_starve_a_quiet_sender() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.")
    s.add(rec("FR", i) for i in range(1000))
    s.add([rec("JP", 0)])
    batch = s.next_batch(10)
    assert rec("JP", 0) in batch
    assert len(batch) == 10


def test_flash_goes_first_across_senders() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.")
    s.add(rec("FR", i) for i in range(50))
    s.add([rec("JP", 0, "FLASH")])
    assert s.next_batch(1) == [rec("JP", 0, "FLASH")]


def test_a_flash_flood_still_leaves_others_their_share() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.")
    s.add(rec("FR", i, "FLASH") for i in range(100))
    s.add(rec("JP", i) for i in range(3))
    batch = s.next_batch(10)
    assert sum(r.topic.endswith("JP") for r in batch) == 3


def test_partition_order_is_kept_and_partitions_of_a_sender_compete_by_precedence() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.")
    s.add([rec("FR", 0, "ROUTINE", 0), rec("FR", 1, "FLASH", 0), rec("FR", 0, "FLASH", 1)])
    batch = s.next_batch(3)
    assert batch[0] == rec("FR", 0, "FLASH", 1)
    assert [r.offset for r in batch if r.partition == 0] == [0, 1]


def test_drop_forgets_revoked_partitions() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.")
    s.add(rec("FR", i) for i in range(5))
    s.drop([("i24.out.FR", 0)])
    assert len(s) == 0 and s.next_batch(5) == []


def test_senders_alternate_when_equal() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.")
    s.add(rec("FR", i) for i in range(4))
    s.add(rec("JP", i) for i in range(4))
    batch = s.next_batch(4)
    assert [r.topic[-2:] for r in batch] in (["FR", "JP", "FR", "JP"], ["JP", "FR", "JP", "FR"])


# --- the batching window of RouterApp._step (issue 12) ---------------------------------


class FakeConsumer:
    """Scripted ``getmany``: each call takes the next entry (records of one sender, or None:
    nothing arrives, so the call waits its whole timeout on the fake clock)."""

    def __init__(self, clock: list[float], script: list[list[Rec] | None]) -> None:
        self.clock = clock
        self.script = script
        self.timeouts: list[int] = []

    async def getmany(self, *tps: object, timeout_ms: int = 0, max_records: int = 0) -> Any:
        self.timeouts.append(timeout_ms)
        records = self.script.pop(0) if self.script else None
        if records is None:
            self.clock[0] += timeout_ms / 1000
            return {}
        self.clock[0] += 0.001
        return {TopicPartition(records[0].topic, records[0].partition): records}

    def assignment(self) -> set[object]:
        return set()


def router_app(tmp_path: Path, **router: object) -> tuple[RouterApp, list[float]]:
    settings = RouterSettings.model_validate(
        {
            "router": {"instance": "t", **router},
            "kafka": {"bootstrap": "127.0.0.1:1"},
            "keys": {"gs_secret": tmp_path / "s", "root_public": tmp_path / "r"},
            "state": {"dir": tmp_path},
            "policy": {"file": tmp_path / "p"},
        }
    )
    now = [100.0]
    return RouterApp(settings, CollectorRegistry(), monotonic=lambda: now[0]), now


async def step(
    app: RouterApp, now: list[float], script: list[list[Rec] | None]
) -> tuple[list[list[Rec]], FakeConsumer]:
    """One ``_step`` over ``script``; returns the batches handed to ``process``."""
    consumer = FakeConsumer(now, script)
    app._consumer = consumer
    batches: list[list[Rec]] = []

    async def process(batch: Any, *, budget_s: float | None = None, **_: Any) -> list[Any]:
        batches.append(list(batch))
        return []

    app.process = process  # type: ignore[method-assign]
    await app._step()
    return batches, consumer


async def test_a_transaction_waits_for_other_senders_within_the_linger(tmp_path: Path) -> None:
    """FR's message and JP's receipt fetched 1 ms apart go in ONE transaction while both
    senders are active (two active senders used to skip the linger: ~1 record per
    transaction)."""
    app, now = router_app(tmp_path, batch_linger_ms=10)
    await step(app, now, [[rec("JP", 0)], None])
    now[0] += 0.5  # JP is still an active sender (active_window_ms 2000)
    batches, _ = await step(app, now, [[rec("FR", 0)], [rec("JP", 1)], None])
    assert [len(b) for b in batches] == [2]


async def test_the_linger_is_bounded_from_the_first_fetched_record(tmp_path: Path) -> None:
    """The window runs from the first queued record's fetch; later records do not extend it."""
    app, now = router_app(tmp_path, batch_linger_ms=10)
    t0 = now[0]
    script = [[rec("FR", 0)], [rec("JP", 0)], None, [rec("BR", 0)]]
    batches, _ = await step(app, now, script)
    assert [len(b) for b in batches] == [2]  # BR's record came after the window
    assert now[0] - t0 <= 0.011 + 1e-9


async def test_a_flash_record_does_not_wait(tmp_path: Path) -> None:
    app, now = router_app(tmp_path, batch_linger_ms=10)
    batches, consumer = await step(app, now, [[rec("FR", 0, "FLASH")], [rec("JP", 0)]])
    assert [len(b) for b in batches] == [1] and len(consumer.timeouts) == 1


async def test_a_full_batch_does_not_wait(tmp_path: Path) -> None:
    app, now = router_app(tmp_path, batch_linger_ms=10, batch_max_records=3)
    fr = [rec("FR", i) for i in range(3)]
    batches, consumer = await step(app, now, [fr, [rec("JP", 0)]])
    assert [len(b) for b in batches] == [3] and len(consumer.timeouts) == 1


async def test_a_leftover_waits_only_for_the_rest_of_its_window(tmp_path: Path) -> None:
    """Records left over from a full batch keep the window of their fetch: the next
    transaction does not restart the linger for them."""
    app, now = router_app(tmp_path, batch_linger_ms=10, batch_max_records=2)
    t0 = now[0]
    batches, _ = await step(app, now, [[rec("FR", i) for i in range(3)]])
    assert [len(b) for b in batches] == [2]
    now[0] += 0.004  # the first transaction's commit
    batches, consumer = await step(app, now, [None, None])
    assert [len(b) for b in batches] == [1]
    assert now[0] - t0 <= 0.011 + 1e-9  # fetched at t0 + 1 ms: the window ends at t0 + 11 ms
    assert consumer.timeouts[0] == 0  # records queued: the first fetch does not wait


def ingress(partition: int, offset: int, prec: str = "ROUTINE") -> Rec:
    return Rec("i24.out", partition, offset, (("i24-precedence", prec.encode()),))


def test_each_ingress_partition_is_a_lane_of_its_own() -> None:
    """On the shared ingress topic (partitioned by sender) a flood in one partition cannot
    starve the stations of another: partitions take turns as senders do."""
    s: FairScheduler[Rec] = FairScheduler("i24.out.", "i24.out")
    s.add(ingress(3, i) for i in range(1000))
    s.add([ingress(7, 0)])
    assert s.senders() == {"#3", "#7"}
    batch = s.next_batch(10)
    assert ingress(7, 0) in batch and len(batch) == 10


def test_flash_goes_first_across_ingress_partitions() -> None:
    s: FairScheduler[Rec] = FairScheduler("i24.out.", "i24.out")
    s.add(ingress(3, i) for i in range(50))
    s.add([ingress(7, 0, "FLASH")])
    assert s.next_batch(1) == [ingress(7, 0, "FLASH")]


# --- waking lanes: a quiet station during a flood (issue 12, fairness) ------------------


def clocked() -> tuple[FairScheduler[Rec], list[float]]:
    now = [1000.0]
    return FairScheduler("i24.out.", waking_rate=50.0, clock=lambda: now[0]), now


def test_a_quiet_lane_during_a_flood_is_waking() -> None:
    s, _ = clocked()
    s.add(rec("FR", i) for i in range(1000))
    s.add([rec("JP", 0)])
    batch = s.next_batch(200)
    assert s.waking_end == batch.index(rec("JP", 0)) + 1 <= 2


def test_no_backlog_left_behind_nothing_is_waking() -> None:
    """The batch holds every queued record: committing it early would gain nothing."""
    s, _ = clocked()
    s.add(rec("FR", i) for i in range(5))
    s.add([rec("JP", 0)])
    assert len(s.next_batch(200)) == 6 and s.waking_end == 0


def test_a_busy_lane_is_steady_not_waking() -> None:
    """Receipts flowing back during a burst (60 records/s here) keep full batches."""
    s, now = clocked()
    for i in range(60):
        s.add([rec("JP", i)])
        s.next_batch(200)
        now[0] += 0.01
    s.add(rec("FR", i) for i in range(1000))
    s.add([rec("JP", 60)])
    s.next_batch(200)
    assert s.rate("JP") >= 50 and s.waking_end == 0
    now[0] += 2.0  # two quiet seconds later JP is quiet again
    s.add([rec("JP", 61)])
    batch = s.next_batch(200)
    assert s.waking_end == batch.index(rec("JP", 61)) + 1


def test_the_rate_forgets_what_is_older_than_two_seconds() -> None:
    s, now = clocked()
    s.add(rec("JP", i) for i in range(10))
    s.next_batch(200)
    assert s.rate("JP") == 10
    now[0] += 1.5
    assert 4 <= s.rate("JP") <= 6  # half of the previous second is still in the window
    now[0] += 1.0
    assert s.rate("JP") == 0


def test_more_for_a_batch_in_progress_come_from_the_other_lanes_only() -> None:
    s, _ = clocked()
    s.add(rec("FR", i) for i in range(300))
    batch = s.next_batch(200)
    assert s.waking_end == 0 and len(batch) == 200
    s.add([rec("JP", 0), rec("JP", 1)])
    more = s.next_batch(200, exclude={"FR"})
    assert more == [rec("JP", 0), rec("JP", 1)] and s.waking_end == 2
    assert len(s) == 100 and s.next_batch(200, exclude={"FR"}) == []


# --- RouterApp.process: the batch commits early for a waking lane ----------------------


class FakeTime:
    """``time`` for the app module: ``perf_counter`` moves only when a record is decided."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def deciding_app(
    tmp_path: Path, monkeypatch: Any, ms_per_record: float = 1.0
) -> tuple[RouterApp, list[Rec]]:
    """A RouterApp whose decisions take ``ms_per_record`` of a fake clock and whose
    commits succeed at once; returns it and the list of records decided, in order."""
    import i24net.router.app as app_module

    clock = FakeTime()
    monkeypatch.setattr(app_module, "time", clock)
    app, _ = router_app(tmp_path, batch_waking_budget_ms=8, batch_poll_ms=2)
    app.scheduler = FairScheduler("i24.out.", waking_rate=50.0, clock=clock.monotonic)
    decided: list[Rec] = []

    class Pipeline:
        def process(self, topic: str, origin: str, *rest: Any) -> Any:
            clock.now += ms_per_record / 1000
            part, offset = origin.split(":")[1:]
            decided.append(Rec(topic, int(part), int(offset), ()))
            return object()

    async def commit(items: Any) -> Any:
        return items

    app._pipeline = Pipeline()  # type: ignore[assignment]
    app._commit_items = commit  # type: ignore[method-assign]
    app._after_commit = lambda *a: None  # type: ignore[method-assign]
    return app, decided


def bare(r: Rec) -> Rec:
    return Rec(r.topic, r.partition, r.offset, ())


async def test_a_batch_with_a_waking_record_commits_after_the_waking_budget(
    tmp_path: Path, monkeypatch: Any
) -> None:
    app, decided = deciding_app(tmp_path, monkeypatch)
    app.scheduler.add(rec("FR", i) for i in range(300))
    app.scheduler.add([rec("JP", 0)])
    await app.process(app.scheduler.next_batch(200), budget_s=0.020)
    assert bare(rec("JP", 0)) in decided[:2]
    assert len(decided) == 8  # 8 ms of deciding, not the 20 ms budget
    assert len(app.scheduler) == 301 - 8  # the rest went back to the queues


async def test_a_flood_alone_keeps_its_whole_budget(tmp_path: Path, monkeypatch: Any) -> None:
    app, decided = deciding_app(tmp_path, monkeypatch)
    app.scheduler.add(rec("FR", i) for i in range(300))
    await app.process(app.scheduler.next_batch(200), budget_s=0.020)
    assert len(decided) == 20


async def test_a_quiet_record_fetched_mid_batch_joins_it_and_ends_it(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """JP's record arrives while a flood batch is being decided: it is decided at the next
    look (every ``batch_poll_ms``), and the batch commits right after it."""
    app, decided = deciding_app(tmp_path, monkeypatch)
    sched = app.scheduler
    sched.add(rec("FR", i) for i in range(300))
    looks: list[int] = []

    async def poll(lanes: set[str]) -> list[Any]:
        looks.append(len(decided))
        if len(decided) >= 11 and not any(r.topic.endswith("JP") for r in decided):
            sched.add([rec("JP", 0)])
            return sched.next_batch(200, exclude=lanes)
        return []

    await app.process(sched.next_batch(200), budget_s=0.020, poll=poll)
    assert looks[:3] == [2, 4, 6]  # every 2 ms of deciding
    jp = decided.index(bare(rec("JP", 0)))
    assert jp == 12 and len(decided) == jp + 1  # decided next, then the commit
    assert len(sched) == 300 - jp


class LookingConsumer:
    """``getmany`` of the partitions asked for: ``records`` of those, or ``error``."""

    def __init__(self, records: list[Rec], error: Exception | None = None) -> None:
        self.records, self.error = records, error
        self.asked: list[tuple[object, ...]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("i24.out.FR", 0), TopicPartition("i24.out.JP", 0)}

    async def getmany(self, *tps: object, timeout_ms: int = 0, max_records: int = 0) -> Any:
        self.asked.append(tps)
        if self.error is not None:
            raise self.error
        return {
            tp: [r for r in self.records if (r.topic, r.partition) == tp]
            for tp in tps
            if any((r.topic, r.partition) == tp for r in self.records)
        }


async def test_the_look_for_waking_lanes_fetches_only_the_other_lanes(tmp_path: Path) -> None:
    app, _ = router_app(tmp_path)
    app.scheduler.add(rec("FR", i) for i in range(300))
    app.scheduler.next_batch(200)
    app._consumer = LookingConsumer([rec("JP", 0)])
    assert await app._waking({"FR"}) == [rec("JP", 0)]
    assert app._consumer.asked == [(TopicPartition("i24.out.JP", 0),)]
    assert app.scheduler.waking_end == 1


async def test_a_failed_look_leaves_the_batch_in_flight_alone(tmp_path: Path) -> None:
    """The consumer loop's own ``getmany`` meets the error next; the batch is finished."""
    app, _ = router_app(tmp_path)
    app._consumer = LookingConsumer([], error=RuntimeError("rebalancing"))
    assert await app._waking({"FR"}) == []
