"""Measuring the screen against the labelled corpus (``i24net policy eval``).

The corpus (``tests/policy/corpus/<split>/<lang>.jsonl``, format in its
README and SCHEMA.json) holds cases labelled by what Article 3 practice calls
for:

- ``prohibited`` (six categories): never delivered unreviewed: a hold or a
  refusal both count as caught;
- ``predominance``: held for a person, a refusal or a delivery is a miss;
- ``ordinary``: delivered with no hold; a hold or refusal is a false hold.

Two splits: ``tuning`` (written with the vocabulary; every rule may be tuned
on it) and ``heldout`` (written by another author who never saw the
vocabulary, never edited to fit it). The thresholds are the issue's CI gate:
on tuning, recall on prohibited 100 %, false holds on ordinary <= 5 %, every
predominance case held; on held-out, recall on prohibited >= 90 %. Held-out
false holds and predominance are reported, not gated.

Pure but for reading the corpus and the clock it is given (the process's CPU
time by default: on a shared host the wall clock measures the neighbours).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i24net.errors import PolicyError
from i24net.policy._engine import Engine, Facts, Subject, Verdict
from i24net.policy._model import Outcome

SPLITS = ("tuning", "heldout")
LANGS = ("ar", "en", "es", "fr")
LABELS = ("prohibited", "predominance", "ordinary")
PROHIBITED = ("political", "expression", "assembly_association", "military", "religious", "racial")
CATEGORIES = (*PROHIBITED, "predominance", "ordinary")
KINDS = frozenset({"RED_NOTICE_REQUEST", "DIFFUSION", "POLICE_MESSAGE"})

TUNING_RECALL_MIN = 1.0
TUNING_FALSE_HOLD_MAX = 0.05
TUNING_PREDOMINANCE_HELD_MIN = 1.0
HELDOUT_RECALL_MIN = 0.90


@dataclass(frozen=True, slots=True)
class Case:
    """One labelled case of the corpus."""

    id: str
    split: str
    lang: str
    label: str
    category: str
    kind: str
    sender: str
    offence_categories: tuple[str, ...]
    texts: tuple[str, ...]
    subjects: tuple[Subject, ...]
    note: str = ""

    def facts(self) -> Facts:
        return Facts(
            kind=self.kind,
            sender=self.sender,
            offence_categories=self.offence_categories,
            texts=self.texts,
            subjects=self.subjects,
            handling=(),
            language=self.lang,
        )

    def correct(self, outcome: Outcome) -> bool:
        """Whether the screen did what the label calls for."""
        if self.label == "prohibited":
            return outcome is not Outcome.DELIVER
        if self.label == "predominance":
            return outcome is Outcome.HOLD
        return outcome is Outcome.DELIVER


def _case(raw: Any, where: str, split: str, lang: str) -> Case:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: a case is a JSON object")
    try:
        label, category, kind = str(raw["label"]), str(raw["category"]), str(raw["kind"])
        subjects = tuple(
            Subject(str(s["refugee_status"]), None, tuple(s["nationalities"]))
            for s in raw["subjects"]
        )
        case = Case(
            id=str(raw["id"]),
            split=str(raw["split"]),
            lang=str(raw["lang"]),
            label=label,
            category=category,
            kind=kind,
            sender=str(raw["sender"]),
            offence_categories=tuple(raw["offence_categories"]),
            texts=tuple(str(t) for t in raw["texts"]),
            subjects=subjects,
            note=str(raw.get("note", "")),
        )
    except (KeyError, TypeError) as exc:
        raise PolicyError(f"{where}: missing or malformed field {exc}") from None
    if case.split != split or case.lang != lang:
        raise PolicyError(f"{where}: case {case.id} says {case.split}/{case.lang}")
    if label not in LABELS or category not in CATEGORIES or kind not in KINDS:
        raise PolicyError(f"{where}: case {case.id}: unknown label, category or kind")
    expected_label = "prohibited" if category in PROHIBITED else category
    if label != expected_label:
        raise PolicyError(f"{where}: case {case.id}: category {category} with label {label}")
    return case


def load_corpus(root: Path, splits: Iterable[str] = SPLITS) -> list[Case]:
    """The cases of ``root/<split>/<lang>.jsonl`` for the given splits (a missing
    split directory is no case; a malformed line is a ``PolicyError``)."""
    cases: list[Case] = []
    for split in splits:
        for lang in LANGS:
            path = root / split / f"{lang}.jsonl"
            if not path.exists():
                continue
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise PolicyError(f"cannot read {path}: {exc.strerror}") from exc
            for n, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                where = f"{path}:{n}"
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PolicyError(f"{where}: not JSON ({exc.msg})") from None
                cases.append(_case(raw, where, split, lang))
    return cases


@dataclass(frozen=True, slots=True)
class Result:
    case: Case
    verdict: Verdict

    @property
    def correct(self) -> bool:
        return self.case.correct(self.verdict.outcome)

    def miss(self) -> dict[str, Any]:
        """A miss as reported: what was expected, what the screen did and why."""
        v = self.verdict
        return {
            "id": self.case.id,
            "lang": self.case.lang,
            "label": self.case.label,
            "category": self.case.category,
            "kind": self.case.kind,
            "expected": {
                "prohibited": "hold or refuse",
                "predominance": "hold",
                "ordinary": "deliver",
            }[self.case.label],
            "outcome": v.outcome.value,
            "rule": v.rule,
            "reasons": list(v.reasons),
            "hits": [h.explain() for h in v.hits],
            "note": self.case.note,
        }


def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


@dataclass(slots=True)
class SplitReport:
    """The figures of one split."""

    split: str
    results: list[Result] = field(default_factory=list)
    screen_ms: float = 0.0
    text_bytes: int = 0

    def _count(self, label: str, ok: Callable[[Outcome], bool]) -> tuple[int, int]:
        mine = [r for r in self.results if r.case.label == label]
        return sum(ok(r.verdict.outcome) for r in mine), len(mine)

    @property
    def recall(self) -> float | None:
        """Prohibited cases not delivered unreviewed (held or refused)."""
        return _rate(*self._count("prohibited", lambda o: o is not Outcome.DELIVER))

    @property
    def false_hold_rate(self) -> float | None:
        """Ordinary cases held or refused."""
        return _rate(*self._count("ordinary", lambda o: o is not Outcome.DELIVER))

    @property
    def predominance_held(self) -> float | None:
        return _rate(*self._count("predominance", lambda o: o is Outcome.HOLD))

    @property
    def ms_per_kib(self) -> float | None:
        return None if not self.text_bytes else self.screen_ms / (self.text_bytes / 1024)

    def matrix(self, key: Callable[[Case], str]) -> dict[str, dict[str, int]]:
        """Outcome counts by ``key`` (category, or language and label)."""
        out: dict[str, Counter[str]] = {}
        for r in self.results:
            out.setdefault(key(r.case), Counter())[r.verdict.outcome.value] += 1
        return {k: {o.value: c[o.value] for o in Outcome} for k, c in sorted(out.items())}

    def failures(self) -> list[str]:
        """The thresholds this split fails (empty: it passes, or has no gate)."""
        out: list[str] = []
        if not self.results:
            return [f"{self.split}: no case"]
        recall, fh, pred = self.recall, self.false_hold_rate, self.predominance_held
        if self.split == "tuning":
            if recall is not None and recall < TUNING_RECALL_MIN:
                out.append(f"tuning recall on prohibited {recall:.1%} < {TUNING_RECALL_MIN:.0%}")
            if fh is not None and fh > TUNING_FALSE_HOLD_MAX:
                out.append(f"tuning false holds on ordinary {fh:.1%} > {TUNING_FALSE_HOLD_MAX:.0%}")
            if pred is not None and pred < TUNING_PREDOMINANCE_HELD_MIN:
                out.append(f"tuning predominance held {pred:.1%} < 100%")
        elif self.split == "heldout" and recall is not None and recall < HELDOUT_RECALL_MIN:
            out.append(f"held-out recall on prohibited {recall:.1%} < {HELDOUT_RECALL_MIN:.0%}")
        return out

    def summary(self) -> dict[str, Any]:
        def count(label: str) -> int:
            return sum(r.case.label == label for r in self.results)

        return {
            "split": self.split,
            "cases": len(self.results),
            "prohibited": count("prohibited"),
            "predominance": count("predominance"),
            "ordinary": count("ordinary"),
            "recall_prohibited": self.recall,
            "false_hold_rate_ordinary": self.false_hold_rate,
            "predominance_held": self.predominance_held,
            "by_category": self.matrix(lambda c: c.category),
            "by_language": self.matrix(lambda c: f"{c.lang}/{c.label}"),
            "misses": [r.miss() for r in self.results if not r.correct],
            "screen_ms_per_kib": self.ms_per_kib,
            "failures": self.failures(),
        }


def evaluate(
    engine: Engine,
    cases: Sequence[Case],
    *,
    clock: Callable[[], float] = time.process_time,
) -> dict[str, SplitReport]:
    """Screen every case once (after one untimed warm-up pass that fills the
    engine's word cache, as a running router has it) and report per split."""
    for c in cases:
        engine.evaluate(c.facts())
    reports = {s: SplitReport(s) for s in dict.fromkeys(c.split for c in cases)}
    for c in cases:
        facts = c.facts()
        t0 = clock()
        v = engine.evaluate(facts)
        elapsed = clock() - t0
        rep = reports[c.split]
        rep.results.append(Result(c, v))
        rep.screen_ms += elapsed * 1000
        rep.text_bytes += sum(len(t.encode("utf-8")) for t in c.texts)
    return reports


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def render_text(reports: dict[str, SplitReport], *, policy: str, digest: str) -> str:
    """The human report: per split the rates, the two matrices and every miss."""
    lines = [f"policy {policy} (sha256 {digest[:16]})"]
    for split in SPLITS:
        rep = reports.get(split)
        if rep is None:
            continue
        s = rep.summary()
        lines += [
            "",
            f"== {split}: {s['cases']} cases ({s['prohibited']} prohibited, "
            f"{s['predominance']} predominance, {s['ordinary']} ordinary)",
            f"recall on prohibited (held or refused): {_pct(s['recall_prohibited'])}",
            f"predominance held:                      {_pct(s['predominance_held'])}",
            f"false holds on ordinary:                {_pct(s['false_hold_rate_ordinary'])}",
            f"screen cost: {s['screen_ms_per_kib']:.3f} CPU ms per KiB of text"
            if s["screen_ms_per_kib"] is not None
            else "screen cost: n/a",
            "",
            f"{'category':<22}{'deliver':>9}{'hold':>7}{'refuse':>8}",
        ]
        for k, row in s["by_category"].items():
            lines.append(f"{k:<22}{row['deliver']:>9}{row['hold']:>7}{row['refuse']:>8}")
        lines += ["", f"{'language/label':<22}{'deliver':>9}{'hold':>7}{'refuse':>8}"]
        for k, row in s["by_language"].items():
            lines.append(f"{k:<22}{row['deliver']:>9}{row['hold']:>7}{row['refuse']:>8}")
        lines.append("")
        lines.append(f"misses: {len(s['misses'])}")
        for m in s["misses"]:
            words = "; ".join(
                f"{h['indicator']}[{h['lang']}]: {', '.join(h['words'])}" for h in m["hits"]
            )
            lines.append(
                f"  {m['id']} {m['category']} {m['kind']}: expected {m['expected']}, "
                f"got {m['outcome']} by {m['rule']} ({', '.join(m['reasons'])})"
            )
            lines.append(f"      hits: {words or 'none'} | {m['note']}")
        for f in s["failures"]:
            lines.append(f"FAIL {f}")
    return "\n".join(lines) + "\n"


def render_json(reports: dict[str, SplitReport], *, policy: str, digest: str) -> str:
    body = {
        "policy": policy,
        "digest": digest,
        "thresholds": {
            "tuning_recall_min": TUNING_RECALL_MIN,
            "tuning_false_hold_max": TUNING_FALSE_HOLD_MAX,
            "tuning_predominance_held_min": TUNING_PREDOMINANCE_HELD_MIN,
            "heldout_recall_min": HELDOUT_RECALL_MIN,
        },
        "splits": {s: r.summary() for s, r in reports.items()},
        "failures": [f for r in reports.values() for f in r.failures()],
    }
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"
