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
