"""The router keeps the GS's previous key sets while stored messages can need them, then
destroys them (issue 17, short-lived encryption keys): router/keyring.py.

The story: the GS rotates (its new key valid from ROTATED in the directory); an
envelope sealed to the old key is still opened with the previous key set; once the
hold (the longest of i24.out retention, review deadline and DLQ retention) after
ROTATED is over, the old key file is overwritten and removed and the envelope no
longer opens; the destruction is recorded as a KEY_DESTROYED audit entry.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from i24net.audit import Action, Chain, Entry, Head, encode_reason
from i24net.directory import Directory, StationRecord
from i24net.envelope import Recipients, Router
from i24net.errors import ConfigError, VerificationError
from i24net.keys import StationSecrets, save_station
from i24net.provision import OUT_RETENTION_MS
from i24net.replay import ReplayWindow
from i24net.router.deadlines import ReviewDeadlines
from i24net.router.keyring import DLQ_RETENTION_MS, RouterKeyring, hold_ms
from i24net.router.testing import DAY_MS, build_network, police_message
from i24net.schemas import SchemaStore
from i24net.stations import station

T0 = 1_780_000_000_000
ROTATED = T0 + DAY_MS


def rotate_gs(d: Directory, new: StationSecrets) -> Directory:
    """The GS's record, serial 2: the old encryption key(s) until ROTATED, the new from then."""
    gs = d.record("GS")
    rec = dataclasses.replace(
        gs,
        serial=gs.serial + 1,
        encryption_keys=(
            *(dataclasses.replace(k, valid_until_ms=ROTATED) for k in gs.encryption_keys),
            *StationRecord.for_station(
                station("GS"), [new.public()], valid_from_ms=ROTATED, issued_ms=ROTATED
            ).encryption_keys,
        ),
    )
    return Directory([*(r for r in d if r.station != "GS"), rec])


def test_the_hold_is_the_longest_of_ingress_review_and_dead_letter_retention() -> None:
    deadlines = ReviewDeadlines()
    assert hold_ms(OUT_RETENTION_MS, deadlines, DLQ_RETENTION_MS) == 30 * DAY_MS
    long_review = ReviewDeadlines(default_ms=45 * DAY_MS)
    assert hold_ms(OUT_RETENTION_MS, long_review, DLQ_RETENTION_MS) == 45 * DAY_MS
    assert hold_ms(60 * DAY_MS, deadlines, DLQ_RETENTION_MS) == 60 * DAY_MS


def test_previous_gs_keys_open_old_envelopes_until_the_hold_ends_then_are_destroyed(
    tmp_path: Path,
) -> None:
    net = build_network(["FR", "JP"], tmp_path / "keys", now_ms=T0)
    store = net.store
    old_path = tmp_path / "keys" / "GS.secret.json"
    sealed_old = net.gateway("FR", T0).message(
        "POLICE_MESSAGE", police_message("to the old GS key"), Recipients.to("JP"), T0
    )[1]
    new = StationSecrets.generate("GS", now_ms=ROTATED)
    save_station(new, tmp_path / "new")
    after = rotate_gs(net.directory, new)
    registry = CollectorRegistry()
    kr = RouterKeyring.load(new, [old_path], hold_ms=30 * DAY_MS, registry=registry)
    assert len(kr.previous) == 1
    assert kr.due_ms(after) == ROTATED + 30 * DAY_MS
    assert kr.due_ms(net.directory) is None  # the new key is not published: keep the old

    def opens(previous: tuple[StationSecrets, ...]) -> bool:
        r = Router(new, after, ReplayWindow(clock=lambda: T0), previous=previous, store=store)
        try:
            r.open(sealed_old, record=False, appended_ms=T0)
        except VerificationError:
            return False
        return True

    assert opens(kr.previous)
    assert kr.retire(after, ROTATED + 30 * DAY_MS - 1) == []
    assert old_path.exists()
    gone = kr.retire(after, ROTATED + 30 * DAY_MS)
    assert net.secrets["GS"].encryption_key_id in gone
    assert not old_path.exists()
    assert kr.previous == ()
    assert not opens(kr.previous)
    assert registry.get_sample_value("i24net_router_encryption_keys_destroyed_total") == 1
    assert registry.get_sample_value("i24net_router_previous_encryption_keys") == 0
    assert kr.retire(after, ROTATED + 31 * DAY_MS) == []  # once


def test_a_previous_file_that_is_the_current_key_or_another_station_is_refused(
    tmp_path: Path,
) -> None:
    net = build_network(["FR"], tmp_path / "keys", now_ms=T0)
    gs = net.secrets["GS"]
    with pytest.raises(ConfigError, match="current encryption key"):
        RouterKeyring.load(gs, [tmp_path / "keys" / "GS.secret.json"], hold_ms=1)
    with pytest.raises(ConfigError, match="is for FR"):
        RouterKeyring.load(gs, [tmp_path / "keys" / "FR.secret.json"], hold_ms=1)
    gone = tmp_path / "keys" / "destroyed.secret.json"
    assert RouterKeyring.load(gs, [gone], hold_ms=1).previous == ()


def test_key_destroyed_is_an_audit_action_naming_the_key_id_only(tmp_path: Path) -> None:
    store = SchemaStore.default()
    chain = Chain("router/a", store, Head())
    entry = Entry(
        Action.KEY_DESTROYED,
        "router/a",
        sender="GS",
        reason=encode_reason("key_rotation", ["key_id:GS-20260528-0badcafe"]),
    )
    (appended,) = chain.extend([entry], T0)
    _, record = store.decode_single(appended.value, expected="net.i24.AuditRecord")
    assert record["action"] == "KEY_DESTROYED"
    assert json.loads(record["reason"])["reasons"] == ["key_id:GS-20260528-0badcafe"]


def test_an_audit_record_written_before_key_destroyed_existed_still_reads() -> None:
    """The superseded AuditRecord (history/net.i24.AuditRecord.v1) is a writer schema."""
    store = SchemaStore.default()
    old_fp = bytes.fromhex("6bd8a2041dfc7aaa")
    assert store.by_fingerprint(old_fp) == "net.i24.AuditRecord"
    assert store.fingerprint("net.i24.AuditRecord") != old_fp


def test_the_gs_rotation_gauge_counts_down_to_the_end_the_directory_publishes(
    tmp_path: Path,
) -> None:
    """``i24net_router_encryption_key_rotation_due_seconds`` (alert
    ``I24netEncryptionKeyRotationDue``): -1 while the directory publishes no end for the
    GS's current keys; once a rotation ends them at ROTATED, the seconds left until then."""
    net = build_network(["FR"], tmp_path / "keys", now_ms=T0)
    old = net.secrets["GS"]
    name = "i24net_router_encryption_key_rotation_due_seconds"
    registry = CollectorRegistry()
    kr = RouterKeyring(old, [], hold_ms=DAY_MS, registry=registry)
    assert kr.retire(net.directory, T0) == []
    assert registry.get_sample_value(name) == -1
    new = StationSecrets.generate("GS", now_ms=ROTATED)
    after = rotate_gs(net.directory, new)
    kr.retire(after, T0 + 1000)
    assert registry.get_sample_value(name) == (ROTATED - T0 - 1000) / 1000
    kr.retire(after, ROTATED + 5000)
    assert registry.get_sample_value(name) == -5.0  # overdue
    fresh = CollectorRegistry()
    RouterKeyring(new, [], hold_ms=DAY_MS, registry=fresh).retire(after, ROTATED)
    assert fresh.get_sample_value(name) == -1  # the new keys have no end published
