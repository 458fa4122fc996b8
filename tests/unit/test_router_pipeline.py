"""The router's ``Pipeline`` without a broker: the promises of docs/router.md, one record at a time.

``Pipeline.process`` is a pure decider (one record in, the records to produce
and the audit entries out), so every routing promise that does not depend on
Kafka itself is checked here in milliseconds, with the real envelope library
and keys (``i24net.router.testing.build_network``), the shipped policy
(``deploy/policy/article3.toml``), an in-memory ``ReplayWindow`` and a
``RouterMetrics`` on a fresh ``CollectorRegistry``.

Deliberately not asserted: the DLQ record's value bytes and its headers other
than ``i24-reason`` (the DLQ record is being reduced to a bounded summary);
what is asserted is the decision, the reason, the topics written, the notices
and the audit entries.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from i24net.audit import Action, Entry
from i24net.directory import Directory, Status
from i24net.envelope import Decision, Opened, Precedence, Receiver, Recipients
from i24net.errors import Reason
from i24net.policy import Engine, load_policy, parse_policy
from i24net.replay import ReplayWindow
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import Decided, Out, Pipeline
from i24net.router.settings import Topics
from i24net.router.testing import Network, build_network, hints, police_message, red_notice
from i24net.schemas import KIND_SCHEMAS

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
T0 = 1_780_000_000_000  # a fixed "now" (2026-05-28): the clock of the router and the senders
# FR, DE, IT, ES are in the EUROPE group; JP and BR are not.
STATIONS = ("FR", "DE", "IT", "ES", "JP", "BR")
TOPICS = Topics(prefix="t.")


def clock() -> int:
    return T0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(STATIONS, tmp_path_factory.mktemp("keys"), now_ms=T0)


@dataclasses.dataclass
class World:
    """One pipeline over its own copy of the directory (tests suspend stations in it)."""

    net: Network
    directory: Directory
    registry: CollectorRegistry
    pipeline: Pipeline

    def seal(
        self, station: str, payload: dict[str, Any], to: Recipients, **kw: Any
    ) -> tuple[Any, bytes]:
        kind = kw.pop("kind", "POLICE_MESSAGE")
        return self.net.gateway(station, T0).message(kind, payload, to, T0, **kw)

    def process(
        self,
        station: str,
        data: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        key: bytes | None = b"key",
        batch_ids: set[str] | None = None,
    ) -> Decided:
        return self.pipeline.process(
            TOPICS.out(station),
            f"{TOPICS.out(station)}:0:7",
            key,
            data,
            list(headers),
            set() if batch_ids is None else batch_ids,
        )

    def suspend(self, station: str) -> None:
        rec = self.directory.record(station)
        self.directory.put(dataclasses.replace(rec, status=Status.SUSPENDED))

    def open_as(self, station: str, out: Out) -> Opened:
        """Open a delivery as the recipient's gateway would (sender and router verified)."""
        rx = Receiver(
            self.net.secrets[station],
            self.net.directory,
            ReplayWindow(clock=clock),
            store=self.net.store,
        )
        return rx.open(out.value)

    def notices(self, d: Decided, to: str) -> list[dict[str, Any]]:
        """The status notices of ``d`` addressed to ``to``, decoded."""
        out = []
        for o in d.outputs:
            if o.topic != TOPICS.inbox(to):
                continue
            opened = self.open_as(to, o)
            if opened.header.kind != "STATUS_NOTICE":
                continue
            assert opened.header.sender == "GS"
            _, n = self.net.store.decode_single(opened.payload, expected="net.i24.StatusNotice")
            out.append(n)
        return out

    def sample(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v


def make_world(net: Network, *, suspended_recipients: str | None = None) -> World:
    if suspended_recipients is None:
        policy = load_policy(POLICY)
    else:
        raw = tomllib.loads(POLICY.read_text(encoding="utf-8"))
        raw["suspended_recipients"] = suspended_recipients
        policy = parse_policy(raw, source=str(POLICY))
    directory = Directory(list(net.directory))
    registry = CollectorRegistry()
    pipeline = Pipeline(
        secrets=net.secrets["GS"],
        directory=directory,
        replay=ReplayWindow(clock=clock),
        engine=Engine(policy),
        topics=TOPICS,
        store=net.store,
        actor="router/a",
        metrics=RouterMetrics.create(registry),
    )
    return World(net, directory, registry, pipeline)


@pytest.fixture
def world(net: Network) -> World:
    return make_world(net)


def topics_of(d: Decided) -> list[str]:
    return sorted(o.topic for o in d.outputs)


def header_of(out: Out, name: str) -> str | None:
    values = [bytes(v).decode() for k, v in out.headers if k == name and v is not None]
    return values[0] if values else None


def deliveries(w: World, d: Decided) -> dict[str, Opened]:
    """Recipient station -> its delivery (status notices left out)."""
    got: dict[str, Opened] = {}
    for o in d.outputs:
        station = o.topic.removeprefix(TOPICS.prefix + "i24.in.")
        if o.topic.startswith(TOPICS.prefix + "i24.in."):
            opened = w.open_as(station, o)
            if opened.header.kind != "STATUS_NOTICE":
                got[station] = opened
    return got


def audit_reason(e: Entry) -> dict[str, Any]:
    assert e.reason is not None
    reason: dict[str, Any] = json.loads(e.reason)
    return reason


# --- sender authorisation -----------------------------------------------------------


def test_a_sender_on_another_stations_topic_is_refused_unauthorised(world: World) -> None:
    """FR's genuine, correctly signed envelope written to DE's out topic: ``unauthorised``."""
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    d = world.process("DE", data, hints(h))
    assert (d.status, d.reason) == ("refused", "unauthorised")
    # to the DLQ and a REFUSED notice to DE, the topic's station (it wrote the record);
    # nothing reaches JP, and FR, whose name was borrowed, is not told
    assert topics_of(d) == sorted([TOPICS.dlq, TOPICS.inbox("DE")])
    (dlq,) = (o for o in d.outputs if o.topic == TOPICS.dlq)
    assert header_of(dlq, "i24-reason") == "unauthorised"
    (n,) = world.notices(d, "DE")
    assert (n["status"], n["reason"]) == ("REFUSED", "unauthorised")
    (entry,) = d.audit
    assert entry.action is Action.REFUSED and entry.sender == "DE"
    assert audit_reason(entry) == {"rule": None, "reasons": ["unauthorised"]}
    assert (
        world.sample(
            "i24net_router_verification_failures_total", reason="unauthorised", station="DE"
        )
        == 1
    )
    assert world.sample("i24net_router_refusals_total", reason="unauthorised") == 1
    assert d.record is None  # not recorded in the seen-id window: FR may still send it


def test_the_same_envelope_on_its_senders_topic_is_delivered(world: World) -> None:
    """The control for the test above: only the topic differs."""
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    d = world.process("FR", data, hints(h))
    assert d.status == "delivered", d.reason


# --- recipient expansion ------------------------------------------------------------


def test_all_is_every_directory_station_but_sender_and_gs_minus_exclusions_and_suspended(
    world: World,
) -> None:
    world.suspend("ES")
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.all(), excluded=("IT",))
    d = world.process("FR", data, hints(h))
    assert d.status == "delivered", d.reason
    got = deliveries(world, d)
    assert sorted(got) == ["BR", "DE", "JP"]  # not FR (sender), GS, IT (excluded), ES (suspended)
    for opened in got.values():
        assert opened.header.message_id == h.message_id
        assert opened.attestation.decision is Decision.SCREEN_PASSED
        assert sorted(opened.attestation.recipients) == ["BR", "DE", "JP"]
    (n,) = world.notices(d, "FR")
    assert n["status"] == "DELIVERED" and n["stations"] == ["BR", "DE", "JP"]
    # the suspended station is named with its reason; an exclusion is the sender's own choice
    assert n["explanation"] == "not delivered to: ES (suspended_station)"
    (entry,) = d.audit
    assert entry.action is Action.DELIVERED and sorted(entry.recipients) == ["BR", "DE", "JP"]
    assert world.sample("i24net_router_deliveries_total", station="ES") == 0
    assert world.sample("i24net_router_deliveries_total", station="DE") == 1


