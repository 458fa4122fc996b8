"""One hostile or unlucky record never stops the router's decider (issue 11, items 2, 3, 5).

``Pipeline.process`` must turn **every** failure of one record into a decision
about that record: a null Kafka header, a fault in the codec, the screen or
the directory lookup, a decision too large to produce. And whether a sender's
key was revoked is decided at the broker's append time, not at the
``created_ms`` the sender chose.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from i24net.directory import Directory, Status
from i24net.envelope import Recipients
from i24net.errors import Reason
from i24net.policy import Engine, load_policy
from i24net.replay import ReplayWindow
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import DLQ_MAX_KEY, DLQ_MAX_VALUE, Decided, Pipeline
from i24net.router.settings import Topics
from i24net.router.testing import Network, build_network, hints, police_message

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
T0 = 1_780_000_000_000
TOPICS = Topics(prefix="h.")


def clock() -> int:
    return T0


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(("FR", "JP", "BR"), tmp_path_factory.mktemp("keys"), now_ms=T0)


@dataclasses.dataclass
class Router:
    net: Network
    pipeline: Pipeline
    registry: CollectorRegistry
    directory: Directory

    def message(self, text: str = "Theft of a car", **kw: Any) -> tuple[Any, bytes]:
        return self.net.gateway("FR", T0).message(
            "POLICE_MESSAGE", police_message(text), Recipients.to("JP"), T0 - 1000, **kw
        )

    def process(
        self,
        data: bytes,
        headers: list[tuple[str, bytes | None]] | None = None,
        *,
        key: bytes | None = b"k",
        appended_ms: int | None = None,
        topic: str = TOPICS.out("FR"),
    ) -> Decided:
        return self.pipeline.process(
            topic, f"{topic}:0:1", key, data, headers or [], set(), appended_ms
        )

    def refusals(self, reason: str) -> float:
        v = self.registry.get_sample_value("i24net_router_refusals_total", {"reason": reason})
        return v or 0.0


@pytest.fixture
def router(net: Network) -> Iterator[Router]:
    directory = Directory(list(net.directory))
    registry = CollectorRegistry()
    pipeline = Pipeline(
        secrets=net.secrets["GS"],
        directory=directory,
        replay=ReplayWindow(clock=clock),
        engine=Engine(load_policy(POLICY)),
        topics=TOPICS,
        store=net.store,
        actor="router/h",
        metrics=RouterMetrics.create(registry),
    )
    yield Router(net, pipeline, registry, directory)


def dlq(d: Decided) -> Any:
    (out,) = [o for o in d.outputs if o.topic == TOPICS.dlq]
    return out


def header(out: Any, name: str) -> bytes:
    return dict(out.headers)[name]


def delivered_to(d: Decided) -> set[str]:
    return {o.topic.removeprefix(TOPICS.inbox("")) for o in d.outputs if o.topic != TOPICS.dlq}


def test_a_valid_message_is_delivered(router: Router) -> None:
    _, data = router.message()
    d = router.process(data)
    assert d.status == "delivered"
    assert delivered_to(d) == {"JP", "FR"}  # the delivery and the sender's notice


def test_a_null_hint_header_is_refused_malformed_and_the_next_record_flows(
    router: Router,
) -> None:
    h, data = router.message()
    bad = [(k, None if k == "i24-kind" else v) for k, v in hints(h)]
    d = router.process(data, bad)
    assert (d.status, d.reason) == ("refused", "malformed")
    assert header(dlq(d), "i24-reason") == b"malformed"
    _, good = router.message("another theft")
    assert router.process(good, list(hints(h)[:0])).status == "delivered"


def test_a_null_header_that_is_not_a_hint_is_ignored(router: Router) -> None:
    h, data = router.message()
    d = router.process(data, [*hints(h), ("x-trace", None)])
    assert d.status == "delivered"


@pytest.mark.parametrize("where", ["codec", "screen", "directory"])
def test_a_fault_while_deciding_dead_letters_that_record_only(
    router: Router, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Injected faults: the payload codec, the Article 3 screen, the directory lookup."""
    p = router.pipeline

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("injected fault, secret-looking detail")

    target: Any = {"codec": p.store, "screen": p.engine, "directory": router.directory}[where]
    name = {"codec": "decode_single", "screen": "evaluate", "directory": "signing_key"}[where]
    _, data = router.message()
    with monkeypatch.context() as m:
        m.setattr(target, name, boom)
        d = router.process(data, key=b"01JKEY")
    assert (d.status, d.reason) == ("refused", "internal_error")
    out = dlq(d)
    assert out.value == data and header(out, "i24-reason") == b"internal_error"
    assert router.refusals("internal_error") == 1
    # the writing station is told (a notice on its inbox), and its id is not burnt:
    assert TOPICS.inbox("FR") in {o.topic for o in d.outputs}
    assert d.record is None
    assert router.process(data).status == "delivered"


