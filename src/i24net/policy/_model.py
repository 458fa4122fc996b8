"""The policy file: a pydantic model of ``deploy/policy/*.toml`` (see docs/policy.md)."""

from __future__ import annotations

import enum
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from i24net.errors import PolicyError
from i24net.policy._match import (
    DEFAULT_BREAKERS,
    DEFAULT_NEGATIONS,
    DEFAULT_STOPWORDS,
    Lexicon,
    compile_concept,
)
from i24net.policy._text import compile_term
from i24net.schemas import KIND_SCHEMAS


class Outcome(enum.StrEnum):
    """What the router does with a message."""

    DELIVER = "deliver"
    HOLD = "hold"
    REFUSE = "refuse"


class Basis(enum.StrEnum):
    """Why a rule exists; the engine's built-in floors look at it."""

    ARTICLE_2 = "article2"
    ARTICLE_3 = "article3"
    KIND = "kind"
    REVIEW = "review"
    HANDLING = "handling"


class RefugeeCondition(enum.StrEnum):
    """Refugee facts a rule may require (``when.refugee``)."""

    RECOGNISED_FROM_SENDER = "recognised_from_sender"
    """Recognised refugee, and the sender is a country of the person's nationality
    (the country the person fled), not the state that granted protection."""
    PROTECTED_FROM_SENDER = "protected_from_sender"
    """Recognised refugee or asylum seeker, from a country of nationality."""
    PROTECTED = "protected"
    """Recognised refugee or asylum seeker, whoever sends."""


OFFENCE_CATEGORIES = frozenset(
    {
        "HOMICIDE", "ASSAULT", "SEXUAL_OFFENCE", "CHILD_SEXUAL_EXPLOITATION", "KIDNAPPING",
        "HUMAN_TRAFFICKING", "MIGRANT_SMUGGLING", "DRUG_TRAFFICKING", "FIREARMS_TRAFFICKING",
        "TERRORISM", "ORGANISED_CRIME", "FRAUD", "CORRUPTION", "MONEY_LAUNDERING", "CYBERCRIME",
        "THEFT_ROBBERY", "CULTURAL_PROPERTY_TRAFFICKING", "ENVIRONMENTAL_CRIME", "COUNTERFEITING",
        "WAR_CRIMES_GENOCIDE", "OTHER",
    }
)  # fmt: skip
"""Symbols of ``net.i24.OffenceCategory``."""

