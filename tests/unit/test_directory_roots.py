"""Trusted roots by key id and root rotation: what a reader learns, and what it refuses."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import T0, World, make_world, seed

from i24net.cli import main
from i24net.directory import (
    MANIFEST_KEY,
    DirectoryReader,
    DirectoryState,
    Outcome,
    StationRecord,
    sign_manifest,
    sign_record,
    verify_manifest,
)
from i24net.directory.reader import directory_from_entries, learn_rotation_files
from i24net.directory.roots import (
    POSSESSION_LABEL,
    ROTATION_SCHEMA,
    Roots,
    TrustedRoot,
    load_roots,
    read_rotation,
    sign_rotation,
)
from i24net.errors import DirectoryError, KeyStoreError, RetiredRootError, UnknownRootError
from i24net.keys import ROOT_NAME, RootSecrets, load_root, save_root

HOUR = 3_600_000
OVERLAP_END = T0 + 48 * HOUR


def new_root(label: str = "root-2") -> RootSecrets:
    return RootSecrets.from_seed(seed(label), created_ms=T0)


class Count:
    def __init__(self) -> None:
        self.c: Counter[str] = Counter()

    def __call__(self, o: Outcome) -> None:
        self.c[o.value] += 1


def reader(
    w: World, roots: Roots | None = None, state: DirectoryState | None = None
) -> tuple[DirectoryReader, Count]:
    n = Count()
    trusted = roots if roots is not None else Roots.of(w.root.public)
    return DirectoryReader(trusted, w.store, state=state, clock=w.clock, on_outcome=n), n


def rotation(
    w: World,
    new: RootSecrets,
    old: RootSecrets | None = None,
    *,
    until: int = OVERLAP_END,
    issued: int = T0,
) -> bytes:
    return sign_rotation(
        old or w.root,
        new,
        w.store,
        new_valid_from_ms=issued,
        old_valid_until_ms=until,
        issued_ms=issued,
    )


def resigned(w: World, code: str, root: RootSecrets, *, serial: int = 2, issued: int = T0) -> bytes:
    rec = dataclasses.replace(w.directory.record(code), serial=serial, issued_ms=issued)
    return sign_record(rec, root, w.store)


def record(w: World, code: str, r: DirectoryReader) -> StationRecord:
    return r.directory.record(code)


# --- a set of roots -----------------------------------------------------------------


def test_an_entry_is_accepted_from_any_root_of_the_set_valid_at_its_issued_ms() -> None:
    w = make_world()
    second = new_root()
    roots = Roots([w.root.public, TrustedRoot(second.key_id, second.public.public_key, T0)])
    r, n = reader(w, roots)
    assert r.offer(w.directory.entries["FR"]) is Outcome.APPLIED
    assert r.offer(resigned(w, "JP", second)) is Outcome.APPLIED
    # the second root is valid from T0 only: a record it signed as issued before is refused
    assert r.offer(resigned(w, "BR", second, issued=T0 - 1)) is Outcome.BAD_SIGNATURE
    assert "BR" not in r.directory
    assert n.c == {"applied": 2, "bad_signature": 1}


def test_root_files_one_or_several_with_windows_and_recomputed_ids(tmp_path: Path) -> None:
    w = make_world()
    second = new_root()
    _, one = save_root(w.root, tmp_path / "one")
    _, two = save_root(second, tmp_path / "two")
    data = json.loads(two.read_text())
    two.write_text(json.dumps({**data, "valid_from_ms": T0, "valid_until_ms": T0 + HOUR}))
    assert [r.key_id for r in load_roots([one])] == [w.root.key_id]  # a set of one
    roots = load_roots([one, two])
    assert roots.get(second.key_id) == TrustedRoot(
        second.key_id, second.public.public_key, T0, T0 + HOUR
    )
    with pytest.raises(RetiredRootError):
        roots.check(second.key_id, T0 + HOUR, None, "x")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**data, "key_id": w.root.key_id}))  # not this key's id
    with pytest.raises(KeyStoreError, match="does not match its key"):
        load_roots([bad])
    with pytest.raises(KeyStoreError, match="given twice"):
        load_roots([one, one])


# --- rotation: learning the new root ---------------------------------------------------


def test_a_reader_trusting_the_old_root_learns_the_new_one_from_the_rotation() -> None:
    w = make_world()
    new = new_root()
    r, n = reader(w)
    assert r.offer(w.directory.entries["FR"]) is Outcome.APPLIED
    # the new root's entry arrives first (another partition): held, not lost
    assert r.offer(resigned(w, "FR", new)) is Outcome.UNKNOWN_ROOT
    assert r.directory.record("FR").serial == 1
    assert r.offer(rotation(w, new)) is Outcome.ROOT_ROTATION
    assert r.directory.record("FR").serial == 2  # released and applied
    assert r.roots.get(new.key_id) == TrustedRoot(new.key_id, new.public.public_key, T0)
    old = r.roots.get(w.root.key_id)
    assert old is not None and (old.valid_until_ms, old.successor) == (OVERLAP_END, new.key_id)
    assert r.offer(rotation(w, new)) is Outcome.UNCHANGED
    # during the overlap both roots sign
    assert r.offer(resigned(w, "JP", w.root)) is Outcome.APPLIED
    assert n.c == {"applied": 3, "unknown_root": 1, "root_rotation": 1, "unchanged": 1}


def test_after_the_overlap_the_old_root_signs_nothing_new() -> None:
    w = make_world()
    new = new_root()
    r, n = reader(w)
    assert r.offer(w.directory.entries["FR"]) is Outcome.APPLIED
    assert r.offer(rotation(w, new)) is Outcome.ROOT_ROTATION
    # issued after the old root's window: refused whatever the clock says
    late = resigned(w, "JP", w.root, issued=OVERLAP_END)
    assert r.offer(late) is Outcome.RETIRED_ROOT
    w.clock.now_ms = OVERLAP_END
    # back-dated into the old window by whoever kept the old secret: refused too
    assert r.offer(resigned(w, "JP", w.root, issued=T0 + 1)) is Outcome.RETIRED_ROOT
    m = w.directory.manifest(version=9, issued_ms=T0, expires_ms=OVERLAP_END + HOUR)
    assert r.offer(sign_manifest(m, w.root, w.store)) is Outcome.RETIRED_ROOT
    # what was accepted before stays; the new root goes on
    assert r.offer(w.directory.entries["FR"]) is Outcome.UNCHANGED
    assert r.offer(resigned(w, "JP", new, issued=OVERLAP_END)) is Outcome.APPLIED
    assert r.directory.record("JP").serial == 2
    assert n.c["retired_root"] == 3


def test_a_restarted_reader_keeps_the_rotation_without_the_topic(tmp_path: Path) -> None:
    w = make_world()
    new = new_root()
    state = DirectoryState(tmp_path / "dir.sqlite3")
    r, _ = reader(w, state=state)
    r.offer(rotation(w, new))
    m = w.directory.manifest(version=3, issued_ms=T0, expires_ms=T0 + HOUR)
    assert r.offer(sign_manifest(m, new, w.store)) is Outcome.MANIFEST
    state.close()
    w.clock.now_ms = OVERLAP_END
    again, n = reader(w, state=DirectoryState(tmp_path / "dir.sqlite3"))
    assert again.version == 3  # the stored manifest, signed by the new root, verifies
    assert again.offer(resigned(w, "FR", new, issued=OVERLAP_END)) is Outcome.APPLIED
    assert again.offer(resigned(w, "JP", w.root, issued=T0 + 1)) is Outcome.RETIRED_ROOT
    assert n.c == {"applied": 1, "retired_root": 1}


def test_the_retired_roots_history_at_start_up_is_superseded_not_an_alarm(
    tmp_path: Path,
) -> None:
    w = make_world()
    new = new_root()
    state = DirectoryState(tmp_path / "dir.sqlite3")
    r, _ = reader(w, state=state)
    old_fr = w.directory.entries["FR"]
    for value in (old_fr, rotation(w, new), resigned(w, "FR", new)):
        r.offer(value)
    r.caught_up()
    state.close()
    w.clock.now_ms = OVERLAP_END  # restart after the overlap: the log still holds it all
    again, n = reader(w, state=DirectoryState(tmp_path / "dir.sqlite3"))
    for value in (old_fr, rotation(w, new), resigned(w, "FR", new)):
        again.offer(value)
    again.caught_up()
    assert n.c == {"superseded": 1, "unchanged": 1, "applied": 1}
    assert again.directory.record("FR").serial == 2


# --- rotation: refusals ---------------------------------------------------------------


def test_a_rotation_not_signed_by_a_trusted_root_is_refused() -> None:
    w = make_world()
    stranger, new = new_root("stranger"), new_root()
    r, n = reader(w)
    assert r.offer(rotation(w, new, stranger)) is Outcome.UNKNOWN_ROOT
    assert new.key_id not in r.roots
    assert r.offer(resigned(w, "FR", new)) is Outcome.UNKNOWN_ROOT
    assert "FR" not in r.directory
    with pytest.raises(UnknownRootError):
        Roots.of(w.root.public).learn(rotation(w, new, stranger), w.store, T0)
    # a forged old-root signature (bytes flipped) is no better
    forged = bytearray(rotation(w, new))
    _, outer = w.store.decode_single(bytes(forged), expected=ROTATION_SCHEMA)
    outer["old_signature"] = bytes(64)
    value = w.store.encode_single(ROTATION_SCHEMA, outer)
    assert r.offer(value) is Outcome.BAD_SIGNATURE
    assert new.key_id not in r.roots
    assert n.c == {"unknown_root": 2, "bad_signature": 1}


def test_a_rotation_to_a_key_without_its_proof_of_possession_is_refused() -> None:
    w = make_world()
    new, other = new_root(), new_root("other")
    value = rotation(w, new)
    _, outer = w.store.decode_single(value, expected=ROTATION_SCHEMA)
    # signed by the old root, but the "proof" is another key's signature
    outer["new_signature"] = other.signing.sign(POSSESSION_LABEL + outer["rotation"]).signature
    r, _ = reader(w)
    assert r.offer(w.store.encode_single(ROTATION_SCHEMA, outer)) is Outcome.BAD_SIGNATURE
    assert new.key_id not in r.roots
    with pytest.raises(DirectoryError, match="proof of possession"):
        Roots.of(w.root.public).learn(w.store.encode_single(ROTATION_SCHEMA, outer), w.store, T0)
    # a key id that is not the new key's: refused even with both signatures right
    rot = dataclasses.replace(read_rotation(value, w.store), new_key_id=other.key_id)
    inner = w.store.encode("net.i24.RootRotation", rot.to_avro())
    relabelled = w.store.encode_single(
        ROTATION_SCHEMA,
        {
            "rotation": inner,
            "old_signature": w.root.signing.sign(b"i24net/v1/root-rotation" + inner).signature,
            "new_signature": new.signing.sign(POSSESSION_LABEL + inner).signature,
        },
    )
    with pytest.raises(DirectoryError, match="does not match the new key"):
        Roots.of(w.root.public).learn(relabelled, w.store, T0)


def test_a_rollback_to_a_retired_root_is_refused() -> None:
    w = make_world()
    new = new_root()
    r, _ = reader(w)
    assert r.offer(rotation(w, new)) is Outcome.ROOT_ROTATION
    # the new root (or whoever holds it) hands back to the retired one, with its proof
    back = rotation(w, w.root, new, issued=T0 + 1, until=T0 + 96 * HOUR)
    assert r.offer(back) is Outcome.ROLLBACK
    old = r.roots.get(w.root.key_id)
    assert old is not None and old.valid_until_ms == OVERLAP_END
    w.clock.now_ms = OVERLAP_END
    assert r.offer(resigned(w, "FR", w.root, issued=T0 + 2)) is Outcome.RETIRED_ROOT


def test_a_root_names_one_successor_and_a_retired_root_rotates_no_more() -> None:
    w = make_world()
    new, other = new_root(), new_root("other")
    r, _ = reader(w)
    assert r.offer(rotation(w, new)) is Outcome.ROOT_ROTATION
    assert r.offer(rotation(w, other, issued=T0 + 1)) is Outcome.EQUIVOCATION
    assert other.key_id not in r.roots
    # a root retired by configuration (its window ended) signs no rotation once retired
    ended = Roots([TrustedRoot(w.root.key_id, w.root.public.public_key, 0, T0 + HOUR)])
    with pytest.raises(RetiredRootError):
        ended.learn(rotation(w, other, until=T0 + 2 * HOUR), w.store, T0 + HOUR)
    # and a chain of rotations is followed, old -> new -> third
    third = new_root("third")
    assert r.offer(rotation(w, third, new, issued=T0 + 2)) is Outcome.ROOT_ROTATION
    assert r.offer(resigned(w, "FR", third, issued=T0 + 3)) is Outcome.APPLIED


def test_a_manifest_of_the_new_root_is_learned_after_its_rotation() -> None:
    w = make_world()
    new = new_root()
    m = w.directory.manifest(version=4, issued_ms=T0, expires_ms=T0 + HOUR)
    value = sign_manifest(m, new, w.store)
    r, _ = reader(w)
    assert r.offer(value) is Outcome.UNKNOWN_ROOT
    assert r.offer(rotation(w, new)) is Outcome.ROOT_ROTATION
    assert r.version == 4
    roots = Roots.of(w.root.public)
    roots.learn(rotation(w, new), w.store, T0)
    assert verify_manifest(value, roots, w.store).version == 4


def test_a_folder_of_entries_verifies_with_its_rotation_files(tmp_path: Path) -> None:
    w = make_world()
    new = new_root()
    (tmp_path / "@root-x.rotation").write_bytes(rotation(w, new))
    roots = learn_rotation_files(tmp_path, Roots.of(w.root.public), w.store)
    d = directory_from_entries([resigned(w, "FR", new)], roots, w.store)
    assert d.record("FR").serial == 2
    with pytest.raises(UnknownRootError):
        directory_from_entries([resigned(w, "FR", new)], Roots.of(w.root.public), w.store)
    (tmp_path / "@root-y.rotation").write_bytes(rotation(w, new, new_root("stranger")))
    with pytest.raises(DirectoryError, match="signed by no trusted root"):
        learn_rotation_files(tmp_path, Roots.of(w.root.public), w.store)


# --- the command --------------------------------------------------------------------


def test_rotate_root_command_hands_the_directory_to_the_new_root(tmp_path: Path) -> None:
    keys, entries, out = tmp_path / "keys", tmp_path / "entries", tmp_path / "rotated"
    for code in ("FR", "JP"):
        assert main(["keys", "generate", "--station", code, "--out", str(keys)]) == 0
    for name in ("old", "new"):
        assert main(["keys", "generate-root", "--out", str(tmp_path / name)]) == 0
    old_secret = tmp_path / "old" / f"{ROOT_NAME}.secret.json"
    new_secret = tmp_path / "new" / f"{ROOT_NAME}.secret.json"
    old_public = tmp_path / "old" / f"{ROOT_NAME}.public.json"
    records = tmp_path / "records.jsonl"
    assert main(["directory", "build", "--keys", str(keys), "--out", str(records)]) == 0
    sign = ["--records", str(records), "--root-secret", str(old_secret), "--out", str(entries)]
    assert main(["directory", "sign", *sign]) == 0
    rotate = ["--old", str(old_secret), "--new", str(new_secret)]
    rotate += ["--entries", str(entries), "--out", str(out), "--overlap-hours", "24"]
    assert main(["directory", "rotate-root", *rotate]) == 0
    new = load_root(new_secret)
    # a station that pins only the old root verifies the rotated folder
    assert (
        main(["directory", "verify", "--entries", str(out), "--root-public", str(old_public)]) == 0
    )
    w = make_world()
    r = DirectoryReader(load_roots([old_public]), w.store)
    [rot] = out.glob("*.rotation")
    assert r.offer(rot.read_bytes()) is Outcome.ROOT_ROTATION
    assert r.offer((out / MANIFEST_KEY).read_bytes()) is Outcome.MANIFEST
    for code in ("FR", "JP"):
        assert r.offer((out / f"{code}.entry").read_bytes()) is Outcome.APPLIED
        assert r.directory.record(code).serial == 2  # the next serial, not an equivocation
    assert not r.withheld
    assert read_rotation(rot.read_bytes(), w.store).new_key_id == new.key_id
    # without the rotation file, the old root alone does not verify the new entries
    rot.unlink()
    assert (
        main(["directory", "verify", "--entries", str(out), "--root-public", str(old_public)]) == 2
    )


def test_gateway_and_router_settings_take_further_roots_relative_to_their_file(
    tmp_path: Path,
) -> None:
    from i24net.gateway.settings import load_settings as gateway_settings
    from i24net.router.settings import load_settings as router_settings

    repo = Path(__file__).parents[2]
    gw = (repo / "deploy" / "gateway" / "gateway.toml").read_text()
    anchor = 'root_public = "/etc/i24net/keys/gs-root.public.json"'
    assert anchor in gw
    (tmp_path / "gateway.toml").write_text(gw.replace(anchor, anchor + '\nroots = ["r2.json"]'))
    assert gateway_settings(tmp_path / "gateway.toml").keys.roots == [tmp_path / "r2.json"]
    rt = (repo / "deploy" / "router" / "router.toml").read_text()
    anchor = "previous = []"
    assert anchor in rt
    (tmp_path / "router.toml").write_text(rt.replace(anchor, anchor + '\nroots = ["r2.json"]'))
    assert router_settings(tmp_path / "router.toml").keys.roots == [tmp_path / "r2.json"]
