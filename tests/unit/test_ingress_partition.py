"""The gateways' choice of ingress partition: by sender (docs/topics.md, issue 12)."""

from __future__ import annotations

import re
from collections import Counter

from aiokafka.partitioner import DefaultPartitioner

from i24net.gateway.drain import sender_partition
from i24net.router.settings import Topics
from i24net.stations import all_stations


def test_a_station_always_writes_the_partition_kafka_would_give_its_code() -> None:
    parts = list(range(12))
    for code in ("FR", "JP", "GS", "US", "BR"):
        assert sender_partition(code, parts) == DefaultPartitioner()(code.encode(), parts, parts)
        assert sender_partition(code, reversed(parts)) == sender_partition(code, parts)


def test_every_station_code_spreads_over_the_twelve_partitions() -> None:
    """What docs/topics.md states about hash collisions: every partition is used, by
    8 to 25 of the stations (the figures to revisit when the station list changes)."""
    per = Counter(sender_partition(code, range(12)) for code in all_stations())
    assert set(per) == set(range(12))
    assert (min(per.values()), max(per.values())) == (8, 25)


def test_the_routers_subscription_with_and_without_the_legacy_topics() -> None:
    t = Topics(prefix="p.")
    ingress_only, both = t.out_pattern(legacy=False), t.out_pattern(legacy=True)
    names = ["p.i24.out", "p.i24.out.FR", "p.i24.outX", "p.i24.out.", "q.i24.out", "p.i24.in.FR"]
    assert [n for n in names if re.match(ingress_only, n)] == ["p.i24.out"]
    assert [n for n in names if re.match(both, n)] == ["p.i24.out", "p.i24.out.FR"]
