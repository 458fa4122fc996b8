"""The Article 3 neutrality policy: a declarative TOML file and a small, pure engine.

    policy = load_policy(Path("deploy/policy/article3.toml"))
    engine = Engine(policy)
    verdict = engine.evaluate(Facts.from_message(kind=..., sender="FR", ...))
    verdict.outcome  # Outcome.DELIVER | HOLD | REFUSE
    verdict.rule, verdict.reasons
    verdict.hits     # per concept and language: the terms and the text's words that matched

Every decision names the rule that fired and carries machine-readable
reasons; the file format, the matching (``_match.py``: stems, proximity,
negation), the shipped rules and the evaluation on the labelled corpus
(``_eval.py``, ``i24net policy eval``) are described in ``docs/policy.md``.
"""

from __future__ import annotations

from i24net.policy._engine import (
    CONTENT_WANTED,
    DEFAULT_RULE,
    FLOOR_PREDOMINANCE,
    FLOOR_WANTED,
    Engine,
    Facts,
    Hit,
    Subject,
    Verdict,
)
from i24net.policy._match import Lexicon, Matcher, Term, compile_concept
from i24net.policy._model import (
    Basis,
    Indicator,
    Matching,
    Outcome,
    Policy,
    RefugeeCondition,
    Rule,
    WantedPersonContent,
    When,
    load_policy,
    parse_policy,
)
from i24net.policy._text import compile_term, normalise

__all__ = [
    "CONTENT_WANTED",
    "DEFAULT_RULE",
    "FLOOR_PREDOMINANCE",
    "FLOOR_WANTED",
    "Basis",
    "Engine",
    "Facts",
    "Hit",
    "Indicator",
    "Lexicon",
    "Matcher",
    "Matching",
    "Outcome",
    "Policy",
    "RefugeeCondition",
    "Rule",
    "Subject",
    "Term",
    "Verdict",
    "WantedPersonContent",
    "When",
    "compile_concept",
    "compile_term",
    "load_policy",
    "normalise",
    "parse_policy",
]
