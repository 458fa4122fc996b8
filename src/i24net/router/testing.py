"""A small network for tests, the bench and the demo: keys, a signed directory, fake gateways.

Plays the gateways by calling ``Sender.seal`` directly and producing to
``i24.out.<station>``, so the router can be exercised without the real
gateway. Nothing here is used by the router itself.

Envelope v2 (issue 17): every station gets a v2 KEM key (``kem``, the hybrid
suite by default) next to its v1 key, except the ``v1_only`` stations (a
station that has not migrated yet). A ``FakeGateway`` seals v1 unless told
otherwise (``version=2``, or ``None``: the real gateway's ``auto`` choice,
``i24net.gateway.intake.choose_version``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from i24net.directory import Directory, StationRecord, sign_manifest
from i24net.envelope import (
    HandlingCode,
    Header,
    Language,
    Precedence,
    Recipients,
    Sender,
    new_message_id,
)
from i24net.gateway.intake import choose_version
from i24net.keys import KemSuite, RootSecrets, StationSecrets, save_root, save_station
from i24net.provision import MAX_MESSAGE_BYTES, OUT_TOPIC_CONFIG
from i24net.router.settings import Topics
from i24net.schemas import KIND_SCHEMAS, SchemaStore
from i24net.stations import GS, all_stations

DAY_MS = 86_400_000


@dataclass
class Network:
    root: RootSecrets
    secrets: dict[str, StationSecrets]
    directory: Directory
    entries: dict[str, bytes]
    keys_dir: Path
    store: SchemaStore = field(default_factory=SchemaStore.default)
    manifest: bytes | None = None
    """The signed directory manifest; every ``sign()`` makes a new version."""
    manifest_version: int = 0

    def sign(self) -> None:
        self.entries = self.directory.sign(self.root, self.store)
        self.manifest_version += 1
        issued = max((r.issued_ms for r in self.directory), default=0)
        m = self.directory.manifest(
            version=self.manifest_version, issued_ms=issued, expires_ms=issued + 30 * DAY_MS
        )
        self.manifest = sign_manifest(m, self.root, self.store)

    def gateway(self, station: str, now_ms: int, *, version: int | None = 1) -> FakeGateway:
        return FakeGateway(self, station, now_ms, version=version)


def build_network(
    stations: Iterable[str],
    keys_dir: Path,
    *,
    now_ms: int,
    kem: KemSuite | None = KemSuite.MLKEM768_X25519,
    v1_only: Iterable[str] = (),
) -> Network:
    """Keys for ``stations`` plus GS, saved under ``keys_dir``; a signed directory.
    Each key set has a v2 KEM key of suite ``kem`` but those of ``v1_only`` (none at
    all with ``kem=None``)."""
    old_only = set(v1_only)
    known = all_stations()
    codes = sorted(set(stations) | {GS})
    keys_dir.mkdir(parents=True, exist_ok=True)
    root = RootSecrets.generate(now_ms=now_ms)
    save_root(root, keys_dir)
    secrets: dict[str, StationSecrets] = {}
    records = []
    for code in codes:
        s = StationSecrets.generate(code, now_ms=now_ms, kem=None if code in old_only else kem)
        secrets[code] = s
        save_station(s, keys_dir)
        records.append(
            StationRecord.for_station(
                known[code], [s.public()], valid_from_ms=now_ms - 30 * DAY_MS, issued_ms=now_ms
            )
        )
    store = SchemaStore.default()
    d = Directory(records)
    net = Network(root, secrets, d, {}, keys_dir, store)
    net.sign()
    return net


def revise(net: Network, record: StationRecord) -> bytes:
    """Replace a station's record (serial + 1), re-sign it; returns the new entry."""
    old = net.directory.record(record.station)
    new = replace(record, serial=old.serial + 1)
    net.directory.put(new)
    net.sign()
    return net.entries[new.station]


async def publish_directory(producer: Any, net: Network, topics: Topics) -> None:
    from i24net.directory import publish

    await publish(producer, net.entries, topic=topics.directory, manifest=net.manifest)


def police_message(text: str, subject: str = "Case") -> dict[str, Any]:
    return {
        "subject_line": subject,
        "text": text,
        "case_reference": None,
        "attachments": [],
        "in_reply_to": None,
    }


def person(**kw: Any) -> dict[str, Any]:
    p = {
        "family_name": "Doe",
        "forenames": "Jan",
        "name_at_birth": None,
        "aliases": [],
        "sex": "UNKNOWN",
        "date_of_birth": "1980",
        "place_of_birth": None,
        "nationalities": ["FR"],
        "identity_documents": [],
        "description": None,
        "languages": [],
        "refugee_status": "UNKNOWN",
        "refugee_status_granted_by": None,
    }
    p.update(kw)
    return p


def red_notice(facts: str, *, category: str = "FRAUD", **person_kw: Any) -> dict[str, Any]:
    return {
        "case": {
            "national_reference": "REF-1",
            "requesting_authority": "Prosecutor",
            "officer_in_charge": "Officer 1",
            "facts": facts,
            "remarks": None,
        },
        "subject": person(**person_kw),
        "offences": [
            {
                "category": category,
                "description": facts,
                "legal_provision": "Penal code art. 1",
                "maximum_penalty": "10 years",
                "committed_on": None,
                "place": None,
            }
        ],
        "arrest_warrant": {
            "reference": "W-1",
            "issued_by": "Court",
            "issued_on": "2025-01-01",
            "legal_basis": "CCP art. 2",
            "sentence_imposed": None,
        },
        "extradition_assured": True,
        "countries_likely_visited": [],
        "attachments": [],
    }