def test_region_is_the_senders_group_minus_the_sender_exclusions_and_suspended(
    world: World,
) -> None:
    world.suspend("IT")
    h, data = world.seal(
        "FR", police_message("Stolen car"), Recipients.in_region("EUROPE"), excluded=("DE",)
    )
    d = world.process("FR", data, hints(h))
    assert d.status == "delivered", d.reason
    assert sorted(deliveries(world, d)) == ["ES"]  # JP, BR are not in EUROPE
    (n,) = world.notices(d, "FR")
    assert n["stations"] == ["ES"]
    assert n["explanation"] == "not delivered to: IT (suspended_station)"


def test_region_reaches_every_member_of_the_group(world: World) -> None:
    """Without exclusions or suspensions: the control for the test above."""
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.in_region("EUROPE"))
    d = world.process("FR", data, hints(h))
    assert sorted(deliveries(world, d)) == ["DE", "ES", "IT"]


def test_an_explicit_suspended_or_unknown_recipient_is_named_in_the_notice(world: World) -> None:
    world.suspend("BR")
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP", "BR", "ZZ"))
    d = world.process("FR", data, hints(h))
    assert d.status == "delivered"
    assert sorted(deliveries(world, d)) == ["JP"]
    (n,) = world.notices(d, "FR")
    assert n["explanation"] == "not delivered to: BR (suspended_station), ZZ (unknown_recipient)"