HANDLING_CODES = frozenset(
    {
        "CRIME_PREVENTION_ONLY",
        "NO_COURT_USE_WITHOUT_CONSENT",
        "NO_ONWARD_DISSEMINATION_WITHOUT_CONSENT",
        "OTHER",
    }
)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
Language = Literal["ar", "en", "es", "fr"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Indicator(_Strict):
    """A concept (a named set of terms in each working language) that signals one category.

    Terms are stem patterns matched within a sentence (syntax: ``_match.py``):
    ``"insult* ~4 president|king"``, ``"opposition party"``, ``"=strike"``.
    """

    id: Annotated[str, Field(pattern=_ID.pattern)]
    category: Annotated[str, Field(pattern=_REASON.pattern)]
    description: str = ""
    terms: dict[Language, list[str]]

    @field_validator("terms")
    @classmethod
    def _terms(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for lang, terms in v.items():
            for t in terms:
                try:
                    compile_concept(t, lang)
                except ValueError as exc:
                    raise ValueError(f"{lang}: {exc}") from None
        if not any(v.values()):
            raise ValueError("an indicator needs at least one term")
        return v


class Matching(_Strict):
    """Words the indicator matcher treats specially, per language (``_match.py``).

    ``stopwords`` are skipped on both sides (so "head of the state" is "head
    state"); a match is dropped when one of ``negations`` stands within
    ``negation_window`` words before it, unless one of ``breakers`` (or a
    comma) stands between them. Absent lists take the built-in defaults.
    """

    stopwords: dict[Language, list[str]] = DEFAULT_STOPWORDS  # type: ignore[assignment]
    negations: dict[Language, list[str]] = DEFAULT_NEGATIONS  # type: ignore[assignment]
    breakers: dict[Language, list[str]] = DEFAULT_BREAKERS  # type: ignore[assignment]
    negation_window: Annotated[int, Field(ge=0, le=10)] = 4

    def lexicon(self) -> Lexicon:
        return Lexicon.of(self.stopwords, self.negations, self.breakers, self.negation_window)


def _check_terms(v: dict[str, list[str]]) -> None:
    for lang, terms in v.items():
        for t in terms:
            try:
                compile_term(t)
            except ValueError as exc:
                raise ValueError(f"{lang}: {exc}") from None


class WantedPersonContent(_Strict):
    """Wording by which a free-text message asks for a person's arrest or extradition.

    The kind a station declares is its own label: the same arrest request can be
    sent as a Red Notice request or as a police message. A message of one of
    ``kinds`` whose text asks for an arrest is screened as a wanted-person request
    (every ``when.wanted_person`` rule and the wanted-person floor apply to it).

    A text asks for an arrest when it holds one of ``requests`` (phrases that ask
    by themselves: "provisional arrest", "with a view to extradition"), or, in one
    sentence, one of ``actions`` ("arrest", "detener") together with one of
    ``markers`` (request wording: "please", "requested", "se solicita"). An action
    word alone is not enough, so "the suspect was arrested yesterday" is not a
    request. Terms are matched like indicator terms (``_text.py``).
    """

    description: str = ""
    kinds: list[str]
    """Free-text kinds screened by content (e.g. POLICE_MESSAGE, DIFFUSION)."""
    requests: dict[Language, list[str]] = {}
    actions: dict[Language, list[str]] = {}
    markers: dict[Language, list[str]] = {}

    @field_validator("requests", "actions", "markers")
    @classmethod
    def _terms(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        _check_terms(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> WantedPersonContent:
        for k in self.kinds:
            if k not in KIND_SCHEMAS:
                raise ValueError(f"unknown message kind {k!r}")
        if any(self.actions.values()) != any(self.markers.values()):
            raise ValueError("actions and markers go together (an action needs a marker)")
        if not any(self.requests.values()) and not any(self.actions.values()):
            raise ValueError("wanted_person_content needs requests or actions and markers")
        return self


class When(_Strict):
    """Conditions of a rule; every condition given must hold (absent ones are ignored)."""

    kinds: list[str] | None = None
    """The message kind is one of these."""
    wanted_person: bool | None = None
    """The message is (true) or is not (false) a wanted-person request: its kind is
    one of ``wanted_person_kinds``, or it is a ``wanted_person_content`` kind whose
    text asks for an arrest or extradition."""
    indicators_any: list[str] | None = None
    """At least one indicator of one of these categories was found."""
    indicators_none: list[str] | None = None
    """No indicator of these categories was found."""
    offence_categories_any: list[str] | None = None
    """At least one declared offence category (header or payload) is one of these."""
    ordinary_crime: bool | None = None
    """An ordinary crime is present (declared category outside ``not_ordinary_crime``,
    or an indicator of category ``ordinary_crime``) (true), or not (false)."""
    risk: bool | None = None
    """Any risk indicator: an indicator of a ``risk_categories`` category, or a
    protected (refugee, asylum seeker) subject."""
    refugee: RefugeeCondition | None = None
    handling_any: list[str] | None = None
    """The source set one of these handling codes."""

    @model_validator(mode="after")
    def _check(self) -> When:
        for k in self.kinds or ():
            if k not in KIND_SCHEMAS:
                raise ValueError(f"unknown message kind {k!r}")
        for c in self.offence_categories_any or ():
            if c not in OFFENCE_CATEGORIES:
                raise ValueError(f"unknown offence category {c!r}")
        for h in self.handling_any or ():
            if h not in HANDLING_CODES:
                raise ValueError(f"unknown handling code {h!r}")
        return self


class Rule(_Strict):
    """One rule: if ``when`` holds, the decision is ``decision`` with ``reason``."""

    id: Annotated[str, Field(pattern=_ID.pattern)]
    basis: Basis
    decision: Outcome
    reason: Annotated[str, Field(pattern=_REASON.pattern)]
    description: str
    when: When = When()


class Policy(_Strict):
    """A whole neutrality policy: indicators, ordered rules (first match wins), default."""

    version: Literal[1]
    name: str
    default: Outcome = Outcome.DELIVER
    wanted_person_kinds: list[str]
    review_kinds: list[str] = []
    """Kinds that always go to human review (unless an earlier rule refuses them)."""
    risk_categories: list[str]
    article3_categories: list[str]
    """Indicator categories of a political, military, religious or racial character
    (nature or context): with an ordinary crime they make a predominance case."""
    not_ordinary_crime: list[str] = ["OTHER"]
    """Declared offence categories that do not by themselves make an ordinary crime."""
    suspended_recipients: Literal["skip", "deliver"] = "skip"
    """What to do with a suspended station in an ALL or REGION expansion (an
    explicitly addressed suspended station is reported in the status notice)."""
    wanted_person_content: WantedPersonContent | None = None
    """Free-text kinds screened as wanted-person requests when their text asks for
    an arrest (absent: only ``wanted_person_kinds`` are wanted-person requests)."""
    matching: Matching = Matching()
    """Stop words, negations and breakers of the indicator matcher."""
    indicators: list[Indicator]
    rules: list[Rule]

    @model_validator(mode="after")
    def _check(self) -> Policy:
        for k in (*self.wanted_person_kinds, *self.review_kinds):
            if k not in KIND_SCHEMAS:
                raise ValueError(f"unknown message kind {k!r}")
        for c in self.not_ordinary_crime:
            if c not in OFFENCE_CATEGORIES:
                raise ValueError(f"unknown offence category {c!r}")
        ids = [r.id for r in self.rules] + [i.id for i in self.indicators]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate rule or indicator ids: {sorted(dup)}")
        lexicon = self.matching.lexicon()
        for ind in self.indicators:
            for lang, terms in ind.terms.items():
                for t in terms:
                    try:
                        compile_concept(t, lang, lexicon)
                    except ValueError as exc:
                        raise ValueError(f"indicator {ind.id}: {lang}: {exc}") from None
        known = {i.category for i in self.indicators} | {"ordinary_crime"}
        for cat in (*self.risk_categories, *self.article3_categories):
            if cat not in known:
                raise ValueError(f"category {cat!r} has no indicator")
        for r in self.rules:
            for cat in (*(r.when.indicators_any or ()), *(r.when.indicators_none or ())):
                if cat not in known:
                    raise ValueError(f"rule {r.id}: category {cat!r} has no indicator")
        return self


def load_policy(path: Path) -> Policy:
    """Read and validate a TOML policy file; ``PolicyError`` names the problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"policy {path} is not valid TOML: {exc}") from exc
    return parse_policy(raw, source=str(path))


def parse_policy(raw: dict[str, Any], *, source: str = "<policy>") -> Policy:
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise PolicyError(f"policy {source} is invalid: {problems}") from exc