def test_a_fault_in_the_refusal_itself_still_dead_letters(
    router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the directory is broken for every lookup (the notice cannot be made)."""

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("injected")

    monkeypatch.setattr(router.directory, "signing_key", boom)
    monkeypatch.setattr(Directory, "__contains__", boom)
    d = router.process(b"\xc3\x01garbage")
    assert d.status == "refused"
    assert header(dlq(d), "i24-reason") == b"bad_version"  # decided before any lookup
    d = router.process(router.message()[1])
    assert (d.status, d.reason) == ("refused", "internal_error")


def test_a_decision_too_large_to_produce_is_dead_lettered_oversized(router: Router) -> None:
    _, data = router.message("x" * 20_000)
    router.pipeline.max_record_bytes = 10_000
    d = router.process(data)
    assert (d.status, d.reason) == ("refused", "oversized")
    assert all(o.size <= 10_000 or o.topic == TOPICS.dlq for o in d.outputs)
    assert router.refusals("oversized") == 1
    assert d.record is not None  # a verified message: final, its id is burnt


def test_the_dead_letter_record_is_bounded_with_size_and_digest(router: Router) -> None:
    huge = b"\x00" * (DLQ_MAX_VALUE + 5000)
    d = router.process(huge, key=b"K" * (DLQ_MAX_KEY + 1))
    out = dlq(d)
    assert len(out.value) == DLQ_MAX_VALUE and out.key is None
    assert header(out, "i24-size") == str(len(huge)).encode()
    assert header(out, "i24-truncated") == b"1"
    assert len(header(out, "i24-digest")) == 64
    small = router.process(b"\x00" * 10, key=b"k")
    assert dlq(small).value == b"\x00" * 10 and "i24-truncated" not in dict(dlq(small).headers)


def revoke_fr_at(router: Router, revoked_at_ms: int) -> None:
    rec = router.directory.record("FR")
    keys = tuple(
        dataclasses.replace(k, status=Status.REVOKED, revoked_at_ms=revoked_at_ms)
        for k in rec.signing_keys
    )
    router.directory.put(dataclasses.replace(rec, signing_keys=keys, serial=rec.serial + 1))


def test_a_backdated_message_appended_after_revocation_is_refused(router: Router) -> None:
    """created_ms (sender-chosen) is a minute before the revocation; the broker appended
    the record after it: refused ``revoked_key``."""
    revoke_fr_at(router, T0 - 500)
    _, data = router.message()  # created at T0 - 1000
    d = router.process(data, appended_ms=T0)
    assert (d.status, d.reason) == ("refused", Reason.REVOKED_KEY.value)


def test_a_message_appended_before_revocation_is_delivered(router: Router) -> None:
    revoke_fr_at(router, T0 - 500)
    _, data = router.message()  # created at T0 - 1000
    assert router.process(data, appended_ms=T0 - 900).status == "delivered"


def test_without_an_append_time_the_routers_clock_decides(router: Router) -> None:
    """A topic that keeps the producer's timestamp gives no trusted time: the router's own
    clock (T0, after the revocation) decides, never ``created_ms``."""
    revoke_fr_at(router, T0 - 500)
    _, data = router.message()
    d = router.process(data, appended_ms=None)
    assert (d.status, d.reason) == ("refused", Reason.REVOKED_KEY.value)


# --- the shared ingress topic (issue 12): the signed sender is the only origin ----------


def notices(d: Decided) -> list[Any]:
    return [o for o in d.outputs if o.topic.startswith(TOPICS.inbox(""))]


def test_on_the_ingress_topic_a_verified_message_is_delivered(router: Router) -> None:
    h, data = router.message()
    d = router.process(data, list(hints(h)), topic=TOPICS.ingress)
    assert d.status == "delivered"
    assert delivered_to(d) == {"JP", "FR"}  # the delivery and the sender's notice


def test_on_the_ingress_topic_an_unverifiable_record_gets_no_notice(router: Router) -> None:
    """Nobody vouches for who wrote it: the ``i24-sender`` hint is a claim, kept for
    operators in the DLQ record, and no notice goes to the claimed station (a notice on
    a claim would let one station forge refusals of another's messages)."""
    h, data = router.message()
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    d = router.process(tampered, list(hints(h)), topic=TOPICS.ingress)
    assert d.status == "refused" and d.reason is not None
    assert header(dlq(d), "i24-claimed-sender") == b"FR"
    assert "i24-sender" not in dict(dlq(d).headers)
    assert notices(d) == []
    assert d.audit[0].sender is None
    failures = router.registry.get_sample_value(
        "i24net_router_verification_failures_total", {"reason": d.reason, "station": "FR"}
    )
    assert failures == 1


def test_a_claimed_sender_outside_the_directory_is_not_a_label(router: Router) -> None:
    h, data = router.message()
    forged = [(k, b"ZZ-NOT-A-STATION" if k == "i24-sender" else v) for k, v in hints(h)]
    d = router.process(data[:-1] + b"\x00", forged, topic=TOPICS.ingress)
    assert d.status == "refused"
    assert "i24-claimed-sender" not in dict(dlq(d).headers)
    failures = router.registry.get_sample_value(
        "i24net_router_verification_failures_total", {"reason": d.reason, "station": "unknown"}
    )
    assert failures == 1


def test_on_a_per_station_topic_the_owner_is_still_told_and_checked(router: Router) -> None:
    """The old layout during the migration: the topic's owner (broker ACLs) gets the
    notice, and a message signed by another station on it is refused unauthorised."""
    h, data = router.message()
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    d = router.process(tampered, list(hints(h)))
    assert [o.topic for o in notices(d)] == [TOPICS.inbox("FR")]
    d = router.process(data, list(hints(h)), topic=TOPICS.out("JP"))
    assert (d.status, d.reason) == ("refused", "unauthorised")
