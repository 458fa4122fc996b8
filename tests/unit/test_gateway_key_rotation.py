"""A gateway holds its previous encryption keys for a grace period after a rotation (issue 17).

The story: JP's delivery is wrapped to JP's old key and still queued when
the GS publishes JP's new key (serial 2). JP's gateway, restarted on its new
key file with the old one under ``keys.previous``, still opens it; once the
grace period after the new key's ``valid_from_ms`` is over, the old key file
is overwritten and removed, and a delivery wrapped to it is refused again.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parents[1] / "vectors" / "envelope"))

from world import PAYLOAD_FP, T0, World, counter_rng, make_world, station_secrets

from i24net.directory import Directory, KeyRecord
from i24net.envelope import (
    Header,
    Language,
    Precedence,
    Receiver,
    Recipients,
    Router,
    Sender,
    new_message_id,
)
from i24net.errors import ConfigError, Reason, VerificationError
from i24net.gateway.keyring import PreviousKeys
from i24net.gateway.settings import load_settings
from i24net.keys import StationSecrets, destroy_key_file, save_station

HOUR = 3_600_000
ROTATED = T0 + HOUR
GRACE = 8 * 24 * HOUR


def rotated_directory(w: World, new: StationSecrets) -> Directory:
    """JP's record, serial 2: the old encryption key until ROTATED, the new one from then."""
    jp = w.directory.record("JP")
    old = jp.encryption_keys[0]
    record = dataclasses.replace(
        jp,
        serial=2,
        encryption_keys=(
            dataclasses.replace(old, valid_until_ms=ROTATED),
            KeyRecord(new.encryption_key_id, bytes(new.encryption.public_key), ROTATED),
        ),
        signing_keys=(
            *jp.signing_keys,
            KeyRecord(new.signing_key_id, bytes(new.signing.verify_key), ROTATED),
        ),
    )
    return Directory([*(r for r in w.directory if r.station != "JP"), record])


def delivery(w: World, d: Directory, n: int) -> bytes:
    """FR -> JP, attested and wrapped by the GS with directory ``d`` at the world's clock."""
    now = w.clock()
    h = Header(
        message_id=new_message_id(now, counter_rng(f"rotation{n}")),
        sender="FR",
        sender_key_id=w.secrets["FR"].signing_key_id,
        recipients=Recipients.to("JP"),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + 6 * HOUR,
        language=Language.EN,
        payload_fingerprint=PAYLOAD_FP,
    )
    gs = d.current_encryption_key("GS", now)
    data = Sender(w.secrets["FR"], gs, store=w.store).seal(h, f"m{n}".encode())
    r = Router(w.secrets["GS"], d, w.window(), store=w.store)
    return r.deliver(r.open(data), ["JP"])["JP"]


def open_at(
    w: World, d: Directory, current: StationSecrets, pk: PreviousKeys, data: bytes
) -> bytes:
    rx = Receiver(current, d, w.window(), previous=pk.secrets, store=w.store)
    return rx.open(data).payload


@pytest.fixture
def world(tmp_path: Path) -> tuple[World, StationSecrets, Path]:
    w = make_world()
    old_path, _ = save_station(w.secrets["JP"], tmp_path / "old")
    new = station_secrets("JP", created_ms=ROTATED, gen=1)
    return w, new, old_path


def sample(reg: CollectorRegistry, name: str) -> float:
    v = reg.get_sample_value(name)
    assert v is not None, name
    return v


