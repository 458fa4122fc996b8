"""``i24net keys generate`` makes envelope-v2 KEM keys by default (issue 17, migration).

The hybrid ML-KEM-768 + X25519 suite unless ``--kem`` says otherwise; ``--kem none``
keeps a v1-only key set; the v1 X25519 key is always there (every station reads both
during the transition). The directory built from the public file offers both versions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from i24net.cli import main
from i24net.directory import Directory, StationRecord
from i24net.keys import KemSuite, load_public, load_station
from i24net.stations import station

T = 1_780_000_000_000


@pytest.mark.parametrize(
    ("flag", "suite"),
    [
        ((), KemSuite.MLKEM768_X25519),
        (("--kem", "mlkem768-x25519"), KemSuite.MLKEM768_X25519),
        (("--kem", "x25519"), KemSuite.X25519),
        (("--kem", "none"), None),
    ],
)
def test_generate_makes_the_kem_key_asked_for(
    tmp_path: Path,
    flag: tuple[str, ...],
    suite: KemSuite | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["keys", "generate", "--station", "JP", "--out", str(tmp_path), *flag]) == 0
    s = load_station(tmp_path / "JP.secret.json")
    assert s.kem_suite is suite
    out = capsys.readouterr().out
    assert "rotate by" in out and "30 days" in out
    pub = load_public(tmp_path / "JP.public.json")
    rec = StationRecord.for_station(station("JP"), [pub], valid_from_ms=T, issued_ms=T)
    versions = Directory([rec]).envelope_versions("JP", T + 1)
    assert versions == ({1} if suite is None else {1, 2})
    assert bytes(s.encryption.public_key) == pub.encryption_public  # v1 key always made
    if suite is not None:
        assert s.kem_key_id is not None and s.kem_key_id in out
        assert pub.kem_public is not None and pub.kem_public[0] == (
            2 if suite is KemSuite.MLKEM768_X25519 else 1
        )
    else:
        assert "v1 only" in out


def test_an_encryption_lifetime_under_a_day_is_refused(tmp_path: Path) -> None:
    argv = ["keys", "generate", "--station", "JP", "--out", str(tmp_path)]
    assert main([*argv, "--encryption-lifetime", "0"]) == 2
    assert not (tmp_path / "JP.secret.json").exists()
