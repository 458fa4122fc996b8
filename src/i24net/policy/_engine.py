"""The neutrality screen: facts in, a decision out. Pure: no I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from i24net.policy._match import Match, Matcher, compile_concept
from i24net.policy._model import (
    Basis,
    Outcome,
    Policy,
    RefugeeCondition,
    Rule,
    WantedPersonContent,
    When,
)
from i24net.policy._text import compile_term, key_word, needle, normalise

PROTECTED = frozenset({"RECOGNISED_REFUGEE", "ASYLUM_SEEKER"})

# Payload fields whose free text is screened (docs/schemas.md "Free text screened").
SCREENED_FIELDS = frozenset(
    {
        "facts",
        "remarks",
        "description",
        "text",
        "subject_line",
        "legal_provision",
        "legal_basis",
        "action_requested",
        "modus_operandi",
        "threat",
    }
)
_SKIP_SUBTREES = frozenset({"identity_documents"})


@dataclass(frozen=True, slots=True)
class Subject:
    """What the screen needs to know about a person who is a subject."""

    refugee_status: str = "UNKNOWN"
    refugee_status_granted_by: str | None = None
    nationalities: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the screen looks at, taken from the verified header and decrypted payload."""

    kind: str
    sender: str
    offence_categories: tuple[str, ...] = ()
    texts: tuple[str, ...] = field(default=(), repr=False)
    subjects: tuple[Subject, ...] = ()
    handling: tuple[str, ...] = ()
    language: str = "en"

    @classmethod
    def from_message(
        cls,
        *,
        kind: str,
        sender: str,
        language: str,
        header_offences: Iterable[str],
        handling: Iterable[tuple[str, str | None]],
        payload: Mapping[str, Any] | None,
    ) -> Facts:
        """Facts from a header's fields and a decoded payload record (any kind)."""
        offences = list(header_offences)
        texts: list[str] = [t for _, t in handling if t]
        subjects: list[Subject] = []
        if payload is not None:
            _walk(payload, texts, offences, subjects)
        return cls(
            kind=kind,
            sender=sender,
            offence_categories=tuple(dict.fromkeys(offences)),
            texts=tuple(texts),
            subjects=tuple(subjects),
            handling=tuple(dict.fromkeys(code for code, _ in handling)),
            language=language,
        )


def _walk(node: Any, texts: list[str], offences: list[str], subjects: list[Subject]) -> None:
    if isinstance(node, Mapping):
        if "refugee_status" in node and "nationalities" in node:
            subjects.append(
                Subject(
                    str(node.get("refugee_status") or "UNKNOWN"),
                    node.get("refugee_status_granted_by"),
                    tuple(node.get("nationalities") or ()),
                )
            )
        if "category" in node and "legal_provision" in node and isinstance(node["category"], str):
            offences.append(node["category"])
        for key, value in node.items():
            if key in _SKIP_SUBTREES:
                continue
            if isinstance(value, str):
                if key in SCREENED_FIELDS:
                    texts.append(value)
            else:
                _walk(value, texts, offences, subjects)
    elif isinstance(node, list | tuple):
        for item in node:
            _walk(item, texts, offences, subjects)


@dataclass(frozen=True, slots=True)
class Hit:
    """One indicator (concept) found in one language: what matched, to explain it.

    ``terms`` are the policy's terms as written; ``words`` the surface words of
    the message that matched them (vocabulary words, never the whole text: a
    reviewer's console highlights them, the audit records them).
    """

    indicator: str
    category: str
    terms: tuple[str, ...]
    lang: str = ""
    words: tuple[str, ...] = ()

    def explain(self) -> dict[str, object]:
        """The hit as recorded with a held message and in the audit."""
        return {
            "indicator": self.indicator,
            "category": self.category,
            "lang": self.lang,
            "words": list(self.words),
        }