def test_a_queued_delivery_to_the_old_key_opens_then_the_old_key_is_destroyed(
    world: tuple[World, StationSecrets, Path],
) -> None:
    w, new, old_path = world
    queued = delivery(w, w.directory, 1)  # wrapped to JP's old key, before the rotation
    w.clock.advance(HOUR + 1)
    d2 = rotated_directory(w, new)
    fresh = delivery(w, d2, 2)  # after it: wrapped to the new key
    reg = CollectorRegistry()
    pk = PreviousKeys.load(new, [old_path], grace_ms=GRACE, registry=reg)
    assert pk.key_ids == (w.secrets["JP"].encryption_key_id,)
    assert sample(reg, "i24net_gateway_previous_encryption_keys") == 1

    # Without the previous key this is today's failure: wrong_recipient.
    with pytest.raises(VerificationError) as e:
        Receiver(new, d2, w.window(), store=w.store).open(queued)
    assert e.value.reason is Reason.WRONG_RECIPIENT
    assert open_at(w, d2, new, pk, queued) == b"m1"
    assert open_at(w, d2, new, pk, fresh) == b"m2"

    assert pk.due_ms(d2) == ROTATED + GRACE
    assert pk.retire(d2, ROTATED + GRACE - 1) == []
    assert old_path.exists()
    generation = pk.generation
    assert pk.retire(d2, ROTATED + GRACE) == [w.secrets["JP"].encryption_key_id]
    assert not old_path.exists()
    assert pk.secrets == () and pk.generation == generation + 1
    assert sample(reg, "i24net_gateway_encryption_keys_destroyed_total") == 1
    assert sample(reg, "i24net_gateway_previous_encryption_keys") == 0
    with pytest.raises(VerificationError) as e:
        open_at(w, d2, new, pk, queued)
    assert e.value.reason is Reason.WRONG_RECIPIENT
    assert pk.retire(d2, ROTATED + 2 * GRACE) == []  # nothing left, nothing counted twice
    assert sample(reg, "i24net_gateway_encryption_keys_destroyed_total") == 1


def test_the_grace_does_not_start_before_the_directory_lists_the_new_key(
    world: tuple[World, StationSecrets, Path],
) -> None:
    w, new, old_path = world
    pk = PreviousKeys.load(new, [old_path], grace_ms=GRACE)
    assert pk.due_ms(w.directory) is None  # the router still wraps to the old key
    assert pk.retire(w.directory, ROTATED + 10 * GRACE) == []
    assert old_path.exists()
    assert len(pk.secrets) == 1


def test_a_restart_after_the_destruction_finds_the_file_gone(
    world: tuple[World, StationSecrets, Path],
) -> None:
    w, new, old_path = world
    d2 = rotated_directory(w, new)
    PreviousKeys.load(new, [old_path], grace_ms=0).retire(d2, ROTATED)
    again = PreviousKeys.load(new, [old_path], grace_ms=0)
    assert again.secrets == ()


def test_previous_key_files_of_another_station_or_the_current_key_are_refused(
    world: tuple[World, StationSecrets, Path], tmp_path: Path
) -> None:
    w, new, _ = world
    fr_path, _ = save_station(w.secrets["FR"], tmp_path / "fr")
    with pytest.raises(ConfigError, match="is for FR"):
        PreviousKeys.load(new, [fr_path], grace_ms=GRACE)
    cur_path, _ = save_station(new, tmp_path / "cur")
    with pytest.raises(ConfigError, match="current encryption key"):
        PreviousKeys.load(new, [cur_path], grace_ms=GRACE)


def test_destroying_overwrites_the_key_before_removing_it(tmp_path: Path) -> None:
    """A second hard link to the file shows what is left in its blocks: zeros only."""
    path, _ = save_station(station_secrets("JP"), tmp_path)
    link = tmp_path / "link"
    os.link(path, link)
    size = link.stat().st_size
    destroy_key_file(path)
    assert not path.exists()
    assert link.read_bytes() == bytes(size)
    destroy_key_file(path)  # idempotent


def test_settings_resolve_previous_key_paths_from_the_toml_folder(tmp_path: Path) -> None:
    toml = tmp_path / "gw.toml"
    toml.write_text(
        'station = "JP"\ndata_dir = "data"\n'
        '[keys]\nsecret = "keys/JP.secret.json"\nroot_public = "keys/gs-root.public.json"\n'
        'previous = ["keys/old/JP.secret.json", "/abs/JP.secret.json"]\n'
        "previous_grace_s = 60\n"
        '[directory]\nentries = "entries"\n[kafka]\nbootstrap = "localhost:9092"\n',
        encoding="utf-8",
    )
    s = load_settings(toml)
    assert s.keys.previous == [
        tmp_path.resolve() / "keys" / "old" / "JP.secret.json",
        Path("/abs/JP.secret.json"),
    ]
    assert s.keys.previous_grace_s == 60
