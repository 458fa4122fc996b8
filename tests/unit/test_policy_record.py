"""What the screen saw is recorded: the held record's ``i24-screen`` header and the audit reason.

The review console highlights ``words`` in the decrypted text, and the audit
keeps, for every screened decision, which concepts were found in which
language by which words; neither ever holds the text itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from i24net.audit import Entry, encode_reason
from i24net.envelope import Recipients
from i24net.policy import Engine, Facts, Hit, Outcome, Verdict, load_policy
from i24net.policy._engine import HIT_RECORD_MAX, HIT_WORDS_MAX
from i24net.replay import ReplayWindow
from i24net.router.metrics import RouterMetrics
from i24net.router.pipeline import Decided, Pipeline
from i24net.router.settings import Topics
from i24net.router.testing import Network, build_network, hints, police_message, red_notice

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
T0 = 1_780_000_000_000
TOPICS = Topics(prefix="t.")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(("FR", "JP"), tmp_path_factory.mktemp("keys"), now_ms=T0)


@pytest.fixture
def pipeline(net: Network) -> Pipeline:
    p = Pipeline(
        secrets=net.secrets["GS"],
        directory=net.directory,
        replay=ReplayWindow(clock=lambda: T0),
        engine=Engine(load_policy(POLICY)),
        topics=TOPICS,
        store=net.store,
        actor="router/a",
        metrics=RouterMetrics.create(CollectorRegistry()),
    )
    p.policy_digest = "0123456789abcdef"
    return p


def run(net: Network, p: Pipeline, kind: str, payload: dict[str, Any]) -> Decided:
    h, data = net.gateway("FR", T0).message(kind, payload, Recipients.to("JP"), T0)
    return p.process(TOPICS.out("FR"), "t:0:1", b"k", data, list(hints(h)), set())


def reason_of(e: Entry) -> dict[str, Any]:
    assert e.reason is not None
    out: dict[str, Any] = json.loads(e.reason)
    return out


TEXT = "Wanted for insulting the President and for membership of a banned opposition party."


def test_a_held_record_carries_the_hits_for_the_console(net: Network, pipeline: Pipeline) -> None:
    d = run(net, pipeline, "RED_NOTICE_REQUEST", red_notice(TEXT, category="OTHER"))
    assert d.status == "held"
    (held,) = [o for o in d.outputs if o.topic == TOPICS.quarantine]
    screen = json.loads(dict((k, bytes(v)) for k, v in held.headers)["i24-screen"])
    hits = {h["indicator"]: h for h in screen["hits"]}
    assert hits["expression.insult_authority"] == {
        "indicator": "expression.insult_authority",
        "category": "expression",
        "lang": "en",
        "words": ["insulting", "President"],
    }
    assert {"membership", "banned", "opposition", "party"} <= set(
        hits["association.opposition_membership"]["words"]
    )
    assert TEXT not in json.dumps(screen) and "Wanted" not in json.dumps(screen)
    (entry,) = d.audit
    audit = reason_of(entry)
    assert audit["hits"] == screen["hits"]
    assert audit["policy"] == "0123456789abcdef" and audit["rule"] == screen["rule"]


def test_a_refusal_records_its_hits_and_a_clean_delivery_none(
    net: Network, pipeline: Pipeline
) -> None:
    d = run(net, pipeline, "POLICE_MESSAGE", police_message("Convicted of blasphemy online."))
    assert d.status == "refused"
    (entry,) = d.audit
    (hit,) = reason_of(entry)["hits"]
    assert (hit["category"], hit["words"]) == ("religious", ["blasphemy"])
    clean = run(net, pipeline, "POLICE_MESSAGE", police_message("Theft of a car in Lyon."))
    assert clean.status == "delivered"
    (entry,) = clean.audit
    assert "hits" not in reason_of(entry) or all(
        h["category"] == "ordinary_crime" for h in reason_of(entry)["hits"]
    )


def test_the_record_is_bounded_whatever_the_text_matches() -> None:
    many = tuple(
        Hit(f"i{n}", "political", ("t",), "en", tuple(f"w{k}" for k in range(50)))
        for n in range(100)
    )
    rec = Verdict(Outcome.HOLD, "R", ("r",), many).hit_record()
    assert len(rec) == HIT_RECORD_MAX
    assert all(len(h["words"]) == HIT_WORDS_MAX for h in rec)  # type: ignore[arg-type]
    assert json.loads(encode_reason("R", ["r"], None, rec))["hits"] == rec
    assert "hits" not in json.loads(encode_reason("R", ["r"]))


def test_engine_hits_are_what_gets_recorded() -> None:
    e = Engine(load_policy(POLICY))
    v = e.evaluate(Facts(kind="POLICE_MESSAGE", sender="FR", texts=(TEXT,), language="en"))
    assert v.hit_record() == [h.explain() for h in v.hits]
