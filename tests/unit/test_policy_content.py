"""Screening by content, not by the sender's label (``wanted_person_content``).

The same arrest request, declared as a Red Notice request or as a free-text
police message or diffusion, meets the same wanted-person rules and floor, in
Arabic, English, French and Spanish; messages that merely mention an arrest
that already happened are not requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from i24net.errors import PolicyError
from i24net.policy import CONTENT_WANTED, Engine, Facts, Outcome, Subject, load_policy, parse_policy

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"
LANGS = ["ar", "en", "fr", "es"]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_policy(POLICY))


def facts(kind: str, text: str, **kw: object) -> Facts:
    return Facts(kind=kind, sender=str(kw.pop("sender", "XA")), texts=(text,), **kw)  # type: ignore[arg-type]


# An arrest request for an ordinary crime (no indicator of any Article 3 category).
REQUEST = {
    "en": "Armed robbery of a jewellery shop. "
    "Please locate and arrest the subject with a view to extradition.",
    "fr": "Vol à main armée d'une bijouterie. "
    "Prière de localiser et arrêter l'intéressé en vue de son extradition.",
    "es": "Robo a mano armada en una joyería. "
    "Se solicita localizar y detener al sujeto con fines de extradición.",
    "ar": "سطو مسلح على متجر مجوهرات. يرجى القبض على المشتبه به بهدف تسليمه.",
}
# Only an action and a marker in one sentence (no phrase that asks by itself).
ACTION_AND_MARKER = {
    "en": "We request the arrest of the subject.",
    "fr": "Veuillez procéder à l'arrestation de l'intéressé.",
    "es": "Rogamos procedan a su arresto.",
    "ar": "نرجو اعتقال المشتبه به.",
}
# The same arrest request about a journalist, with no ordinary charge.
JOURNALIST = {
    "en": "The journalist wrote a column. Please arrest him.",
    "fr": "Le journaliste a écrit un article. Veuillez l'arrêter.",
    "es": "El periodista escribió una columna. Se solicita su detención.",
    "ar": "كتب الصحفي مقالا. يرجى القبض عليه.",
}
# Ordinary police messages, some about an arrest that already happened.
ORDINARY = {
    "en": [
        "The suspect was arrested yesterday in Lyon; fingerprints attached.",
        "Armed robbery of a jewellery shop, two victims injured.",
        "He was arrested on 3 May. Please send his criminal record.",
        "After his arrest in 2019 he was released on bail.",
    ],
    "fr": [
        "Le suspect a été arrêté hier à Lyon ; empreintes jointes.",
        "Vol à main armée d'une bijouterie, deux victimes blessées.",
        "Il a été interpellé le 3 mai. Veuillez nous transmettre son casier judiciaire.",
        "Après son arrestation en 2019, il a été libéré sous caution.",
    ],
    "es": [
        "El sospechoso fue detenido ayer en Madrid; se adjuntan huellas.",
        "Robo a mano armada en una joyería.",
        "Fue arrestado el 3 de mayo. Se solicita su historial delictivo.",
        "Tras su detención en 2019 quedó en libertad bajo fianza.",
    ],
    "ar": [
        "تم القبض على المشتبه به أمس في القاهرة.",
        "سطو مسلح على متجر مجوهرات.",
        "اعتقل في 3 مايو. يرجى إرسال سجله الجنائي.",
    ],
}
FREE_TEXT = ["POLICE_MESSAGE", "DIFFUSION"]
REFUGEE = Subject("RECOGNISED_REFUGEE", "DE", ("SY",))


def assert_content(v: object, expected: bool) -> None:
    reasons = v.reasons  # type: ignore[attr-defined]
    assert (CONTENT_WANTED in reasons) is expected, reasons
    hits = [h for h in v.hits if h.category == "wanted_request"]  # type: ignore[attr-defined]
    assert bool(hits) is expected and all(h.terms for h in hits), hits


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", FREE_TEXT)
def test_refugee_request_is_refused_whatever_the_declared_kind(
    engine: Engine, lang: str, kind: str
) -> None:
    red = engine.evaluate(
        facts("RED_NOTICE_REQUEST", REQUEST[lang], sender="SY", subjects=(REFUGEE,))
    )
    free = engine.evaluate(facts(kind, REQUEST[lang], sender="SY", subjects=(REFUGEE,)))
    assert (red.outcome, red.rule, red.reason) == (
        Outcome.REFUSE,
        "A2-REFUGEE-FLED",
        "refugee_from_country_fled",
    )
    assert (free.outcome, free.rule, free.reason) == (red.outcome, red.rule, red.reason)
    assert_content(red, False)  # the declared kind made it a request
    assert_content(free, True)
    # From another country: held for review, like the Red Notice request.
    other = engine.evaluate(facts(kind, REQUEST[lang], sender="FR", subjects=(REFUGEE,)))
    assert (other.outcome, other.rule) == (Outcome.HOLD, "A2-REFUGEE-PROTECTED")
    assert_content(other, True)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", FREE_TEXT)
def test_action_and_marker_in_one_sentence_make_a_request(
    engine: Engine, lang: str, kind: str
) -> None:
    v = engine.evaluate(facts(kind, ACTION_AND_MARKER[lang], sender="SY", subjects=(REFUGEE,)))
    assert (v.outcome, v.rule) == (Outcome.REFUSE, "A2-REFUGEE-FLED"), v
    assert_content(v, True)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", FREE_TEXT)
def test_journalist_arrest_request_is_held_like_the_red_notice_request(
    engine: Engine, lang: str, kind: str
) -> None:
    red = engine.evaluate(facts("RED_NOTICE_REQUEST", JOURNALIST[lang]))
    free = engine.evaluate(facts(kind, JOURNALIST[lang]))
    assert (red.outcome, red.rule) == (Outcome.HOLD, "WANTED-PERSON-RISK"), red
    assert (free.outcome, free.rule) == (red.outcome, red.rule), free
    assert_content(red, False)
    assert_content(free, True)
    assert "indicator:status:status.person" in free.reasons


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", FREE_TEXT)
def test_ordinary_messages_and_past_arrests_are_delivered(
    engine: Engine, lang: str, kind: str
) -> None:
    for text in ORDINARY[lang]:
        v = engine.evaluate(facts(kind, text, sender="SY", subjects=(REFUGEE,)))
        assert (v.outcome, v.rule) == (Outcome.DELIVER, "DEFAULT"), (text, v)
        assert_content(v, False)


def test_the_hit_names_the_matched_terms(engine: Engine) -> None:
    v = engine.evaluate(facts("POLICE_MESSAGE", REQUEST["en"]))
    (hit,) = [h for h in v.hits if h.category == "wanted_request"]
    assert hit.indicator == "wanted_person_content"
    assert hit.terms == (
        "locate and arrest",
        "with a view to extradition",
        "arrest",
        "extradition",
        "please",
    )


def test_action_and_marker_in_different_sentences_are_no_request(engine: Engine) -> None:
    v = engine.evaluate(facts("POLICE_MESSAGE", "A journalist. Arrest. Please reply."))
    assert (v.outcome, v.rule) == (Outcome.DELIVER, "DEFAULT")
    assert_content(v, False)


def test_only_the_declared_free_text_kinds_are_screened_by_content(engine: Engine) -> None:
    # A yellow notice (missing person) is not screened by content.
    v = engine.evaluate(facts("YELLOW_NOTICE_REQUEST", JOURNALIST["en"]))
    assert v.outcome is Outcome.DELIVER
    assert_content(v, False)
    raw = engine.policy.model_dump(mode="json")
    raw["wanted_person_content"]["kinds"].append("YELLOW_NOTICE_REQUEST")
    v = Engine(parse_policy(raw)).evaluate(facts("YELLOW_NOTICE_REQUEST", JOURNALIST["en"]))
    assert (v.outcome, v.rule) == (Outcome.HOLD, "WANTED-PERSON-RISK")
    assert_content(v, True)
    # Without the section, the declared kind alone decides (the former behaviour).
    raw["wanted_person_content"] = None
    v = Engine(parse_policy(raw)).evaluate(facts("POLICE_MESSAGE", JOURNALIST["en"]))
    assert v.outcome is Outcome.DELIVER
    assert_content(v, False)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"kinds": ["NOPE"]}, "unknown message kind"),
        ({"markers": {}}, "actions and markers go together"),
        ({"requests": {}, "actions": {}, "markers": {}}, "needs requests or actions"),
        ({"requests": {"de": ["verhaften"]}}, "requests"),
        ({"actions": {"en": ["*"]}}, "no word"),
    ],
)
def test_invalid_content_sections_are_refused(
    engine: Engine, patch: dict[str, object], message: str
) -> None:
    raw = engine.policy.model_dump(mode="json")
    raw["wanted_person_content"] |= patch
    with pytest.raises(PolicyError, match=message):
        parse_policy(raw)