def test_no_deliverable_recipient_is_refused_with_the_stations_named(world: World) -> None:
    world.suspend("JP")
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    d = world.process("FR", data, hints(h))
    assert (d.status, d.reason) == ("refused", "unknown_recipient")
    assert topics_of(d) == sorted([TOPICS.dlq, TOPICS.inbox("FR")])
    (n,) = world.notices(d, "FR")
    assert (n["status"], n["stations"]) == ("REFUSED", ["JP"])
    assert n["explanation"] == "no deliverable recipient: JP=suspended_station"


def test_suspended_recipients_deliver_keeps_a_suspended_station(net: Network) -> None:
    w = make_world(net, suspended_recipients="deliver")
    w.suspend("ES")
    h, data = w.seal("FR", police_message("Stolen car"), Recipients.all())
    d = w.process("FR", data, hints(h))
    assert "ES" in deliveries(w, d)


# --- record header hints --------------------------------------------------------------


@pytest.mark.parametrize("hint", ["i24-msgid", "i24-sender", "i24-kind", "i24-precedence"])
def test_a_hint_that_contradicts_the_signed_header_is_malformed(world: World, hint: str) -> None:
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    wrong = {
        "i24-msgid": b"01J0000000000000000000000X",
        "i24-sender": b"DE",
        "i24-kind": b"RED_NOTICE_REQUEST",
        "i24-precedence": Precedence.FLASH.value.encode(),
    }[hint]
    lying = [(k, wrong if k == hint else v) for k, v in hints(h)]
    d = world.process("FR", data, lying)
    assert (d.status, d.reason) == ("refused", "malformed")
    assert topics_of(d) == sorted([TOPICS.dlq, TOPICS.inbox("FR")])
    assert header_of(d.outputs[0], "i24-reason") == "malformed"
    (n,) = world.notices(d, "FR")
    assert (n["status"], n["reason"]) == ("REFUSED", "malformed")


def test_hints_that_agree_or_are_absent_are_fine(world: World) -> None:
    for headers in (hints, lambda h: [], lambda h: [("unrelated", b"x"), *hints(h)[:1]]):
        h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
        assert world.process("FR", data, headers(h)).status == "delivered"


# --- payload ----------------------------------------------------------------------------


def test_a_payload_that_does_not_match_the_header_fingerprint_is_malformed(world: World) -> None:
    """The header claims a Red Notice payload; the (encrypted) body is a police message."""
    gw = world.net.gateway("FR", T0)
    h = gw.header("POLICE_MESSAGE", Recipients.to("JP"), T0)
    h = dataclasses.replace(
        h, payload_fingerprint=world.net.store.fingerprint(KIND_SCHEMAS["RED_NOTICE_REQUEST"])
    )
    data = gw.seal(h, police_message("Stolen car"))
    d = world.process("FR", data, hints(h))
    assert (d.status, d.reason) == ("refused", "malformed")
    assert deliveries(world, d) == {}
    assert (
        world.sample("i24net_router_verification_failures_total", reason="malformed", station="FR")
        == 1
    )


# --- refusals and notices ---------------------------------------------------------------


def test_an_envelope_that_fails_verification_gets_a_refused_notice_to_the_writer(
    world: World,
) -> None:
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    tampered = data[:-40] + bytes([data[-40] ^ 1]) + data[-39:]
    d = world.process("FR", tampered, hints(h), key=h.message_id.encode())
    assert d.status == "refused" and d.reason != "replayed"
    assert topics_of(d) == sorted([TOPICS.dlq, TOPICS.inbox("FR")])
    (n,) = world.notices(d, "FR")
    assert n["status"] == "REFUSED" and n["reason"] == d.reason
    assert n["message_id"] == h.message_id  # the record key names the message


def test_a_replay_is_refused_without_a_notice(world: World) -> None:
    """No echo: a replayed envelope gets no REFUSED notice (it would be a reflector)."""
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    first = world.process("FR", data, hints(h))
    assert first.status == "delivered" and first.record is not None
    world.pipeline.replay.record(*first.record)  # what the app does after the commit
    d = world.process("FR", data, hints(h))
    assert (d.status, d.reason) == ("refused", "replayed")
    assert topics_of(d) == [TOPICS.dlq]
    assert world.sample("i24net_router_status_notices_total", status="refused") == 0


def test_the_same_message_twice_in_one_batch_is_a_replay(world: World) -> None:
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    ids: set[str] = set()
    assert world.process("FR", data, hints(h), batch_ids=ids).status == "delivered"
    d = world.process("FR", data, hints(h), batch_ids=ids)
    assert (d.status, d.reason) == ("refused", "replayed")
    assert topics_of(d) == [TOPICS.dlq]


