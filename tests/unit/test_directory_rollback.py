"""Directory rollback and freeze: high-water marks, the manifest, start-up that never fails."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, World, make_world, seed

from i24net.directory import (
    MANIFEST_LABEL,
    Directory,
    DirectoryReader,
    DirectoryState,
    KeyRecord,
    Manifest,
    Outcome,
    StationRecord,
    Status,
    sign_manifest,
    sign_record,
    verify_manifest,
)
from i24net.directory._directory import LABEL
from i24net.errors import DirectoryError, Reason, VerificationError
from i24net.keys import RootSecrets

HOUR = 3_600_000


class Count:
    def __init__(self) -> None:
        self.c: Counter[str] = Counter()

    def __call__(self, o: Outcome) -> None:
        self.c[o.value] += 1


def reader(w: World, state: DirectoryState | None = None) -> tuple[DirectoryReader, Count]:
    n = Count()
    return DirectoryReader(w.root.public, w.store, state=state, clock=w.clock, on_outcome=n), n


def revoked(w: World, code: str = "FR", serial: int = 2) -> StationRecord:
    old = w.directory.record(code)
    return dataclasses.replace(
        old,
        serial=serial,
        status=Status.REVOKED,
        signing_keys=tuple(
            KeyRecord(k.key_id, k.public_key, k.valid_from_ms, None, Status.REVOKED, T0)
            for k in old.signing_keys
        ),
    )


def manifest(w: World, version: int, *, expires_ms: int = T0 + 24 * HOUR) -> bytes:
    m = w.directory.manifest(version=version, issued_ms=T0, expires_ms=expires_ms)
    return sign_manifest(m, w.root, w.store)


def trusts(d: Directory, code: str, w: World) -> bool:
    try:
        d.signing_key(code, w.secrets[code].signing_key_id, T0 - 1)
    except VerificationError:
        return False
    return True


# --- high-water marks ---------------------------------------------------------------


def test_a_lower_serial_is_skipped_and_counted_not_raised() -> None:
    w = make_world()
    old = w.directory.entries["FR"]
    new = sign_record(revoked(w), w.root, w.store)
    r, n = reader(w)
    for v in (old, new, old):
        r.offer(v)
    r.caught_up()
    assert n.c == {"applied": 2, "rollback": 1}
    assert r.directory.record("FR").serial == 2
    assert r.directory.entries["FR"] == new


def test_an_equal_serial_with_other_bytes_is_an_equivocation() -> None:
    w = make_world()
    rec = w.directory.record("FR")
    other = sign_record(dataclasses.replace(rec, name="someone else"), w.root, w.store)
    r, _ = reader(w)
    assert r.offer(w.directory.entries["FR"]) is Outcome.APPLIED
    assert r.offer(other) is Outcome.EQUIVOCATION
    assert r.offer(w.directory.entries["FR"]) is Outcome.UNCHANGED
    assert r.directory.record("FR").name == rec.name


def test_bad_entries_are_counted_and_start_up_goes_on() -> None:
    w = make_world()
    other = RootSecrets.from_seed(seed("other root"), created_ms=T0)
    foreign = sign_record(w.directory.record("JP"), other, w.store)
    flipped = bytearray(w.directory.entries["BR"])
    flipped[-1] ^= 1
    r, n = reader(w)
    values = [b"garbage", foreign, bytes(flipped), None, w.directory.entries["FR"]]
    for v in values:
        r.offer(v)
    r.caught_up()
    # signed by a root it does not trust: held for a rotation that may introduce it
    assert n.c == {
        "malformed": 1,
        "unknown_root": 1,
        "bad_signature": 1,
        "tombstone": 1,
        "applied": 1,
    }
    assert list(r.directory) == [w.directory.record("FR")]


def test_marks_persist_and_a_restart_refuses_the_older_entry(tmp_path: Path) -> None:
    w = make_world()
    old = w.directory.entries["FR"]
    new = sign_record(revoked(w), w.root, w.store)
    state = DirectoryState(tmp_path / "dir.sqlite3")
    r, _ = reader(w, state)
    r.offer(old)
    r.offer(new)
    r.caught_up()
    state.close()

    # Restart: the log still holds the history (old then new): old is superseded, not alarming.
    r, n = reader(w, DirectoryState(tmp_path / "dir.sqlite3"))
    r.offer(old)
    r.offer(new)
    r.caught_up()
    assert n.c == {"superseded": 1, "applied": 1}
    assert r.directory.record("FR").status is Status.REVOKED

    # Restart after compaction kept only a re-published old entry: FR is not trusted.
    r, n = reader(w, DirectoryState(tmp_path / "dir.sqlite3"))
    r.offer(old)
    r.offer(w.directory.entries["JP"])
    r.caught_up()
    assert n.c == {"superseded": 1, "applied": 1, "rollback": 1}
    assert "FR" not in r.directory and "JP" in r.directory
    with pytest.raises(VerificationError) as exc:
        r.directory.signing_key("FR", w.secrets["FR"].signing_key_id, T0 - 1)
    assert exc.value.reason is Reason.UNKNOWN_SENDER


def test_bound_directory_apply_goes_through_the_reader() -> None:
    """The router's tail calls ``directory.apply``: refused values raise, manifests are taken."""
    w = make_world()
    r, n = reader(w)
    r.caught_up()
    d = r.directory
    assert d.apply(w.directory.entries["FR"], w.root.public, w.store) is not None
    d.apply(sign_record(revoked(w), w.root, w.store), w.root.public, w.store)
    with pytest.raises(DirectoryError, match="rollback"):
        d.apply(w.directory.entries["FR"], w.root.public, w.store)
    assert d.apply(manifest(w, 1), w.root.public, w.store) is None
    assert r.version == 1 and n.c["manifest"] == 1 and n.c["rollback"] == 1


