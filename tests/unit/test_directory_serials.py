"""Directory serials strictly increase; key ids are recomputed from the keys (issue 17, item 7).

Both are checks on records the GS root really signed: a signature says the
GS published a record, not that it is newer than the one held (the serial)
or that its key ids name its keys (a slip in the GS tooling, or a stolen
root key used to re-label keys, would otherwise go unnoticed).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, World, make_world

from i24net.directory import (
    Directory,
    DirectoryReader,
    KeyRecord,
    Outcome,
    StationRecord,
    check_key_ids,
    sign_record,
    verify_entry,
)
from i24net.errors import DirectoryError
from i24net.keys import key_digest, key_id, key_id_matches


def resigned(w: World, record: StationRecord) -> bytes:
    return sign_record(record, w.root, w.store)


def unbound(w: World, *entries: bytes) -> Directory:
    return Directory.from_entries(entries, w.root.public, w.store)


# --- serials ------------------------------------------------------------------------


def test_another_record_under_the_same_serial_is_refused() -> None:
    w = make_world()
    fr = w.directory.record("FR")
    d = unbound(w, w.directory.entries["FR"])
    other = resigned(w, dataclasses.replace(fr, name="renamed, serial unchanged"))
    with pytest.raises(DirectoryError, match="serial 1, the same as the current 1"):
        d.apply(other, w.root.public, w.store)
    assert d.record("FR") == fr
    assert d.entries["FR"] == w.directory.entries["FR"]


def test_the_same_serial_is_refused_in_either_order_at_load() -> None:
    w = make_world()
    fr = w.directory.record("FR")
    a = w.directory.entries["FR"]
    b = resigned(w, dataclasses.replace(fr, name="other"))
    for entries in ((a, b), (b, a)):
        with pytest.raises(DirectoryError, match="the same as the current"):
            unbound(w, *entries)


def test_a_lower_serial_is_refused_and_a_higher_one_accepted() -> None:
    w = make_world()
    fr = w.directory.record("FR")
    two = resigned(w, dataclasses.replace(fr, serial=2, name="two"))
    three = resigned(w, dataclasses.replace(fr, serial=3, name="three"))
    d = unbound(w, three)
    with pytest.raises(DirectoryError, match="older than the current 3"):
        d.apply(two, w.root.public, w.store)
    d = unbound(w, w.directory.entries["FR"], two)
    assert d.record("FR").name == "two"


def test_the_very_entry_held_again_changes_nothing() -> None:
    w = make_world()
    entry = w.directory.entries["FR"]
    d = unbound(w, entry)
    assert d.apply(entry, w.root.public, w.store) == w.directory.record("FR")
    assert d.entries["FR"] == entry


def test_the_reader_refuses_another_record_under_the_held_serial() -> None:
    w = make_world()
    fr = w.directory.record("FR")
    r = DirectoryReader(w.root.public, w.store, clock=w.clock)
    assert r.offer(w.directory.entries["FR"]) is Outcome.APPLIED
    assert r.offer(resigned(w, dataclasses.replace(fr, name="x"))) is Outcome.EQUIVOCATION
    with pytest.raises(DirectoryError):
        r.directory.apply(resigned(w, dataclasses.replace(fr, name="y")), w.root.public, w.store)
    assert r.directory.record("FR") == fr


# --- key ids ------------------------------------------------------------------------


def relabelled(w: World, code: str, **keys: tuple[KeyRecord, ...]) -> StationRecord:
    return dataclasses.replace(w.directory.record(code), serial=2, **keys)


def test_key_ids_of_genuine_records_match() -> None:
    w = make_world()
    for rec in w.directory:
        check_key_ids(rec)
        assert verify_entry(w.directory.entries[rec.station], w.root.public, w.store) == rec


def test_a_key_id_of_another_key_is_refused() -> None:
    """FR's encryption key stated under the id of FR's signing key (both real ids of FR)."""
    w = make_world()
    fr = w.directory.record("FR")
    enc = fr.encryption_keys[0]
    bad = relabelled(
        w, "FR", encryption_keys=(dataclasses.replace(enc, key_id=fr.signing_keys[0].key_id),)
    )
    entry = resigned(w, bad)
    with pytest.raises(DirectoryError, match=r"encryption key id .* does not match"):
        verify_entry(entry, w.root.public, w.store)
    d = unbound(w, w.directory.entries["FR"])
    with pytest.raises(DirectoryError, match="does not match"):
        d.apply(entry, w.root.public, w.store)
    assert d.record("FR") == fr


def test_another_stations_key_under_its_own_id_is_refused() -> None:
    """JP's real signing key and key id copied into FR's record: the station part differs."""
    w = make_world()
    jp_key = w.directory.record("JP").signing_keys[0]
    bad = relabelled(w, "FR", signing_keys=(jp_key,))
    with pytest.raises(DirectoryError, match="signing key id 'JP-"):
        unbound(w, resigned(w, bad))


def test_the_reader_counts_a_bad_key_id_as_malformed_and_keeps_the_station_out() -> None:
    w = make_world()
    jp = w.directory.record("JP")
    k = jp.signing_keys[0]
    bad = resigned(w, relabelled(w, "JP", signing_keys=(dataclasses.replace(k, key_id="JP-1"),)))
    r = DirectoryReader(w.root.public, w.store, clock=w.clock)
    assert r.offer(bad) is Outcome.MALFORMED
    assert "JP" not in r.directory
    assert r.offer(w.directory.entries["JP"]) is Outcome.APPLIED
    assert r.offer(bad) is Outcome.MALFORMED  # refused at serial 2 too, not applied
    assert r.directory.record("JP") == jp


def test_key_id_matches_recomputes_station_and_digest_and_wants_a_real_day() -> None:
    pub = bytes(range(32))
    good = key_id("RB-HARARE", pub, T0)
    assert good.endswith(key_digest(pub))
    assert key_id_matches(good, "RB-HARARE", pub)
    assert not key_id_matches(good, "RB", pub)
    assert not key_id_matches(good, "RB-HARARE", bytes(32))
    digest = key_digest(pub)
    for day in ("20261399", "2026111", "2026-111", "abcdefgh", ""):
        assert not key_id_matches(f"RB-HARARE-{day}-{digest}", "RB-HARARE", pub)