def test_a_station_not_in_the_directory_gets_no_notice(world: World) -> None:
    d = world.process("XK", b"\xc3\x01garbage")
    assert d.status == "refused"
    assert topics_of(d) == [TOPICS.dlq]


# --- policy outcomes and the audit --------------------------------------------------------


def test_a_policy_refusal_goes_to_the_dlq_with_the_rule_in_the_audit(world: World) -> None:
    h, data = world.seal(
        "FR", police_message("Insulting the head of state on television."), Recipients.to("JP")
    )
    d = world.process("FR", data, hints(h))
    assert (d.status, d.reason) == ("refused", "political_offence")
    assert topics_of(d) == sorted([TOPICS.dlq, TOPICS.inbox("FR")])
    (n,) = world.notices(d, "FR")
    assert (n["status"], n["reason"]) == ("REFUSED", "political_offence")
    (entry,) = d.audit
    assert entry.action is Action.REFUSED and entry.message_id == h.message_id
    assert audit_reason(entry)["rule"] == "A3-POLITICAL"
    assert (
        world.sample("i24net_router_policy_decisions_total", rule="A3-POLITICAL", decision="refuse")
        == 1
    )


def test_a_hold_goes_to_quarantine_with_the_rule_and_notifies_the_sender(world: World) -> None:
    h, data = world.seal(
        "FR",
        red_notice("Opposition journalist accused of fraud after the elections."),
        Recipients.all(),
        kind="RED_NOTICE_REQUEST",
    )
    d = world.process("FR", data, hints(h))
    assert (d.status, d.reason) == ("held", "wanted_person_risk")
    assert topics_of(d) == sorted([TOPICS.quarantine, TOPICS.inbox("FR")])
    (q,) = (o for o in d.outputs if o.topic == TOPICS.quarantine)
    assert q.value == data  # the sender's envelope as is: the review opens it later
    assert header_of(q, "i24-rule") == "WANTED-PERSON-RISK"
    assert header_of(q, "i24-origin") == f"{TOPICS.out('FR')}:0:7"
    (n,) = world.notices(d, "FR")
    assert n["status"] == "HELD_FOR_REVIEW"
    (entry,) = d.audit
    assert entry.action is Action.HELD
    assert audit_reason(entry)["rule"] == "WANTED-PERSON-RISK"


def test_a_delivery_audits_the_rule_that_let_it_through(world: World) -> None:
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP", "BR"))
    d = world.process("FR", data, hints(h))
    assert topics_of(d) == sorted(
        [TOPICS.inbox("JP"), TOPICS.inbox("BR"), TOPICS.inbox("FR")]
    )  # the two recipients and FR's notice, nothing else
    (entry,) = d.audit
    assert entry.action is Action.DELIVERED and entry.actor == "router/a"
    assert audit_reason(entry)["rule"] == "DEFAULT"
    assert sorted(entry.recipients) == ["BR", "JP"]


def test_a_receipt_is_delivered_without_a_status_notice(world: World) -> None:
    receipt = {
        "message_id": "01J0000000000000000000000A",
        "envelope_digest": bytes(32),
        "outcome": "STORED",
        "received_at_ms": T0,
        "reason": None,
    }
    h, data = world.seal("JP", receipt, Recipients.to("FR"), kind="DELIVERY_RECEIPT")
    d = world.process("JP", data, hints(h))
    assert d.status == "delivered", d.reason
    assert topics_of(d) == [TOPICS.inbox("FR")]
    assert audit_reason(d.audit[0])["rule"] == "KIND-RECEIPT"


def test_a_station_may_not_send_a_status_notice(world: World) -> None:
    notice = {
        "message_id": "01J0000000000000000000000A",
        "status": "DELIVERED",
        "stations": ["JP"],
        "reason": None,
        "explanation": None,
        "at_ms": T0,
    }
    h, data = world.seal("FR", notice, Recipients.to("JP"), kind="STATUS_NOTICE")
    d = world.process("FR", data, hints(h))
    assert (d.status, d.reason) == ("refused", "kind_reserved_to_gs")
    assert deliveries(world, d) == {}
    assert audit_reason(d.audit[0])["rule"] == "KIND-GS-ONLY"


def test_every_refusal_reason_is_a_reason_value_or_a_policy_reason(world: World) -> None:
    """The ``refusals_total{reason}`` label stays bounded: verification reasons are ``Reason``s."""
    h, data = world.seal("FR", police_message("Stolen car"), Recipients.to("JP"))
    d = world.process("DE", data, hints(h))
    assert d.reason in {r.value for r in Reason}