@dataclass(frozen=True, slots=True)
class Verdict:
    """The screen's decision: ``outcome``, the ``rule`` that fired, machine-readable ``reasons``.

    ``reasons`` starts with the fired rule's reason, then one
    ``indicator:<category>:<id>`` per indicator found and any floor applied,
    so a reviewer sees everything the screen saw; ``content:wanted_person`` when
    the text (not the declared kind) made the message a wanted-person request,
    and then ``hits`` ends with a ``wanted_request`` hit naming the request terms.
    """

    outcome: Outcome
    rule: str
    reasons: tuple[str, ...]
    hits: tuple[Hit, ...] = ()
    also_matched: tuple[str, ...] = ()
    """Ids of the later rules whose conditions also held (what a reviewer should weigh)."""

    @property
    def reason(self) -> str:
        return self.reasons[0]

    def hit_record(self) -> list[dict[str, object]]:
        """What the screen saw, as recorded with a held message (``i24-screen``) and
        in the audit: per hit its indicator, category, language and matched words
        (vocabulary words of the text, never the text). Bounded (``HIT_RECORD_MAX``
        hits of ``HIT_WORDS_MAX`` words) whatever a hostile text matches."""
        out = []
        for h in self.hits[:HIT_RECORD_MAX]:
            rec = h.explain()
            rec["words"] = list(h.words[:HIT_WORDS_MAX])
            out.append(rec)
        return out


HIT_RECORD_MAX, HIT_WORDS_MAX = 24, 12
FLOOR_WANTED = "FLOOR-WANTED-PERSON-RISK"
CONTENT_WANTED = "content:wanted_person"
"""Reason of a message screened as a wanted-person request for what its text asks
(``wanted_person_content``), not for its declared kind."""
CONTENT_INDICATOR, CONTENT_CATEGORY = "wanted_person_content", "wanted_request"
"""Id and category of the :class:`Hit` naming the request terms that matched."""
FLOOR_PREDOMINANCE = "FLOOR-PREDOMINANCE"
DEFAULT_RULE = "DEFAULT"


@dataclass(frozen=True, slots=True)
class _Derived:
    hits: tuple[Hit, ...]
    categories: frozenset[str]
    wanted: bool
    content: tuple[str, ...]
    """The request terms that made a free-text message a wanted-person request."""
    ordinary_crime: bool
    risk: bool
    protected: bool
    protected_from_sender: bool
    recognised_from_sender: bool


_Term = tuple[str, str | None, str, re.Pattern[str]]
# Sentence ends (Latin and Arabic) and line breaks: an action and a request
# marker count together only inside one sentence.
_SENTENCE = re.compile(r"[.!?;\n\u061f\u061b\u06d4]+")


def _terms(by_lang: Mapping[Any, Sequence[str]]) -> list[_Term]:
    return [(t, key_word(t), needle(t), compile_term(t)) for ts in by_lang.values() for t in ts]


def _found(terms: Sequence[_Term], text: str) -> list[str]:
    return [t for t, _, lit, pat in terms if lit in text and pat.search(text)]


class _Content:
    """The ``wanted_person_content`` section, compiled (see :class:`WantedPersonContent`)."""

    def __init__(self, c: WantedPersonContent) -> None:
        self.kinds = frozenset(c.kinds)
        self.requests = _terms(c.requests)
        self.actions = _terms(c.actions)
        self.markers = _terms(c.markers)

    def asks_for_arrest(self, norm: Sequence[str]) -> tuple[str, ...]:
        """The terms by which normalised texts ask for an arrest (empty: they do not).

        A request phrase anywhere, or an action and a marker in one sentence. Every
        literal is a substring test first; a regular expression only runs on a text
        that holds its literal (most messages hold none of these few terms).
        """
        found: list[str] = []
        for text in norm:
            found += _found(self.requests, text)
            if not any(lit in text for _, _, lit, _ in self.actions) or not any(
                lit in text for _, _, lit, _ in self.markers
            ):
                continue
            for sentence in _SENTENCE.split(text):
                acts = _found(self.actions, sentence)
                if acts:
                    marks = _found(self.markers, sentence)
                    if marks:
                        found += acts + marks
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class _Cond:
    """A rule's :class:`When` with its lists as frozensets (built once per engine)."""

    kinds: frozenset[str] | None
    wanted_person: bool | None
    indicators_any: frozenset[str] | None
    indicators_none: frozenset[str] | None
    offence_any: frozenset[str] | None
    ordinary_crime: bool | None
    risk: bool | None
    refugee: RefugeeCondition | None
    handling_any: frozenset[str] | None

    @classmethod
    def of(cls, w: When) -> _Cond:
        def fs(v: Iterable[str] | None) -> frozenset[str] | None:
            return None if v is None else frozenset(v)

        return cls(
            fs(w.kinds),
            w.wanted_person,
            fs(w.indicators_any),
            fs(w.indicators_none),
            fs(w.offence_categories_any),
            w.ordinary_crime,
            w.risk,
            w.refugee,
            fs(w.handling_any),
        )


