"""Which envelope version a gateway seals (issue 17, ``[envelope] version``).

``auto`` seals v2 when the GS and every station the header resolves to can open v2
now, v1 otherwise (a station that has not migrated keeps a message v1 and so still
receives it); ``1``/``2`` force a version, and a recipient that cannot open a forced
v2 is refused at intake. Receipts follow the same rule; the counts go to
``i24net_gateway_envelopes_sealed_total{version}``.
"""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from i24net.directory import Directory, StationRecord
from i24net.envelope import Precedence, envelope_version
from i24net.errors import IntakeRefusedError
from i24net.gateway.intake import EnvelopeVersionMetrics, Intake, Submission, VersionSetting
from i24net.gateway.settings import parse_settings
from i24net.keys import KemSuite, StationSecrets
from i24net.schemas import SchemaStore
from i24net.stations import station

STORE = SchemaStore.default()
NOW = 1_800_000_000_000
PM = {"subject_line": "stolen car", "text": "plate AB-123-CD", "attachments": []}
V1_ONLY = ("BR",)


SECRETS: dict[str, StationSecrets] = {}


@pytest.fixture(scope="module")
def directory() -> Directory:
    """FR, GS, JP, DE with v1 and v2 keys (the classical v2 suite: quick to make), BR v1 only."""
    t = NOW - 60_000
    records = []
    for c in ("FR", "GS", "JP", "BR", "DE"):
        kem = None if c in V1_ONLY else KemSuite.X25519
        s = SECRETS[c] = StationSecrets.generate(c, now_ms=t, kem=kem)
        records.append(
            StationRecord.for_station(station(c), [s.public()], valid_from_ms=t, issued_ms=t)
        )
    return Directory(records)


def intake(
    d: Directory, version: VersionSetting = "auto", router: str = "GS"
) -> tuple[Intake, CollectorRegistry]:
    registry = CollectorRegistry()
    i = Intake(
        SECRETS["FR"],
        lambda: d,
        clock=lambda: NOW,
        store=STORE,
        router=router,
        default_lifetime_ms=86_400_000,
        version=version,
        metrics=EnvelopeVersionMetrics.create(registry),
    )
    return i, registry


def sealed(i: Intake, **kw: object) -> int | None:
    sub = Submission(kind="POLICE_MESSAGE", payload=PM, **kw)  # type: ignore[arg-type]
    return envelope_version(i.prepare(sub).envelope)


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [
        ({"to": ("JP",)}, 2),
        ({"to": ("JP", "DE")}, 2),
        ({"to": ("JP", "BR")}, 1),  # BR reads only v1
        ({"to": ("BR",)}, 1),
        ({"to_all": True}, 1),  # ALL includes BR
        ({"to_all": True, "excluded": ("BR",)}, 2),  # ... unless the sender excludes it
    ],
)
def test_auto_seals_v2_only_when_every_recipient_reads_it(
    directory: Directory, recipients: dict[str, object], expected: int
) -> None:
    i, registry = intake(directory)
    assert sealed(i, **recipients) == expected
    assert (
        registry.get_sample_value(
            "i24net_gateway_envelopes_sealed_total", {"version": str(expected)}
        )
        == 1
    )


def test_auto_seals_v1_while_the_gs_has_no_v2_key(directory: Directory) -> None:
    gs = directory.record("GS")
    v1 = tuple(k for k in gs.encryption_keys if len(k.public_key) == 32)
    d = Directory(
        [*(r for r in directory if r.station != "GS"), dataclasses.replace(gs, encryption_keys=v1)]
    )
    i, _ = intake(d)
    assert sealed(i, to=("JP",)) == 1
    forced, _ = intake(d, version=2)
    with pytest.raises(IntakeRefusedError) as exc:
        sealed(forced, to=("JP",))
    assert exc.value.code == "router_unavailable"


def test_a_forced_version_is_kept_and_a_recipient_that_cannot_open_it_refused(
    directory: Directory,
) -> None:
    one, _ = intake(directory, version=1)
    assert sealed(one, to=("JP",)) == 1
    two, _ = intake(directory, version=2)
    assert sealed(two, to=("JP",)) == 2
    with pytest.raises(IntakeRefusedError) as exc:
        sealed(two, to=("BR",))
    assert exc.value.code == "unknown_recipient" and "v2" in exc.value.detail


def test_a_receipt_is_sealed_by_the_same_rule(directory: Directory) -> None:
    i, _ = intake(directory)
    for to, expected in (("JP", 2), ("BR", 1)):
        h = i.system_header("DELIVERY_RECEIPT", to, Precedence.ROUTINE, NOW, 3_600_000)
        body = STORE.encode_single(
            "net.i24.DeliveryReceipt",
            {
                "message_id": "m",
                "envelope_digest": bytes(32),
                "outcome": "STORED",
                "received_at_ms": NOW,
                "reason": None,
            },
        )
        assert envelope_version(i.seal(h, body, NOW).envelope) == expected


def test_the_setting_is_auto_by_default_and_takes_1_or_2() -> None:
    base = {
        "station": "FR",
        "data_dir": "/tmp/x",
        "keys": {"secret": "/k", "root_public": "/r"},
        "directory": {"entries": "/e"},
        "kafka": {"bootstrap": "127.0.0.1:9092"},
    }
    assert parse_settings(base).envelope.version == "auto"
    assert parse_settings({**base, "envelope": {"version": 2}}).envelope.version == 2
    with pytest.raises(Exception, match="envelope"):
        parse_settings({**base, "envelope": {"version": 3}})
