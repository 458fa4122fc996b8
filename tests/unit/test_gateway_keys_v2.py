"""A gateway's key sets in envelope v2 (issue 17): the previous set opens v2 deliveries
wrapped to its KEM key until the grace ends, then the whole set (X25519 and KEM key) is
destroyed; the rotation schedule (the directory's ``valid_until_ms``) is a gauge.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from i24net.directory import Directory, StationRecord
from i24net.envelope import Receiver, Recipients, Router
from i24net.errors import VerificationError
from i24net.gateway.keyring import PreviousKeys
from i24net.keys import StationSecrets, save_station
from i24net.replay import ReplayWindow
from i24net.router.testing import DAY_MS, Network, build_network, police_message
from i24net.stations import station

T0 = 1_780_000_000_000
ROTATED = T0 + DAY_MS
GRACE_MS = 8 * DAY_MS
LIFETIME_MS = 30 * DAY_MS


def rotate(net: Network, code: str, new: StationSecrets) -> Directory:
    """``code``'s old encryption/KEM keys valid until ROTATED, the new set's from then until
    ROTATED + LIFETIME_MS (the published rotation schedule)."""
    old = net.directory.record(code)
    fresh = StationRecord.for_station(
        station(code), [new.public()], valid_from_ms=ROTATED, issued_ms=ROTATED
    )
    rec = dataclasses.replace(
        old,
        serial=old.serial + 1,
        signing_keys=(*old.signing_keys, *fresh.signing_keys),
        encryption_keys=(
            *(dataclasses.replace(k, valid_until_ms=ROTATED) for k in old.encryption_keys),
            *(
                dataclasses.replace(k, valid_until_ms=ROTATED + LIFETIME_MS)
                for k in fresh.encryption_keys
            ),
        ),
    )
    return Directory([*(r for r in net.directory if r.station != code), rec])


def v2_delivery_to_jp(net: Network) -> bytes:
    """FR -> JP in v2, routed by the GS while JP's old KEM key was current."""
    _, data = net.gateway("FR", T0, version=2).message(
        "POLICE_MESSAGE", police_message("old wrap"), Recipients.to("JP"), T0
    )
    gs = Router(net.secrets["GS"], net.directory, ReplayWindow(clock=lambda: T0))
    return gs.deliver(gs.open(data, record=False), ["JP"])["JP"]


def test_the_previous_v2_key_set_opens_until_the_grace_ends_then_goes_whole(
    tmp_path: Path,
) -> None:
    net = build_network(["FR", "JP"], tmp_path / "keys", now_ms=T0)
    old = net.secrets["JP"]
    queued = v2_delivery_to_jp(net)
    new = StationSecrets.generate("JP", now_ms=ROTATED)
    save_station(new, tmp_path / "new")
    after = rotate(net, "JP", new)
    registry = CollectorRegistry()
    pk = PreviousKeys.load(
        new, [tmp_path / "keys" / "JP.secret.json"], grace_ms=GRACE_MS, registry=registry
    )

    def opens(at: int) -> bool:
        rx = Receiver(new, after, ReplayWindow(clock=lambda: at), previous=pk.secrets)
        try:
            rx.open(queued, record=False)
        except VerificationError:
            return False
        return True

    assert opens(T0 + 1)
    assert pk.retire(after, ROTATED + GRACE_MS - 1) == []
    gauge = registry.get_sample_value("i24net_gateway_encryption_key_rotation_due_seconds")
    assert gauge == (LIFETIME_MS - GRACE_MS + 1) / 1000
    (gone,) = pk.retire(after, ROTATED + GRACE_MS)
    assert old.encryption_key_id in gone and str(old.kem_key_id) in gone
    assert not (tmp_path / "keys" / "JP.secret.json").exists()
    assert not opens(T0 + 1)


def test_the_rotation_gauge_is_minus_one_without_a_published_end(tmp_path: Path) -> None:
    net = build_network(["JP"], tmp_path / "keys", now_ms=T0)
    registry = CollectorRegistry()
    pk = PreviousKeys(net.secrets["JP"], [], grace_ms=GRACE_MS, registry=registry)
    assert pk.rotation_due_ms(net.directory) is None
    pk.retire(net.directory, T0)
    assert registry.get_sample_value("i24net_gateway_encryption_key_rotation_due_seconds") == -1


@pytest.mark.parametrize("key", ["v1", "v2"])
def test_the_anchor_is_the_later_valid_from_of_the_current_set(tmp_path: Path, key: str) -> None:
    """The grace starts when the router wraps to the new set in either version."""
    net = build_network(["FR", "JP"], tmp_path / "keys", now_ms=T0)
    new = StationSecrets.generate("JP", now_ms=ROTATED)
    after = rotate(net, "JP", new)
    rec = after.record("JP")
    later = ROTATED + 5
    bumped = new.encryption_key_id if key == "v1" else new.kem_key_id
    keys = tuple(
        dataclasses.replace(k, valid_from_ms=later) if k.key_id == bumped else k
        for k in rec.encryption_keys
    )
    d = Directory(
        [*(r for r in after if r.station != "JP"), dataclasses.replace(rec, encryption_keys=keys)]
    )
    pk = PreviousKeys(new, [], grace_ms=GRACE_MS)
    assert pk.rotated_at(d) == later
