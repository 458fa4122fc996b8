"""A world of stations for gateway tests on the real broker (shared by test_gateway_*.py).

Every such test needs the same things before it can start a ``Gateway``: the GS
root and a few stations' keys saved under ``<tmp>/keys``, the GS-signed
directory entry files under ``<tmp>/entries``, the gateway's settings pointing
at them, an integrator's token, and envelopes sealed by a station and attested
and wrapped by a test ``Router`` playing the GS. Written once here so that a
test says only what its story changes (a rotated key, a directory followed on
its topic, a delivery the header does not address).

Import it as the envelope tests import ``world``:
``sys.path.insert(0, str(Path(__file__).parent))`` then ``from _gateway_world import ...``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from i24net.clock import system_clock
from i24net.directory import Directory, StationRecord
from i24net.envelope import Header, Language, Precedence, Recipients, Router, Sender, new_message_id
from i24net.gateway import Settings, parse_settings
from i24net.gateway.auth import create_integrator
from i24net.kafka import KafkaConnection
from i24net.keys import RootSecrets, StationSecrets, save_root, save_station
from i24net.replay import ReplayWindow
from i24net.schemas import SchemaStore
from i24net.stations import station

STORE = SchemaStore.default()
TEXT = "plate AB-123-CD"
EVERY_SCOPE = ("send", "inbox:read", "status:read", "operator")
PM: dict[str, Any] = {
    "subject_line": "stolen car",
    "text": TEXT,
    "attachments": [],
    "in_reply_to": None,
    "case_reference": None,
}
"""A ``net.i24.PoliceMessage``."""


@dataclass
class GatewayWorld:
    """Keys and directory of ``secrets``' stations under ``dir``; gateways' topics under
    ``prefix``. With ``directory_topic`` set, gateways also follow the directory there."""

    dir: Path
    prefix: str
    root: RootSecrets
    secrets: dict[str, StationSecrets]
    directory: Directory
    t0: int
    """When the keys and records were made (a minute before the world)."""
    directory_topic: str | None = None

    def record(self, st: StationSecrets, serial: int = 1) -> StationRecord:
        """A directory record of ``st``'s station listing ``st``'s keys, valid from ``t0``."""
        r = StationRecord.for_station(
            station(st.station), [st.public()], valid_from_ms=self.t0, issued_ms=self.t0
        )
        return dataclasses.replace(r, serial=serial)

    def write_entries(self, directory: Directory | None = None) -> None:
        """Sign ``directory`` (this world's by default) with the root into ``<dir>/entries``,
        replacing the files there: what every gateway reads at start."""
        entries = self.dir / "entries"
        entries.mkdir(exist_ok=True)
        for code, e in (directory or self.directory).sign(self.root, STORE).items():
            (entries / f"{code}.entry").write_bytes(e)

    def settings(self, code: str, bootstrap: str, **sections: Any) -> Settings:
        """``code``'s gateway on this world's keys and entries, a free API port; each
        keyword is a settings section merged over these (``keys={"previous": [...]}``)."""
        directory: dict[str, Any] = {"entries": str(self.dir / "entries")}
        if self.directory_topic is not None:
            directory |= {"follow_topic": True, "topic": self.directory_topic, "start_wait_s": 30}
        raw: dict[str, Any] = {
            "station": code,
            "data_dir": str(self.dir / f"gw-{code}"),
            "shutdown_grace_s": 5,
            "keys": {
                "secret": str(self.dir / "keys" / f"{code}.secret.json"),
                "root_public": str(self.dir / "keys" / "gs-root.public.json"),
            },
            "directory": directory,
            "kafka": {
                "bootstrap": bootstrap,
                "topic_prefix": self.prefix,
                "request_timeout_ms": 5000,
            },
            "api": {"port": 0},
        }
        for name, value in sections.items():
            if isinstance(value, dict) and isinstance(raw.get(name), dict):
                raw[name] = {**raw[name], **value}
            else:
                raw[name] = value
        return parse_settings(raw)


def make_world(tmp: Path, prefix: str, stations: Iterable[str]) -> GatewayWorld:
    """The root and ``stations``' keys saved under ``<tmp>/keys``, their directory signed
    into ``<tmp>/entries``."""
    t0 = system_clock() - 60_000
    keys = tmp / "keys"
    root = RootSecrets.generate(now_ms=t0)
    save_root(root, keys)
    secrets = {c: StationSecrets.generate(c, now_ms=t0) for c in stations}
    for s in secrets.values():
        save_station(s, keys)
    w = GatewayWorld(tmp, prefix, root, secrets, Directory(()), t0)
    w.directory = Directory([w.record(s) for s in secrets.values()])
    w.write_entries()
    return w


def bearer(settings: Settings, scopes: Iterable[str] = EVERY_SCOPE) -> dict[str, str]:
    """Add integrator ``tester`` to the gateway's store (before or while it runs); the
    ``Authorization`` header it sends. A generous rate: these are not rate tests."""
    token = create_integrator(
        settings.integrators_path, "tester", scopes, rate_per_s=10_000, burst=10_000
    )
    assert token is not None
    return {"Authorization": f"Bearer {token}"}


def delivery(
    w: GatewayWorld,
    routed_by: Directory,
    *,
    sender: str = "FR",
    sender_secrets: StationSecrets | None = None,
    recipients: Recipients | None = None,
    to: str = "JP",
    excluded: tuple[str, ...] = (),
    text: str = TEXT,
    ttl_ms: int = 3_600_000,
) -> tuple[str, bytes]:
    """``sender``'s police message (signed with ``sender_secrets``, the world's keys of
    ``sender`` by default), addressed to ``recipients`` (``to`` alone by default), then
    attested and wrapped for ``to`` by a GS whose directory is ``routed_by``, whatever
    the header says: (message id, the delivery ``to``'s gateway reads)."""
    secrets = sender_secrets or w.secrets[sender]
    now = system_clock()
    h = Header(
        message_id=new_message_id(now),
        sender=secrets.station,
        sender_key_id=secrets.signing_key_id,
        recipients=recipients or Recipients.to(to),
        kind="POLICE_MESSAGE",
        precedence=Precedence.ROUTINE,
        created_ms=now,
        expires_ms=now + ttl_ms,
        language=Language.EN,
        payload_fingerprint=STORE.fingerprint("net.i24.PoliceMessage"),
        excluded=excluded,
    )
    payload = STORE.encode_single("net.i24.PoliceMessage", {**PM, "text": text})
    env = Sender(secrets, routed_by.current_encryption_key("GS", now), store=STORE).seal(h, payload)
    router = Router(w.secrets["GS"], routed_by, ReplayWindow(clock=system_clock), store=STORE)
    return h.message_id, router.deliver(router.open(env), [to])[to]


async def produce(conn: KafkaConnection, topic: str, *values: bytes) -> None:
    """Each of ``values`` to ``topic``, acknowledged, in order (a gateway's in topic)."""
    producer = AIOKafkaProducer(max_request_size=2 << 20, **conn.client_kwargs())
    await producer.start()
    try:
        for v in values:
            await producer.send_and_wait(topic, v)
    finally:
        await producer.stop()


async def wait_until(pred: Callable[[], Any], seconds: float, what: str) -> None:
    """Poll ``pred`` (a state of the gateway; plain or async) until it holds, or fail at
    the deadline saying ``what`` did not happen."""
    deadline = time.monotonic() + seconds
    while True:
        v = pred()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


class Api:
    """What the tests read of a running gateway's HTTP API."""

    def __init__(self, h: httpx.AsyncClient) -> None:
        self.h = h

    async def inbox(self) -> list[str]:
        """Message ids of the stored messages, in the inbox's order."""
        return [m["message_id"] for m in (await self.h.get("/v1/inbox")).json()["messages"]]

    async def rejected(self) -> list[str]:
        """Reasons of the refused deliveries, in order."""
        return [r["reason"] for r in (await self.h.get("/v1/rejected")).json()["rejected"]]

    async def ready(self) -> bool:
        return (await self.h.get("/readyz")).status_code == 200

    async def metric(self, line: str) -> bool:
        """``line`` is one of the gateway's ``/metrics`` lines (name, labels and value)."""
        return line in (await self.h.get("/metrics")).text

    async def count(self, what: Callable[[], Any], n: int) -> bool:
        """At least ``n`` of ``what`` (``api.inbox`` or ``api.rejected``): a wait condition."""
        return len(await what()) >= n
