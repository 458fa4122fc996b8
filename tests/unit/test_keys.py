"""Key generation, key ids, and key files with mode 0600."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from i24net.cli import main
from i24net.errors import KeyStoreError
from i24net.keys import (
    RootSecrets,
    StationSecrets,
    load_public,
    load_root,
    load_station,
    save_root,
    save_station,
)

T0 = 1_795_000_000_000


def fixed(n: int) -> bytes:
    return bytes(range(n))


def test_key_ids_and_repr_hide_secrets() -> None:
    s = StationSecrets.generate("FR", now_ms=T0, rng=fixed)
    assert s.signing_key_id.startswith("FR-20261118-") and len(s.signing_key_id) == 20
    assert s.signing_key_id != s.encryption_key_id
    assert bytes(s.signing).hex() not in repr(s)


def test_files_are_0600_and_round_trip(tmp_path: Path) -> None:
    s = StationSecrets.generate("JP", now_ms=T0)
    secret, public = save_station(s, tmp_path)
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    loaded = load_station(secret)
    assert loaded.public() == s.public() == load_public(public)
    with pytest.raises(KeyStoreError, match="already exists"):
        save_station(s, tmp_path)


def test_a_public_file_whose_key_id_is_not_its_keys_is_refused(tmp_path: Path) -> None:
    """Key ids are recomputed on load, so the GS never signs a record readers refuse."""
    s = StationSecrets.generate("JP", now_ms=T0)
    _, public = save_station(s, tmp_path)
    data = json.loads(public.read_text(encoding="utf-8"))
    data["encryption"]["key_id"] = s.signing_key_id  # another key's id
    public.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(KeyStoreError, match="does not match its public key"):
        load_public(public)


def test_group_readable_secret_is_refused(tmp_path: Path) -> None:
    secret, _ = save_station(StationSecrets.generate("BR", now_ms=T0), tmp_path)
    os.chmod(secret, 0o640)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        load_station(secret)


def test_root_key_files(tmp_path: Path) -> None:
    root = RootSecrets.generate(now_ms=T0)
    secret, _ = save_root(root, tmp_path)
    assert load_root(secret).public == root.public
    os.chmod(secret, 0o644)
    with pytest.raises(KeyStoreError):
        load_root(secret)


def test_corrupt_file(tmp_path: Path) -> None:
    p = tmp_path / "x.secret.json"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"{not json")
    os.close(fd)
    with pytest.raises(KeyStoreError):
        load_station(p)


def test_cli_generate_prints_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--station", "FR", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    s = load_station(tmp_path / "FR.secret.json")
    assert s.signing_key_id in out and bytes(s.signing).hex() not in out
    assert bytes(s.encryption).hex() not in out
    assert main(["keys", "generate", "--station", "ZZ", "--out", str(tmp_path)]) == 2


# --- envelope v2: the KEM key --------------------------------------------------


def test_kem_key_sets_round_trip_and_ids_name_key_and_suite(tmp_path: Path) -> None:
    from i24net.keys import KemSuite, kem_public_from_bytes

    for suite, size in ((KemSuite.X25519, 33), (KemSuite.MLKEM768_X25519, 1217)):
        s = StationSecrets.generate("JP", now_ms=T0, kem=suite)
        pub = s.public()
        assert pub.kem_public is not None and len(pub.kem_public) == size
        assert kem_public_from_bytes(pub.kem_public)[0] is suite
        assert s.kem_key_id is not None and s.kem_key_id.startswith("JP-20261118-")
        assert s.kem_seed is not None and s.kem_seed.hex() not in repr(s)
        out = tmp_path / suite.value
        secret, public = save_station(s, out)
        loaded = load_station(secret)
        assert loaded.kem_suite is suite and loaded.kem_key_id == s.kem_key_id
        assert loaded.public() == pub == load_public(public)


def test_a_key_file_from_before_v2_loads_as_v1_only(tmp_path: Path) -> None:
    s = StationSecrets.generate("JP", now_ms=T0, kem=None)
    secret, public = save_station(s, tmp_path)
    assert "kem" not in json.loads(secret.read_text())
    loaded = load_station(secret)
    assert loaded.kem is None and loaded.kem_suite is None and loaded.kem_key_id is None
    assert load_public(public).kem_public is None


def test_a_kem_key_id_that_is_not_its_keys_is_refused(tmp_path: Path) -> None:
    s = StationSecrets.generate("JP", now_ms=T0)
    secret, public = save_station(s, tmp_path)
    data = json.loads(secret.read_text())
    data["kem"]["key_id"] = s.encryption_key_id
    secret.write_text(json.dumps(data))
    with pytest.raises(KeyStoreError, match="key ids do not match"):
        load_station(secret)
    pdata = json.loads(public.read_text())
    pdata["kem"]["suite"] = "hpke-x25519"  # the tag says hybrid
    public.write_text(json.dumps(pdata))
    with pytest.raises(KeyStoreError):
        load_public(public)


def test_a_v1_rng_draws_the_same_keys_with_or_without_kem() -> None:
    """The KEM seed is drawn after the v1 seeds, so v1 keys from one rng do not move."""
    import hashlib

    def counter_rng(label: str):  # type: ignore[no-untyped-def]
        stream, pos = hashlib.shake_256(label.encode()).digest(4096), [0]

        def rng(n: int) -> bytes:
            pos[0] += n
            return stream[pos[0] - n : pos[0]]

        return rng

    a = StationSecrets.generate("FR", now_ms=T0, rng=counter_rng("x"), kem=None)
    b = StationSecrets.generate("FR", now_ms=T0, rng=counter_rng("x"))
    assert (a.signing_key_id, a.encryption_key_id) == (b.signing_key_id, b.encryption_key_id)
