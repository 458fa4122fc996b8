"""Directory signatures, rotation, revocation and lookups."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, make_world, seed, station_secrets

from i24net.directory import Directory, KeyRecord, Status
from i24net.errors import DirectoryError, Reason, UnknownStationError, VerificationError
from i24net.keys import RootSecrets

DAY = 86_400_000


def test_signed_entries_verify_and_round_trip() -> None:
    w = make_world()
    d = Directory.from_entries(w.directory.entries.values(), w.root.public, w.store)
    assert list(d) == list(w.directory)
    d.verify(w.root.public, w.store)


def test_wrong_root_and_tampered_entry_are_refused() -> None:
    w = make_world()
    other = RootSecrets.from_seed(seed("other root"), created_ms=T0)
    with pytest.raises(DirectoryError):
        w.directory.verify(other.public, w.store)
    entry = bytearray(w.directory.entries["FR"])
    entry[40] ^= 1
    with pytest.raises(DirectoryError):
        Directory.from_entries([bytes(entry)], w.root.public, w.store)
    forged = dataclasses.replace(other.public, key_id=w.root.key_id)
    with pytest.raises(DirectoryError):
        Directory.from_entries(w.directory.entries.values(), forged, w.store)


def test_rollback_to_a_lower_serial_is_refused() -> None:
    w = make_world()
    old = w.directory.entries["FR"]
    d = Directory.from_entries([old], w.root.public, w.store)
    newer = dataclasses.replace(w.directory.record("FR"), serial=2)
    w.directory.put(newer)
    w.directory.sign(w.root, w.store)
    d.apply(w.directory.entries["FR"], w.root.public, w.store)
    with pytest.raises(DirectoryError):
        d.apply(old, w.root.public, w.store)


def test_rotation_overlap_both_keys_verify() -> None:
    w = make_world()
    rec = w.directory.record("FR")
    old = dataclasses.replace(rec.signing_keys[0], valid_until_ms=T0 + DAY)
    new_fr = station_secrets("FR", gen=1)
    new = KeyRecord(new_fr.signing_key_id, bytes(new_fr.signing.verify_key), T0)
    w.directory.put(dataclasses.replace(rec, signing_keys=(old, new), serial=2))
    assert w.directory.signing_key("FR", old.key_id, T0 + 1)
    assert w.directory.signing_key("FR", new.key_id, T0 + 1)
    with pytest.raises(VerificationError) as e:
        w.directory.signing_key("FR", old.key_id, T0 + DAY)
    assert e.value.reason is Reason.EXPIRED_KEY
    assert w.directory.signing_key("FR", new.key_id, T0 + DAY)


def test_revocation_applies_from_revocation_time_on() -> None:
    w = make_world()
    rec = w.directory.record("FR")
    k = dataclasses.replace(rec.signing_keys[0], status=Status.REVOKED, revoked_at_ms=T0)
    w.directory.put(dataclasses.replace(rec, signing_keys=(k,)))
    assert w.directory.signing_key("FR", k.key_id, T0 - 1)
    with pytest.raises(VerificationError) as e:
        w.directory.signing_key("FR", k.key_id, T0)
    assert e.value.reason is Reason.REVOKED_KEY


def test_suspended_station_and_unknowns() -> None:
    w = make_world()
    rec = w.directory.record("FR")
    w.directory.put(dataclasses.replace(rec, status=Status.SUSPENDED))
    with pytest.raises(VerificationError) as e:
        w.directory.signing_key("FR", rec.signing_keys[0].key_id, T0)
    assert e.value.reason is Reason.SUSPENDED_KEY
    with pytest.raises(VerificationError) as e:
        w.directory.signing_key("ZZ", "x", T0)
    assert e.value.reason is Reason.UNKNOWN_SENDER
    with pytest.raises(VerificationError) as e:
        w.directory.signing_key("JP", "JP-nope", T0)
    assert e.value.reason is Reason.UNKNOWN_KEY
    with pytest.raises(UnknownStationError):
        w.directory.record("ZZ")


def test_current_encryption_key_prefers_the_newest_valid_key() -> None:
    w = make_world()
    rec = w.directory.record("JP")
    new_jp = station_secrets("JP", gen=1)
    later = KeyRecord(new_jp.encryption_key_id, bytes(new_jp.encryption.public_key), T0 + DAY)
    w.directory.put(dataclasses.replace(rec, encryption_keys=(*rec.encryption_keys, later)))
    assert w.directory.current_encryption_key("JP", T0).key_id == rec.encryption_keys[0].key_id
    assert w.directory.current_encryption_key("JP", T0 + DAY).key_id == later.key_id


# --- envelope v2 key types ----------------------------------------------------


def _v2_world() -> tuple[Directory, dict[str, object]]:
    import dataclasses as dc

    from i24net.directory import StationRecord
    from i24net.keys import KemSuite, StationSecrets
    from i24net.stations import all_stations

    st = all_stations()
    keys = {
        "FR": StationSecrets.generate("FR", now_ms=T0, kem=None),
        "JP": StationSecrets.generate("JP", now_ms=T0, kem=KemSuite.X25519),
        "BR": StationSecrets.generate("BR", now_ms=T0),
    }
    records = [
        StationRecord.for_station(st[c], [s.public()], valid_from_ms=T0 - DAY, issued_ms=T0)
        for c, s in keys.items()
    ]
    # BR drops its v1 key: a v2-only station
    records[2] = dc.replace(records[2], encryption_keys=records[2].encryption_keys[1:])
    return Directory(records), dict(keys)


def test_v2_keys_versions_and_current_key_per_version() -> None:
    from i24net.keys import KemSuite

    w = make_world()
    d, keys = _v2_world()
    root = w.root
    d.sign(root, w.store)
    d = Directory.from_entries(d.entries.values(), root.public, w.store)  # survives a reload
    assert d.envelope_versions("FR", T0) == frozenset({1})
    assert d.envelope_versions("JP", T0) == frozenset({1, 2})
    assert d.envelope_versions("BR", T0) == frozenset({2})
    assert d.envelope_versions("XX", T0) == frozenset()
    jp1 = d.current_encryption_key("JP", T0)
    jp2 = d.current_encryption_key("JP", T0, version=2)
    assert (jp1.suite, jp2.suite) == (None, KemSuite.X25519)
    assert jp2.key_id == keys["JP"].kem_key_id  # type: ignore[attr-defined]
    assert d.current_encryption_key("BR", T0, version=2).suite is KemSuite.MLKEM768_X25519
    with pytest.raises(VerificationError) as exc:
        d.current_encryption_key("FR", T0, version=2)
    assert exc.value.reason is Reason.EXPIRED_KEY
    with pytest.raises(VerificationError):
        d.current_encryption_key("BR", T0, version=1)


@pytest.mark.parametrize(
    "public_key",
    [
        bytes(31),
        bytes(33),
        b"\x01" + bytes(33),
        b"\x02" + bytes(32),
        b"\x03" + bytes(32),
        b"\x01" + bytes(32),
        b"\x01" + bytes([1]) + bytes(31),
    ],
    ids=["31", "33", "x25519-long", "hybrid-short", "unknown-tag", "low-order-0", "low-order-1"],
)
def test_an_encryption_key_of_another_length_or_tag_is_refused(public_key: bytes) -> None:
    w = make_world()
    r = w.directory.record("JP")
    from i24net.directory._directory import sign_record
    from i24net.keys import key_id

    bad = KeyRecord(key_id("JP", public_key, T0), public_key, T0 - DAY)
    r2 = dataclasses.replace(r, encryption_keys=(*r.encryption_keys, bad), serial=2)
    entry = sign_record(r2, w.root, w.store)  # signed by the root, refused by every reader
    with pytest.raises(DirectoryError, match="encryption key must be"):
        Directory.from_entries([entry], w.root.public, w.store)
    with pytest.raises(DirectoryError):
        Directory([r2])
