"""Station identities: the 196 member NCBs, the GS, regional bureaus, UN/EU offices.

**Member countries (196).** pycountry (ISO 3166-1) has no membership data, so
the set is derived by a written rule, not typed by hand:

    members = ISO 3166-1 alpha-2 codes in pycountry
              minus dependent territories and other non-sovereign entries (_TERRITORIES)
              minus KP (North Korea) and TV (Tuvalu): UN members that are not members
              minus TW, EH: not members
              plus  AW, CW, SX: Aruba, Curaçao, Sint Maarten, admitted as members
                    although non-sovereign (the former Netherlands Antilles)

(GS, South Georgia, is a territory: the code is free for the General Secretariat),
which gives the 193 UN member states - KP - TV + VA (Holy See, member since
2008) + PS (Palestine, 2017) + AW + CW + SX = 196 (Palau, admitted 2023, was
the 196th). Kosovo (XK) is **not** a member: its applications were refused
(2015, 2018), so it is not a station. The module-level assertion keeps the
count honest when pycountry changes.

**Regional groups** (recipients ``REGION``): pycountry carries no region, and
no maintained UN M49 package is installed, so ``_REGION_OF`` below is a
compact table: UN M49 regions (Africa, Americas, Asia, Europe, Oceania),
regrouped into the organisation's five groups, with North Africa and
Western Asia's Arab states moved to MIDDLE-EAST-NORTH-AFRICA; Asia and
Oceania form ASIA-SOUTH-PACIFIC (the default of the table).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import pycountry

from i24net.errors import UnknownStationError


class StationKind(enum.StrEnum):
    NCB = "NCB"
    GENERAL_SECRETARIAT = "GENERAL_SECRETARIAT"
    REGIONAL_BUREAU = "REGIONAL_BUREAU"
    REPRESENTATIVE_OFFICE = "REPRESENTATIVE_OFFICE"


class Region(enum.StrEnum):
    AFRICA = "AFRICA"
    AMERICAS = "AMERICAS"
    ASIA_SOUTH_PACIFIC = "ASIA-SOUTH-PACIFIC"
    EUROPE = "EUROPE"
    MIDDLE_EAST_NORTH_AFRICA = "MIDDLE-EAST-NORTH-AFRICA"


ALL = "ALL"
"""The recipients keyword for every station."""
GS = "GS"
"""The General Secretariat's station code (the router)."""


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TERRITORIES = _codes(
    "AI AQ AS AX BL BM BQ BV CC CK CX FK FO GF GG GI GL GP GS GU HK HM IM IO JE KY MF MO MP "
    "MQ MS NC NF NU PF PM PN PR RE SH SJ TC TF TK UM VG VI WF YT"
)
_NOT_MEMBERS = frozenset({"KP", "TV", "TW", "EH"})

_MENA = _codes("DZ BH EG IQ JO KW LB LY MA MR OM PS QA SA SY TN AE YE")
_AMERICAS = _codes(
    "AG AR AW BB BO BR BS BZ CA CL CO CR CU CW DM DO EC GD GT GY HN HT JM KN LC MX NI PA PE "
    "PY SR SV SX TT US UY VC VE"
)
_EUROPE = _codes(
    "AD AL AM AT AZ BA BE BG BY CH CY CZ DE DK EE ES FI FR GB GE GR HR HU IE IS IL IT LI LT "
    "LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SK SM TR UA VA"
)
_AFRICA = _codes(
    "AO BF BI BJ BW CD CF CG CI CM CV DJ ER ET GA GH GM GN GQ GW KE KM LR LS MG ML MU MW MZ "
    "NA NE NG RW SC SD SL SN SO SS ST SZ TD TG TZ UG ZA ZM ZW"
)
# Everything else (Asia outside MENA, Oceania) is ASIA-SOUTH-PACIFIC.


def _members() -> frozenset[str]:
    codes = {c.alpha_2 for c in pycountry.countries}
    return frozenset((codes - _TERRITORIES - _NOT_MEMBERS) | {"AW", "CW", "SX"})


MEMBER_COUNTRIES: frozenset[str] = _members()
"""ISO 3166-1 alpha-2 codes of the 196 member countries' NCBs."""
assert len(MEMBER_COUNTRIES) == 196, len(MEMBER_COUNTRIES)


def region_of(code: str) -> Region:
    """The regional group of a member country's NCB."""
    if code not in MEMBER_COUNTRIES:
        raise UnknownStationError(f"{code!r} is not a member country code")
    for members, region in (
        (_MENA, Region.MIDDLE_EAST_NORTH_AFRICA),
        (_AMERICAS, Region.AMERICAS),
        (_EUROPE, Region.EUROPE),
        (_AFRICA, Region.AFRICA),
    ):
        if code in members:
            return region
    return Region.ASIA_SOUTH_PACIFIC


@dataclass(frozen=True, slots=True)
class Station:
    code: str
    name: str
    kind: StationKind
    region: Region | None = None


REGIONAL_BUREAUS: dict[str, str] = {
    "RB-ABIDJAN": "Regional Bureau Abidjan",
    "RB-BUENOS-AIRES": "Regional Bureau Buenos Aires",
    "RB-EL-SALVADOR": "Regional Bureau San Salvador",
    "RB-HARARE": "Regional Bureau Harare",
    "RB-NAIROBI": "Regional Bureau Nairobi",
    "RB-YAOUNDE": "Regional Bureau Yaoundé",
    "RB-BANGKOK": "Liaison Office Bangkok",
}
REPRESENTATIVE_OFFICES: dict[str, str] = {
    "UN-NY": "Special Representative to the United Nations, New York",
    "EU-BRUSSELS": "Special Representative to the European Union, Brussels",
}


def _country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return str(getattr(country, "common_name", None) or getattr(country, "name", code))


def all_stations() -> dict[str, Station]:
    """Every station, keyed by code: 196 NCBs, GS, regional bureaus, representative offices."""
    out = {
        code: Station(code, f"NCB {_country_name(code)}", StationKind.NCB, region_of(code))
        for code in sorted(MEMBER_COUNTRIES)
    }
    out[GS] = Station(GS, "General Secretariat, Lyon", StationKind.GENERAL_SECRETARIAT)
    for code, name in REGIONAL_BUREAUS.items():
        out[code] = Station(code, name, StationKind.REGIONAL_BUREAU)
    for code, name in REPRESENTATIVE_OFFICES.items():
        out[code] = Station(code, name, StationKind.REPRESENTATIVE_OFFICE)
    return out


def station(code: str) -> Station:
    try:
        return all_stations()[code]
    except KeyError:
        raise UnknownStationError(f"unknown station code {code!r}") from None


def region_members(region: str) -> frozenset[str]:
    """NCB codes of a regional group (raises UnknownStationError for an unknown group)."""
    try:
        r = Region(region)
    except ValueError:
        raise UnknownStationError(f"unknown regional group {region!r}") from None
    return frozenset(c for c in MEMBER_COUNTRIES if region_of(c) is r)
