"""Fair scheduler: precedence first, senders in turn, no starvation by a flood."""

from __future__ import annotations

from dataclasses import dataclass, field

from i24net.router.scheduler import FairScheduler


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes], ...] = field(default=())


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