class FakeGateway:
    """Seals like a station's gateway would (``Sender.seal``), in envelope ``version``
    (None: per message, as the gateway's ``[envelope] version = "auto"``)."""

    def __init__(self, net: Network, station: str, now_ms: int, *, version: int | None = 1) -> None:
        self.net = net
        self.station = station
        self.secrets = net.secrets[station]
        self.version = version
        self.now_ms = now_ms
        self._senders: dict[int, Sender] = {}
        self.sender = self._sender(version or 1)

    def _sender(self, version: int) -> Sender:
        if version not in self._senders:
            gs_key = self.net.directory.current_encryption_key(GS, self.now_ms, version=version)
            self._senders[version] = Sender(self.secrets, gs_key, store=self.net.store)
        return self._senders[version]

    def header(
        self,
        kind: str,
        recipients: Recipients,
        now_ms: int,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        lifetime_ms: int = DAY_MS,
        language: Language = Language.EN,
        excluded: tuple[str, ...] = (),
        offence_categories: tuple[str, ...] = (),
        handling: tuple[HandlingCode, ...] = (),
        message_id: str | None = None,
    ) -> Header:
        return Header(
            message_id=message_id or new_message_id(now_ms, os.urandom),
            sender=self.station,
            sender_key_id=self.secrets.signing_key_id,
            recipients=recipients,
            kind=kind,
            precedence=precedence,
            created_ms=now_ms,
            expires_ms=now_ms + lifetime_ms,
            language=language,
            payload_fingerprint=self.net.store.fingerprint(KIND_SCHEMAS[kind]),
            handling=handling,
            excluded=excluded,
            offence_categories=offence_categories,
        )

    def seal(self, header: Header, payload: Mapping[str, Any]) -> bytes:
        body = self.net.store.encode_single(KIND_SCHEMAS[header.kind], payload)
        version = self.version
        if version is None:
            version = choose_version(self.net.directory, GS, header, header.created_ms)
        return self._sender(version).seal(header, body)

    def message(
        self,
        kind: str,
        payload: Mapping[str, Any],
        recipients: Recipients,
        now_ms: int,
        **kw: Any,
    ) -> tuple[Header, bytes]:
        h = self.header(kind, recipients, now_ms, **kw)
        return h, self.seal(h, payload)


def hints(h: Header) -> list[tuple[str, bytes]]:
    return [
        ("i24-msgid", h.message_id.encode()),
        ("i24-sender", h.sender.encode()),
        ("i24-kind", h.kind.encode()),
        ("i24-precedence", h.precedence.value.encode()),
    ]


def settings_toml(
    *,
    instance: str,
    bootstrap: str,
    prefix: str,
    keys_dir: Path,
    state_dir: Path,
    policy: Path,
    port: int = 0,
    group: str = "i24.router",
    extra_router: Mapping[str, Any] | None = None,
    tokens_file: Path | None = None,
    testing: Mapping[str, Any] | None = None,
) -> str:
    router = {
        "instance": instance,
        "group": group,
        "metadata_max_age_ms": 5000,  # pattern subscription re-reads metadata of every topic
        "session_timeout_ms": 6000,
        "transaction_timeout_ms": 10000,
        **(extra_router or {}),
    }

    def val(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, str) else str(v)

    lines = ["[router]", *(f"{k} = {val(v)}" for k, v in router.items())]
    lines += ["", "[kafka]", f'bootstrap = "{bootstrap}"']
    lines += ["", "[topics]", f'prefix = "{prefix}"']
    lines += [
        "",
        "[keys]",
        f'gs_secret = "{keys_dir / "GS.secret.json"}"',
        f'root_public = "{keys_dir / "gs-root.public.json"}"',
    ]
    lines += ["", "[state]", f'dir = "{state_dir}"']
    lines += ["", "[policy]", f'file = "{policy}"']
    lines += ["", "[http]", 'host = "127.0.0.1"', f"port = {port}"]
    if tokens_file is not None:
        lines += ["", "[review]", f'tokens_file = "{tokens_file}"']
    if testing:
        lines += ["", "[testing]", *(f"{k} = {val(v)}" for k, v in testing.items())]
    return "\n".join(lines) + "\n"


async def provision(
    conn: Any,
    net: Network,
    topics: Topics,
    *,
    out_partitions: int = 3,
    ingress_partitions: int = 12,
    legacy: bool = True,
) -> None:
    """Create the shared ingress topic ``i24.out``, ``i24.in.*`` for every station of
    ``net`` and the directory topic, and publish the signed directory. ``legacy``: the
    per-station ``i24.out.<station>`` topics too (``out_partitions`` each), which tests
    write hostile records into and routers drain during a migration."""
    from aiokafka import AIOKafkaProducer

    from i24net.kafka import TopicSpec, ensure_topics

    big = {"max.message.bytes": str(MAX_MESSAGE_BYTES)}
    specs = [
        TopicSpec(topics.directory, 1, config={"cleanup.policy": "compact"}),
        TopicSpec(topics.ingress, ingress_partitions, config={**big, **OUT_TOPIC_CONFIG}),
    ]
    for code in net.secrets:
        if legacy:
            specs.append(
                TopicSpec(topics.out(code), out_partitions, config={**big, **OUT_TOPIC_CONFIG})
            )
        specs.append(TopicSpec(topics.inbox(code), 1, config=big))
    await ensure_topics(conn, specs)
    producer = AIOKafkaProducer(**conn.client_kwargs(), enable_idempotence=True)
    await producer.start()
    try:
        await publish_directory(producer, net, topics)
    finally:
        await producer.stop()
