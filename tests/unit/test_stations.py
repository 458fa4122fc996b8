"""Station identities and regional groups."""

from __future__ import annotations

import pytest

from i24net.errors import UnknownStationError
from i24net.stations import (
    GS,
    MEMBER_COUNTRIES,
    Region,
    StationKind,
    all_stations,
    region_members,
    region_of,
    station,
)


def test_196_members_with_the_documented_rule() -> None:
    assert len(MEMBER_COUNTRIES) == 196
    assert {"PS", "VA", "AW", "CW", "SX", "PW", "KI"} <= MEMBER_COUNTRIES
    assert not {"KP", "TV", "XK", "TW", "HK", "GS"} & MEMBER_COUNTRIES


def test_every_member_has_a_region_and_groups_partition_them() -> None:
    groups = [region_members(r.value) for r in Region]
    assert sum(map(len, groups)) == 196
    assert frozenset().union(*groups) == MEMBER_COUNTRIES
    assert region_of("FR") is Region.EUROPE and region_of("EG") is Region.MIDDLE_EAST_NORTH_AFRICA
    assert region_of("JP") is Region.ASIA_SOUTH_PACIFIC and region_of("BR") is Region.AMERICAS


def test_other_stations() -> None:
    s = all_stations()
    assert s[GS].kind is StationKind.GENERAL_SECRETARIAT
    assert s["RB-NAIROBI"].kind is StationKind.REGIONAL_BUREAU
    assert s["UN-NY"].kind is StationKind.REPRESENTATIVE_OFFICE
    assert station("FR").region is Region.EUROPE
    with pytest.raises(UnknownStationError):
        station("ZZ")
    with pytest.raises(UnknownStationError):
        region_members("ATLANTIS")