class Engine:
    """Evaluates a :class:`Policy`: ordered rules, first match wins, then two fixed floors.

    The floors are code, not configuration, because the issue makes them
    invariants of the network:

    - ``FLOOR-WANTED-PERSON-RISK``: a wanted-person request (a notice request or
      wanted-person diffusion, or a free-text message whose text asks for an
      arrest: ``wanted_person_content``) with any risk indicator is never
      delivered without review: a ``deliver`` becomes ``hold``.
    - ``FLOOR-PREDOMINANCE``: an ordinary crime together with an Article 3
      indicator is a predominance case, weighed by people: a ``deliver``, or a
      ``refuse`` by an Article 3 rule or the default, becomes ``hold``.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # Every indicator term compiled once into one matcher (stems cached per word).
        lexicon = policy.matching.lexicon()
        self._owner: list[int] = []  # per term, the index of its indicator
        concepts = []
        for n, ind in enumerate(policy.indicators):
            for lang, terms in ind.terms.items():
                for t in terms:
                    concepts.append(compile_concept(t, lang, lexicon))
                    self._owner.append(n)
        self.matcher = Matcher(concepts, lexicon)
        c = policy.wanted_person_content
        self._content = _Content(c) if c is not None else None
        self._conds = {id(r.when): _Cond.of(r.when) for r in policy.rules}
        self._wanted = frozenset(policy.wanted_person_kinds)
        self._review = frozenset(policy.review_kinds)
        self._risk = frozenset(policy.risk_categories)
        self._a3 = frozenset(policy.article3_categories)
        self._not_ordinary = frozenset(policy.not_ordinary_crime)

    def indicators(self, texts: Sequence[str], language: str | None = None) -> tuple[Hit, ...]:
        """The indicators found in ``texts``: one :class:`Hit` per indicator and
        language, in policy order, naming the terms and the words that matched.
        ``language``: the message's, whose terms are compared by stem (the others'
        by their exact forms; None: all by stem). A hit in another language that
        adds no word to the same indicator's hit in the message's language is left
        out (the same word, "elections", is a French and an English term)."""
        return self._hits(self.matcher.find(texts, language), language)

    def _hits(self, matches: Sequence[Match], language: str | None = None) -> tuple[Hit, ...]:
        by: dict[tuple[int, str], tuple[list[str], list[str]]] = {}
        for m in matches:
            terms, words = by.setdefault((self._owner[m.index], m.term.lang), ([], []))
            terms.append(m.term.text)
            words.extend(m.words)
        out = []
        for (i, lang), (terms, words) in sorted(by.items()):
            own = by.get((i, language)) if language is not None else None
            if lang != language and own is not None and set(words) <= set(own[1]):
                continue
            ind = self.policy.indicators[i]
            out.append(
                Hit(ind.id, ind.category, tuple(dict.fromkeys(terms)), lang,
                    tuple(dict.fromkeys(words)))
            )  # fmt: skip
        return tuple(out)

    def _derive(self, facts: Facts) -> _Derived:
        hits = self.indicators(facts.texts, facts.language)
        wanted = facts.kind in self._wanted
        content: tuple[str, ...] = ()
        if not wanted and self._content is not None and facts.kind in self._content.kinds:
            norm = [normalise(t) for t in facts.texts if t]
            content = self._content.asks_for_arrest(norm)
        cats = frozenset(h.category for h in hits)
        ordinary = "ordinary_crime" in cats or any(
            c not in self._not_ordinary for c in facts.offence_categories
        )
        protected = any(s.refugee_status in PROTECTED for s in facts.subjects)

        def from_sender(s: Any) -> bool:
            return facts.sender in s.nationalities and facts.sender != s.refugee_status_granted_by

        prot_sender = any(s.refugee_status in PROTECTED and from_sender(s) for s in facts.subjects)
        rec_sender = any(
            s.refugee_status == "RECOGNISED_REFUGEE" and from_sender(s) for s in facts.subjects
        )
        return _Derived(
            hits=hits,
            categories=cats,
            wanted=wanted or bool(content),
            content=content,
            ordinary_crime=ordinary,
            risk=bool(cats & self._risk) or protected,
            protected=protected,
            protected_from_sender=prot_sender,
            recognised_from_sender=rec_sender,
        )

    def _matches(self, w: When, facts: Facts, d: _Derived) -> bool:
        c = self._conds.get(id(w)) or _Cond.of(w)
        if c.kinds is not None and facts.kind not in c.kinds:
            return False
        if c.wanted_person is not None and c.wanted_person != d.wanted:
            return False
        if c.indicators_any is not None and d.categories.isdisjoint(c.indicators_any):
            return False
        if c.indicators_none is not None and not d.categories.isdisjoint(c.indicators_none):
            return False
        if c.offence_any is not None and c.offence_any.isdisjoint(facts.offence_categories):
            return False
        if c.ordinary_crime is not None and c.ordinary_crime != d.ordinary_crime:
            return False
        if c.risk is not None and c.risk != d.risk:
            return False
        if c.refugee is not None:
            ok = {
                RefugeeCondition.RECOGNISED_FROM_SENDER: d.recognised_from_sender,
                RefugeeCondition.PROTECTED_FROM_SENDER: d.protected_from_sender,
                RefugeeCondition.PROTECTED: d.protected,
            }[c.refugee]
            if not ok:
                return False
        return c.handling_any is None or not c.handling_any.isdisjoint(facts.handling)

    def _fire(self, facts: Facts, d: _Derived) -> tuple[Outcome, str, str, Basis | None]:
        for rule in self.policy.rules:
            if self._matches(rule.when, facts, d):
                return rule.decision, rule.id, rule.reason, rule.basis
        if facts.kind in self._review:
            return Outcome.HOLD, "REVIEW-KIND", "kind_requires_review", Basis.REVIEW
        return self.policy.default, DEFAULT_RULE, f"default_{self.policy.default.value}", None

    def evaluate(self, facts: Facts) -> Verdict:
        """The decision for one message (see the class docstring for the floors)."""
        d = self._derive(facts)
        outcome, rule_id, reason, basis = self._fire(facts, d)
        floors: list[str] = []
        predominance = d.ordinary_crime and bool(d.categories & self._a3)
        if (
            predominance
            and outcome is not Outcome.HOLD
            and (outcome is Outcome.DELIVER or basis in (Basis.ARTICLE_3, None))
        ):
            floors.append(f"floor:{FLOOR_PREDOMINANCE}:{rule_id}:{outcome.value}")
            outcome, rule_id, reason = Outcome.HOLD, FLOOR_PREDOMINANCE, "predominance"
        if d.wanted and d.risk and outcome is Outcome.DELIVER:
            floors.append(f"floor:{FLOOR_WANTED}:{rule_id}:{outcome.value}")
            outcome, rule_id, reason = Outcome.HOLD, FLOOR_WANTED, "wanted_person_risk"
        reasons = [reason, *floors]
        hits = d.hits
        if d.content:
            reasons.append(CONTENT_WANTED)
            words = d.content
            hits += (Hit(CONTENT_INDICATOR, CONTENT_CATEGORY, d.content, facts.language, words),)
        reasons += [f"indicator:{h.category}:{h.indicator}" for h in d.hits]
        if d.protected:
            reasons.append("subject:protected")
        also = tuple(
            r.id for r in self.policy.rules if r.id != rule_id and self._matches(r.when, facts, d)
        )
        return Verdict(outcome, rule_id, tuple(dict.fromkeys(reasons)), hits, also)

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.policy.rules if r.id == rule_id), None)
