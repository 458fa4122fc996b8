"""``i24net directory manifest``: a signed manifest of the entry files, versions that only grow."""

from __future__ import annotations

from pathlib import Path

import pytest

from i24net.cli import main
from i24net.directory import MANIFEST_KEY, entry_digest, verify_manifest
from i24net.keys import ROOT_NAME, load_root_public
from i24net.schemas import SchemaStore


@pytest.fixture
def gs(tmp_path: Path) -> Path:
    keys, entries = tmp_path / "keys", tmp_path / "entries"
    for code in ("FR", "JP"):
        assert main(["keys", "generate", "--station", code, "--out", str(keys)]) == 0
    assert main(["keys", "generate-root", "--out", str(tmp_path / "root")]) == 0
    records = tmp_path / "records.jsonl"
    assert main(["directory", "build", "--keys", str(keys), "--out", str(records)]) == 0
    secret = str(tmp_path / "root" / f"{ROOT_NAME}.secret.json")
    args = ["--records", str(records), "--root-secret", secret, "--out", str(entries)]
    assert main(["directory", "sign", *args]) == 0
    return tmp_path


def test_manifest_names_every_entry_and_its_version_only_grows(gs: Path) -> None:
    store = SchemaStore.default()
    root = load_root_public(gs / "root" / f"{ROOT_NAME}.public.json")
    secret = str(gs / "root" / f"{ROOT_NAME}.secret.json")
    base = ["directory", "manifest", "--entries", str(gs / "entries"), "--root-secret", secret]
    assert main([*base, "--version", "5", "--expires-in-hours", "2"]) == 0
    m = verify_manifest((gs / "entries" / MANIFEST_KEY).read_bytes(), root, store)
    assert m.version == 5 and m.expires_ms - m.issued_ms == 2 * 3_600_000
    assert sorted(m.stations) == ["FR", "JP"]
    fr = (gs / "entries" / "FR.entry").read_bytes()
    assert m.stations["FR"].entry_digest == entry_digest(fr) and m.stations["FR"].serial == 1
    assert main([*base, "--version", "5"]) == 2  # not above the previous: refused
    assert main(base) == 0  # default: the signing time in seconds, above 5
    assert verify_manifest((gs / "entries" / MANIFEST_KEY).read_bytes(), root, store).version > 5
    # the manifest file sits among the entries; the entry tools ignore it
    assert (
        main(
            [
                "directory",
                "verify",
                "--entries",
                str(gs / "entries"),
                "--root-public",
                str(gs / "root" / f"{ROOT_NAME}.public.json"),
            ]
        )
        == 0
    )


def test_build_publishes_the_encryption_keys_rotation_schedule(tmp_path: Path) -> None:
    """``directory build`` gives every encryption and KEM key an end (30 days after the key
    was made, by default): the schedule the gateways count down to; signing keys keep none."""
    from i24net.directory import StationRecord
    from i24net.keys import load_public

    keys = tmp_path / "keys"
    assert main(["keys", "generate", "--station", "FR", "--out", str(keys)]) == 0
    pub = load_public(keys / "FR.public.json")
    store = SchemaStore.default()

    def built(*extra: str) -> StationRecord:
        out = tmp_path / "records.jsonl"
        assert main(["directory", "build", "--keys", str(keys), "--out", str(out), *extra]) == 0
        line = out.read_text(encoding="utf-8").split()[0]
        return StationRecord.from_avro(store.decode("net.i24.DirectoryRecord", bytes.fromhex(line)))

    rec = built()
    assert len(rec.encryption_keys) == 2  # the v1 key and the v2 KEM key
    assert {k.valid_until_ms for k in rec.encryption_keys} == {pub.created_ms + 30 * 86_400_000}
    assert {k.valid_until_ms for k in rec.signing_keys} == {None}
    rec = built("--encryption-lifetime", "7")
    assert {k.valid_until_ms for k in rec.encryption_keys} == {pub.created_ms + 7 * 86_400_000}
    assert {k.valid_until_ms for k in built("--encryption-lifetime", "0").encryption_keys} == {None}
    assert (
        main(
            ["directory", "build", "--keys", str(keys), "--out", "x", "--encryption-lifetime", "-1"]
        )
        == 2
    )
