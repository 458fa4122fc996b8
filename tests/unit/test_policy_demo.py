"""The demo's policy steps (``i24net.demo_policy``) decide as the demo narrates them.

The steps themselves need the whole network (``i24net demo``); what they rely
on is checked here: the predominance case is held with its hits, and the
operator's added indicator turns the ombudsman message from delivered to held.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from i24net.demo_policy import ADDED_INDICATOR, OMBUDSMAN_TEXT, PREDOMINANCE_FACTS
from i24net.policy import Engine, Facts, Outcome, load_policy, parse_policy

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"


def test_the_predominance_case_is_held_with_its_reasons() -> None:
    e = Engine(load_policy(POLICY))
    v = e.evaluate(
        Facts(
            kind="RED_NOTICE_REQUEST",
            sender="FR",
            texts=(PREDOMINANCE_FACTS,),
            offence_categories=("CORRUPTION",),
        )
    )
    assert v.outcome is Outcome.HOLD
    cats = {h.category for h in v.hits}
    assert {"status", "political_context", "ordinary_crime"} <= cats
    assert "A3-PREDOMINANCE" in v.also_matched


def test_the_operators_added_indicator_changes_the_decision() -> None:
    text = POLICY.read_text(encoding="utf-8")
    facts = Facts(kind="POLICE_MESSAGE", sender="FR", texts=(OMBUDSMAN_TEXT,))
    before = Engine(parse_policy(tomllib.loads(text))).evaluate(facts)
    after = Engine(parse_policy(tomllib.loads(text + ADDED_INDICATOR))).evaluate(facts)
    assert before.outcome is Outcome.DELIVER
    assert (after.outcome, after.rule) == (Outcome.HOLD, "A3-PREDOMINANCE")
    assert "indicator:status:status.ombudsman" in after.reasons