# --- the manifest -------------------------------------------------------------------


def test_manifest_signature_label_round_trip_and_forgeries() -> None:
    w = make_world()
    value = manifest(w, 7)
    m = verify_manifest(value, w.root.public, w.store)
    assert (m.version, sorted(m.stations)) == (7, ["BR", "FR", "GS", "JP"])
    assert m.stations["FR"].serial == 1
    assert MANIFEST_LABEL != LABEL
    # an entry signature cannot be passed off as a manifest's (distinct labels)
    body = w.store.encode("net.i24.DirectoryManifest", m.to_avro())
    cross = w.store.encode_single(
        "net.i24.DirectoryManifestEntry",
        {
            "manifest": body,
            "root_key_id": w.root.key_id,
            "signature": w.root.signing.sign(LABEL + body).signature,
        },
    )
    with pytest.raises(DirectoryError, match="signature"):
        verify_manifest(cross, w.root.public, w.store)
    with pytest.raises(DirectoryError):
        sign_manifest(Manifest(1, T0, T0, {}), w.root, w.store)  # expires when issued


def test_an_older_manifest_version_is_refused_also_after_a_restart(tmp_path: Path) -> None:
    w = make_world()
    v1, v2 = manifest(w, 1), manifest(w, 2)
    state = DirectoryState(tmp_path / "s.sqlite3")
    r, n = reader(w, state)
    for v in (*w.directory.entries.values(), v1, v2, v1):
        r.offer(v)
    r.caught_up()
    assert (n.c["manifest"], n.c["manifest_rollback"], r.version) == (2, 1, 2)
    state.close()
    r, n = reader(w, DirectoryState(tmp_path / "s.sqlite3"))
    assert r.version == 2  # known from the state before the topic is read
    assert r.offer(v1) is Outcome.MANIFEST_ROLLBACK
    assert r.offer(v2) is Outcome.MANIFEST_UNCHANGED
    other_v2 = sign_manifest(
        dataclasses.replace(verify_manifest(v2, w.root.public, w.store), expires_ms=T0 + 1),
        w.root,
        w.store,
    )
    assert r.offer(other_v2) is Outcome.EQUIVOCATION


def test_manifest_expiry_makes_the_directory_stale() -> None:
    w = make_world()
    r, _ = reader(w)
    for v in w.directory.entries.values():
        r.offer(v)
    r.caught_up()
    assert r.unprotected and not r.stale and r.expires_in_s() is None
    r.offer(manifest(w, 1, expires_ms=T0 + HOUR))
    assert not r.unprotected and not r.stale and r.expires_in_s() == 3600
    w.clock.advance(HOUR)
    assert r.stale and r.expires_in_s() == 0
    assert len(r.directory) == 4  # still in use: stale is reported, not enforced
    r.offer(manifest(w, 2, expires_ms=T0 + 3 * HOUR))
    assert not r.stale and r.expires_in_s() == 7200


def test_compacted_rollback_a_fresh_reader_does_not_trust_the_old_entry() -> None:
    """Compaction kept the re-published pre-revocation entry and the newest manifest."""
    w = make_world()
    old = w.directory.entries["FR"]
    w.directory.put(revoked(w))
    w.directory.sign(w.root, w.store)
    m2 = manifest(w, 2)
    compacted = [old, w.directory.entries["JP"], m2]  # the revoked serial 2 is gone
    for order in (compacted, compacted[::-1]):  # partitions: no order between keys
        r, _ = reader(w)
        for v in order:
            r.offer(v)
        r.caught_up()
        assert "FR" not in r.directory and not trusts(r.directory, "FR", w)
        assert "FR" in r.withheld and "serial 2" in r.withheld["FR"].why
        assert trusts(r.directory, "JP", w)
        # the current entry arrives: FR is back, revoked
        r.offer(w.directory.entries["FR"])
        assert "FR" not in r.withheld and r.directory.record("FR").status is Status.REVOKED


def test_equal_serial_with_another_digest_than_the_manifest_is_withheld() -> None:
    w = make_world()
    twin = sign_record(dataclasses.replace(w.directory.record("FR"), name="x"), w.root, w.store)
    r, _ = reader(w)
    r.offer(manifest(w, 1))
    r.offer(twin)
    r.caught_up()
    assert "FR" in r.withheld and "digest" in r.withheld["FR"].why
    r.offer(w.directory.entries["FR"])  # same serial: an equivocation against the reader's mark
    assert "FR" in r.withheld


def test_an_entry_newer_than_the_manifest_is_trusted() -> None:
    w = make_world()
    m1 = manifest(w, 1)
    r, _ = reader(w)
    r.offer(m1)
    r.offer(sign_record(revoked(w), w.root, w.store))
    r.caught_up()
    assert r.withheld == {} and r.directory.record("FR").serial == 2


def test_the_stored_manifest_protects_a_restart_when_the_topic_lost_it(tmp_path: Path) -> None:
    w = make_world()
    old = w.directory.entries["FR"]
    w.directory.put(revoked(w))
    w.directory.sign(w.root, w.store)
    state = DirectoryState(tmp_path / "s.sqlite3")
    r, _ = reader(w, state)
    r.offer(manifest(w, 3))
    r.caught_up()
    state.close()
    # the topic now shows only the old FR entry and no manifest; the state knows version 3
    r, _ = reader(w, DirectoryState(tmp_path / "s.sqlite3"))
    r.offer(old)
    r.caught_up()
    assert "FR" in r.withheld and not r.unprotected
