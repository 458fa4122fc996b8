"""The soak's checker (bench/soak_check.py) reports what it must: a checker that cannot
see a loss, a duplicate or a hostile record that got through proves nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the bench/ package

from bench.soak_check import (
    HOSTILE_CLASSES,
    Hostile,
    check_deliveries,
    check_hostile,
    duplicates_among_others,
    hostile_key,
    max_stall,
)

ACCEPTED = {"m1": {"JP"}, "m2": {"JP", "BR", "DE"}, "m3": {"FR"}}


def test_every_accepted_message_once_at_each_recipient_is_clean() -> None:
    delivered = [("JP", "m1"), ("JP", "m2"), ("BR", "m2"), ("DE", "m2"), ("FR", "m3")]
    report = check_deliveries(ACCEPTED, [*delivered, ("FR", "notice-1")])
    assert report.ok
    assert (report.messages, report.expected_deliveries, report.delivered) == (3, 5, 5)


def test_a_loss_and_a_duplicate_are_reported() -> None:
    delivered = [("JP", "m1"), ("JP", "m1"), ("JP", "m2"), ("DE", "m2"), ("FR", "m3")]
    report = check_deliveries(ACCEPTED, delivered)
    assert not report.ok
    assert report.lost == [("m2", "BR")]
    assert report.duplicated == [("m1", "JP", 2)]
    assert report.summary()["lost"] == 1 and report.summary()["duplicated"] == 1


def test_a_message_at_a_station_it_was_not_for_is_reported() -> None:
    delivered = [("JP", "m1"), ("BR", "m1"), ("JP", "m2"), ("BR", "m2"), ("DE", "m2")]
    report = check_deliveries(ACCEPTED, [*delivered, ("FR", "m3")])
    assert report.misdelivered == [("m1", "BR")]
    assert not report.ok


def test_a_notice_committed_twice_is_a_duplicate_too() -> None:
    delivered = [("FR", "n1"), ("FR", "n1"), ("FR", "n2"), ("JP", "m1")]
    assert duplicates_among_others(ACCEPTED, delivered) == {"FR/n1": 2}


def hostile(cls: str, n: int, mid: str | None = None) -> Hostile:
    return Hostile(hostile_key(cls, n), cls, "FR", mid)


def test_each_hostile_record_refused_once_with_its_reason_is_clean() -> None:
    injected = [hostile(c, i) for i, c in enumerate(HOSTILE_CLASSES)]
    dlq = [(h.key, h.expected) for h in injected] + [("m9", "replayed"), (None, "malformed")]
    report = check_hostile(injected, dlq, delivered_ids=["m1"])
    assert report.ok
    assert report.injected == report.refused == len(HOSTILE_CLASSES)


def test_hostile_records_missing_refused_wrongly_twice_or_delivered_are_reported() -> None:
    missing = hostile("garbage", 1)
    wrong = hostile("tampered", 2, "t2")
    twice = hostile("null_header", 3, "n3")
    delivered = hostile("expired", 4, "e4")
    dlq = [
        (wrong.key, "malformed"),
        (twice.key, "malformed"),
        (twice.key, "malformed"),
        (delivered.key, "expired"),
        (hostile_key("replay", 99), "replayed"),
    ]
    report = check_hostile([missing, wrong, twice, delivered], dlq, delivered_ids=["e4"])
    assert not report.ok
    c = report.classes
    assert c["garbage"].missing == 1 and not c["garbage"].ok
    assert c["tampered"].wrong_reason == {"malformed": 1} and c["tampered"].refused == 0
    assert c["null_header"].dead_lettered_twice == 1 and not c["null_header"].ok
    assert c["expired"].delivered == 1 and not c["expired"].ok
    assert report.unknown_dlq_keys == 1


def test_max_stall_is_the_longest_gap_without_delivery_while_something_was_pending() -> None:
    accepted = {"a": (0.0, ["JP"]), "b": (1.0, ["JP", "BR"]), "c": (20.0, ["JP"])}
    delivered = {("JP", "a"): 0.5, ("JP", "b"): 2.0, ("BR", "b"): 9.0, ("JP", "c"): 21.0}
    # pending from 0.0: deliveries at 0.5, 2.0, 9.0 (gap 7.0); idle 9..20; then 1.0
    assert max_stall(accepted, delivered, end=30.0) == (7.0, 2.0)


def test_a_delivery_never_seen_stalls_until_the_end() -> None:
    accepted = {"a": (0.0, ["JP"]), "b": (1.0, ["JP"])}
    # nothing pending between 0.5 (a delivered) and 1.0 (b accepted)
    assert max_stall(accepted, {("JP", "a"): 0.5}, end=100.0) == (99.0, 1.0)


def test_a_delivery_seen_before_its_acceptance_returned_is_no_stall() -> None:
    assert max_stall({"a": (5.0, ["JP"])}, {("JP", "a"): 4.0}, end=10.0)[0] == 0.0
    assert max_stall({}, {}, end=10.0) == (0.0, None)


@pytest.mark.parametrize("cls", sorted(HOSTILE_CLASSES))
def test_hostile_keys_name_their_class(cls: str) -> None:
    h = hostile(cls, 7)
    assert h.key == f"soak-hostile:{cls}:7" and h.expected == HOSTILE_CLASSES[cls].value
