"""The shipped Article 3 policy, rule by rule, in Arabic, English, French and Spanish."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from i24net.errors import PolicyError
from i24net.policy import (
    FLOOR_PREDOMINANCE,
    FLOOR_WANTED,
    Engine,
    Facts,
    Outcome,
    Subject,
    load_policy,
    normalise,
    parse_policy,
)

POLICY = Path(__file__).resolve().parents[2] / "deploy" / "policy" / "article3.toml"


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(load_policy(POLICY))


def facts(kind: str = "POLICE_MESSAGE", *texts: str, **kw: object) -> Facts:
    return Facts(kind=kind, sender=str(kw.pop("sender", "XA")), texts=texts, **kw)  # type: ignore[arg-type]


def lfacts(lang: str, kind: str, *texts: str, **kw: object) -> Facts:
    """Facts of a message declared in ``lang`` (its terms are compared by stem)."""
    return facts(kind, *texts, language=lang, **kw)


# --- purely military: refused (non-wanted kinds), held (wanted kinds) -------------

MILITARY = {
    "en": "The suspect is sought for desertion from his regiment in 2024.",
    "fr": "L'intéressé est poursuivi pour désertion et insoumission.",
    "es": "Se le busca por deserción de su unidad.",
    "ar": "مطلوب بتهمة الفرار من الخدمة العسكرية",
}
EXPRESSION = {
    "en": "Charged with insulting the head of state in a newspaper column.",
    "fr": "Poursuivi pour outrage au chef de l'État dans un article.",
    "es": "Acusado de injurias al Jefe del Estado en redes sociales.",
    "ar": "متهم بإهانة رئيس الدولة في مقال صحفي",
}
POLITICAL = {
    "en": "Sought for high treason and for spying for a foreign power.",
    "fr": "Recherché pour haute trahison et espionnage.",
    "es": "Buscado por traición y espionaje a favor de una potencia extranjera.",
    "ar": "مطلوب بتهمة الخيانة العظمى والتجسس",
}
ASSEMBLY = {
    "en": "He is a member of a banned opposition party and organised an unauthorised rally.",
    "fr": "Membre d'un parti d'opposition dissous, il a organisé une manifestation non autorisée.",
    "es": "Miembro de un partido opositor ilegalizado, convocó una manifestación no autorizada.",
    "ar": "عضو في حزب معارض محظور ونظم مظاهرة غير مرخصة",
}
RELIGIOUS = {
    "en": "Convicted of blasphemy for a post online.",
    "fr": "Condamné pour blasphème.",
    "es": "Condenado por blasfemia.",
    "ar": "أدين بالتجديف",
}
RACIAL = {
    "en": "Prosecuted because of her race: interracial marriage.",
    "fr": "Poursuivi en raison de sa race (mariage interracial).",
    "es": "Perseguido por matrimonio interracial.",
    "ar": "ملاحق بسبب عرقه",
}
PREDOMINANCE = {
    "en": "During an election protest he killed a police officer with a knife.",
    "fr": "Lors d'une manifestation, il a tué un policier.",
    "es": "Durante una protesta asesinó a un policía.",
    "ar": "قتل شرطيا خلال احتجاجات الانتخابات",
}
CLEAN = {
    "en": "Armed robbery of a jewellery shop, two victims injured.",
    "fr": "Vol à main armée d'une bijouterie, deux victimes blessées.",
    "es": "Robo a mano armada en una joyería.",
    "ar": "سطو مسلح على متجر مجوهرات",
}


@pytest.mark.parametrize("lang", ["ar", "en", "fr", "es"])
@pytest.mark.parametrize(
    ("texts", "rule", "reason"),
    [
        (MILITARY, "A3-MILITARY", "military_offence"),
        (POLITICAL, "A3-POLITICAL", "political_offence"),
        (EXPRESSION, "A3-POLITICAL", "political_offence"),
        (ASSEMBLY, "A3-POLITICAL", "political_offence"),
        (RELIGIOUS, "A3-RELIGIOUS", "religious_offence"),
        (RACIAL, "A3-RACIAL", "racial_offence"),
    ],
)
def test_pure_article3_offences_are_refused(
    engine: Engine, lang: str, texts: dict[str, str], rule: str, reason: str
) -> None:
    for kind in ("POLICE_MESSAGE", "DIFFUSION", "YELLOW_NOTICE_REQUEST"):
        v = engine.evaluate(lfacts(lang, kind, texts[lang]))
        assert (v.outcome, v.rule, v.reason) == (Outcome.REFUSE, rule, reason), (kind, v)


@pytest.mark.parametrize("lang", ["ar", "en", "fr", "es"])
@pytest.mark.parametrize("texts", [MILITARY, POLITICAL, EXPRESSION, ASSEMBLY, RELIGIOUS, RACIAL])
@pytest.mark.parametrize("kind", ["RED_NOTICE_REQUEST", "WANTED_PERSON_DIFFUSION"])
def test_every_wanted_person_request_with_a_risk_indicator_is_held(
    engine: Engine, lang: str, texts: dict[str, str], kind: str
) -> None:
    v = engine.evaluate(lfacts(lang, kind, texts[lang]))
    assert v.outcome is Outcome.HOLD
    assert v.rule == "WANTED-PERSON-RISK"
    # The refusal the reviewer should consider is named.
    assert any(r.startswith("A3-") for r in v.also_matched)


@pytest.mark.parametrize("lang", ["ar", "en", "fr", "es"])
@pytest.mark.parametrize("kind", ["POLICE_MESSAGE", "DIFFUSION", "RED_NOTICE_REQUEST"])
def test_predominance_cases_are_held_never_refused_or_delivered(
    engine: Engine, lang: str, kind: str
) -> None:
    v = engine.evaluate(lfacts(lang, kind, PREDOMINANCE[lang]))
    assert v.outcome is Outcome.HOLD, v
    assert v.rule in ("A3-PREDOMINANCE", "WANTED-PERSON-RISK")


@pytest.mark.parametrize("lang", ["ar", "en", "fr", "es"])
def test_military_setting_with_ordinary_crime_is_predominance_not_refusal(
    engine: Engine, lang: str
) -> None:
    text = {
        "en": "A deserter who murdered a shopkeeper.",
        "fr": "Un déserteur a commis un meurtre.",
        "es": "Un desertor cometió un asesinato.",
        "ar": "فرار من الجيش بعد قتل تاجر",
    }[lang]
    v = engine.evaluate(lfacts(lang, "DIFFUSION", text))
    assert (v.outcome, v.rule) == (Outcome.HOLD, "A3-PREDOMINANCE")


def test_declared_offence_category_counts_as_ordinary_crime(engine: Engine) -> None:
    v = engine.evaluate(
        facts("POLICE_MESSAGE", "Took part in a demonstration.", offence_categories=("ASSAULT",))
    )
    assert (v.outcome, v.rule) == (Outcome.HOLD, "A3-PREDOMINANCE")


@pytest.mark.parametrize("lang", ["ar", "en", "fr", "es"])
def test_clean_ordinary_crime_is_delivered(engine: Engine, lang: str) -> None:
    for kind in ("RED_NOTICE_REQUEST", "WANTED_PERSON_DIFFUSION", "POLICE_MESSAGE"):
        v = engine.evaluate(lfacts(lang, kind, CLEAN[lang], offence_categories=("THEFT_ROBBERY",)))
        assert (v.outcome, v.rule) == (Outcome.DELIVER, "DEFAULT"), (kind, v)


@pytest.mark.parametrize("category", ["TERRORISM", "WAR_CRIMES_GENOCIDE"])
def test_terrorism_and_war_crimes_are_processable(engine: Engine, category: str) -> None:
    plain = engine.evaluate(
        facts("POLICE_MESSAGE", "Bombing of a train station.", offence_categories=(category,))
    )
    assert plain.outcome is Outcome.DELIVER
    red = engine.evaluate(
        facts("RED_NOTICE_REQUEST", "Bombing of a station.", offence_categories=(category,))
    )
    assert red.outcome is Outcome.DELIVER
    # With a political element it is reviewed, never refused.
    ctx = engine.evaluate(
        facts("POLICE_MESSAGE", "A dissident accused of bombing.", offence_categories=(category,))
    )
    assert (ctx.outcome, ctx.rule) == (Outcome.HOLD, "A3-TERRORISM-WAR-CRIMES-CONTEXT")


def test_refugee_from_the_country_fled_is_refused(engine: Engine) -> None:
    refugee = Subject("RECOGNISED_REFUGEE", "DE", ("SY",))
    v = engine.evaluate(facts("RED_NOTICE_REQUEST", CLEAN["en"], sender="SY", subjects=(refugee,)))
    assert (v.outcome, v.rule, v.reason) == (
        Outcome.REFUSE,
        "A2-REFUGEE-FLED",
        "refugee_from_country_fled",
    )
    # From another country: held for review (a protected subject is a risk indicator).
    other = engine.evaluate(
        facts("WANTED_PERSON_DIFFUSION", CLEAN["en"], sender="FR", subjects=(refugee,))
    )
    assert (other.outcome, other.rule) == (Outcome.HOLD, "A2-REFUGEE-PROTECTED")
    # Not a wanted-person request: delivered.
    msg = engine.evaluate(facts("POLICE_MESSAGE", CLEAN["en"], sender="SY", subjects=(refugee,)))
    assert msg.outcome is Outcome.DELIVER


def test_refugee_rule_can_hold_instead(engine: Engine) -> None:
    raw = engine.policy.model_dump(mode="json")
    for r in raw["rules"]:
        if r["id"] == "A2-REFUGEE-FLED":
            r["decision"] = "hold"
    e = Engine(parse_policy(raw))
    refugee = Subject("RECOGNISED_REFUGEE", "DE", ("SY",))
    v = e.evaluate(facts("RED_NOTICE_REQUEST", CLEAN["en"], sender="SY", subjects=(refugee,)))
    assert (v.outcome, v.rule) == (Outcome.HOLD, "A2-REFUGEE-FLED")


def test_policy_can_require_review_for_a_whole_kind(engine: Engine) -> None:
    raw = engine.policy.model_dump(mode="json")
    raw["review_kinds"] = ["UNSC_SPECIAL_NOTICE_REQUEST"]
    e = Engine(parse_policy(raw))
    v = e.evaluate(facts("UNSC_SPECIAL_NOTICE_REQUEST", "Sanctioned entity."))
    assert (v.outcome, v.rule, v.reason) == (Outcome.HOLD, "REVIEW-KIND", "kind_requires_review")
    # A refusal rule still wins over the kind-wide review.
    v = e.evaluate(facts("UNSC_SPECIAL_NOTICE_REQUEST", RELIGIOUS["fr"]))
    assert v.outcome is Outcome.REFUSE


def test_kinds_reserved_to_the_gs_and_receipts(engine: Engine) -> None:
    for kind in ("STATUS_NOTICE", "REVIEW_DECISION", "AUDIT_RECORD"):
        assert engine.evaluate(facts(kind)).reason == "kind_reserved_to_gs"
    v = engine.evaluate(facts("DELIVERY_RECEIPT", EXPRESSION["en"]))
    assert (v.outcome, v.rule) == (Outcome.DELIVER, "KIND-RECEIPT")


def test_handling_code_conflict_is_held(engine: Engine) -> None:
    v = engine.evaluate(
        facts("RED_NOTICE_REQUEST", CLEAN["en"], handling=("CRIME_PREVENTION_ONLY",))
    )
    assert (v.outcome, v.rule) == (Outcome.HOLD, "HANDLING-ARREST-PREVENTION-ONLY")


def test_floors_hold_even_when_the_file_would_deliver_or_refuse(engine: Engine) -> None:
    raw = engine.policy.model_dump(mode="json")
    raw["rules"] = [
        {
            "id": "BAD-REFUSE-ALL-POLITICAL",
            "basis": "article3",
            "decision": "refuse",
            "reason": "political_offence",
            "description": "a careless rule that ignores predominance",
            "when": {"indicators_any": ["political_context"]},
        }
    ]
    e = Engine(parse_policy(raw))
    v = e.evaluate(facts("POLICE_MESSAGE", PREDOMINANCE["en"]))
    assert (v.outcome, v.rule) == (Outcome.HOLD, FLOOR_PREDOMINANCE)
    assert "floor:FLOOR-PREDOMINANCE:BAD-REFUSE-ALL-POLITICAL:refuse" in v.reasons
    raw["rules"] = []
    e = Engine(parse_policy(raw))
    v = e.evaluate(facts("WANTED_PERSON_DIFFUSION", "A known dissident."))
    assert (v.outcome, v.rule) == (Outcome.HOLD, FLOOR_WANTED)


def test_facts_from_a_decoded_payload() -> None:
    payload = {
        "case": {"facts": "Il a participé à une manifestation.", "remarks": None},
        "subject": {
            "family_name": "Islam",  # names are never screened
            "nationalities": ["SY"],
            "refugee_status": "RECOGNISED_REFUGEE",
            "refugee_status_granted_by": "DE",
            "identity_documents": [{"number": "blasphemy"}],
        },
        "offences": [{"category": "OTHER", "description": "x", "legal_provision": "art. 1"}],
    }
    f = Facts.from_message(
        kind="RED_NOTICE_REQUEST",
        sender="SY",
        language="fr",
        header_offences=["FRAUD"],
        handling=[("OTHER", "ne pas diffuser au régime")],
        payload=payload,
    )
    assert f.offence_categories == ("FRAUD", "OTHER")
    assert f.subjects == (Subject("RECOGNISED_REFUGEE", "DE", ("SY",)),)
    assert "Islam" not in f.texts and "blasphemy" not in f.texts
    assert "ne pas diffuser au régime" in f.texts
    assert f.handling == ("OTHER",)


def test_normalisation_of_arabic_and_latin_text() -> None:
    assert normalise("Désertion  ÉTÉ") == "desertion ete"
    assert normalise("إهانة") == normalise("اهانه")
    assert normalise("ـتـجـديـف") == "تجديف"


def test_arabic_proclitics_and_word_boundaries(engine: Engine) -> None:
    assert engine.evaluate(facts("POLICE_MESSAGE", "متهم والتجديف")).rule == "A3-RELIGIOUS"
    # "desertion" inside another word does not match; "desert" (the place) does not either.
    assert engine.evaluate(facts("POLICE_MESSAGE", "Lost in the desert.")).rule == "DEFAULT"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"version": 2}, "version"),
        ({"wanted_person_kinds": ["NOPE"]}, "unknown message kind"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"risk_categories": ["ghosts"]}, "has no indicator"),
    ],
)
def test_invalid_policies_are_refused_with_the_reason(
    engine: Engine, patch: dict[str, object], message: str
) -> None:
    raw = engine.policy.model_dump(mode="json") | patch
    with pytest.raises(PolicyError, match=message):
        parse_policy(raw)


def test_bad_toml_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("version = [", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)


def test_the_fast_screen_finds_exactly_what_every_term_searched_in_every_sentence_finds(
    engine: Engine,
) -> None:
    """``Matcher.find`` (one pass, candidate terms only) against ``find_reference``
    (every term tried on every sentence: the definition), on random texts made of
    the vocabulary's own words, glued, cased, negated and cut by sentence ends."""
    rng = random.Random(24)
    words = [
        w
        for ind in engine.policy.indicators
        for ts in ind.terms.values()
        for t in ts
        for part in t.split()
        if not part.startswith("~")
        for w in part.strip("=*").split("|")
    ]
    fillers = ["the", "not", "no", "and", ",", "de", "ليس", "و", "x", "1.5", "-", "desert"]
    glue = [" ", "  ", "\n", ", ", ". ", "; ", "-", "'", "\u00a0", "ـ", "؟ "]
    affixes = ["", "", "", "و", "ال", "بال", "s", "ed", "É", "\u0301"]
    samples = [
        t for d in (MILITARY, POLITICAL, EXPRESSION, ASSEMBLY, RELIGIOUS) for t in d.values()
    ]
    for _ in range(500):
        parts = []
        for _ in range(rng.randint(2, 14)):
            if rng.random() < 0.6:
                w = rng.choice(words)
                w = rng.choice([w, w.upper(), w.title()])
                parts.append(rng.choice(affixes) + w + rng.choice(affixes))
            else:
                parts.append(rng.choice(fillers))
        samples.append("".join(p + rng.choice(glue) for p in parts))
    found_any = 0
    for i in range(0, len(samples), 2):
        texts = samples[i : i + 2]
        for lang in ("en", "fr", "es", "ar", None):
            fast = [(m.index, m.words) for m in engine.matcher.find(texts, lang)]
            assert fast == [
                (m.index, m.words) for m in engine.matcher.find_reference(texts, lang)
            ], (texts, lang)
            found_any += bool(fast)
    assert found_any > 300  # the samples do exercise the matcher
    # a term split across two texts, or two sentences, is no match
    assert engine.indicators(["draft", "evasion"], "en") == ()
    assert engine.indicators(["draft. Evasion"], "en") == ()
    assert engine.indicators(["draft evasion"], "en") != ()
