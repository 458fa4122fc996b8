"""The CI gate of the Article 3 screen: ``i24net policy eval`` on the shipped policy and corpus.

Thresholds (issue 13): on the tuning split, 100 % of prohibited cases not
delivered unreviewed, at most 5 % of ordinary cases held or refused, every
predominance case held; on the held-out split (written by another author who
never saw the vocabulary), at least 90 % recall on prohibited cases. The
second half shows that each threshold can fail, through the CLI's exit status.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from i24net.cli import main
from i24net.errors import PolicyError
from i24net.policy import Engine, load_policy, parse_policy
from i24net.policy._eval import (
    HELDOUT_RECALL_MIN,
    TUNING_FALSE_HOLD_MAX,
    SplitReport,
    evaluate,
    load_corpus,
)

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "deploy" / "policy" / "article3.toml"
CORPUS = ROOT / "tests" / "policy" / "corpus"


@pytest.fixture(scope="module")
def reports() -> dict[str, SplitReport]:
    return evaluate(Engine(load_policy(POLICY)), load_corpus(CORPUS))


def test_the_corpus_is_large_enough_and_the_heldout_split_a_quarter_of_it(
    reports: dict[str, SplitReport],
) -> None:
    tuning, heldout = len(reports["tuning"].results), len(reports["heldout"].results)
    assert tuning >= 220 and heldout >= 120
    assert heldout >= 0.25 * (tuning + heldout)


def test_shipped_policy_passes_the_tuning_gate(reports: dict[str, SplitReport]) -> None:
    t = reports["tuning"]
    misses = [r.miss() for r in t.results if not r.correct]
    assert t.recall == 1.0, [m for m in misses if m["label"] == "prohibited"]
    assert t.predominance_held == 1.0, [m for m in misses if m["label"] == "predominance"]
    assert t.false_hold_rate is not None and t.false_hold_rate <= TUNING_FALSE_HOLD_MAX, misses
    assert t.failures() == []


def test_shipped_policy_passes_the_heldout_gate(reports: dict[str, SplitReport]) -> None:
    h = reports["heldout"]
    assert h.recall is not None and h.recall >= HELDOUT_RECALL_MIN, [
        r.miss() for r in h.results if not r.correct
    ]
    assert h.failures() == []


def test_every_miss_names_the_rule_reasons_and_words_that_decided_it(
    reports: dict[str, SplitReport],
) -> None:
    misses = [r.miss() for rep in reports.values() for r in rep.results if not r.correct]
    assert misses  # the corpus has hard cases the screen gets wrong; they are reported
    for m in misses:
        assert m["rule"] and m["reasons"] and m["expected"] != m["outcome"]
        assert all({"indicator", "category", "lang", "words"} <= set(h) for h in m["hits"])


def test_the_cli_reports_both_splits_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "eval", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["splits"]) == {"tuning", "heldout"}
    assert out["failures"] == []
    assert out["digest"] == hashlib.sha256(POLICY.read_bytes()).hexdigest()[:16]
    tuning = out["splits"]["tuning"]
    assert set(tuning["by_category"]) == {
        "political", "expression", "assembly_association", "military", "religious",
        "racial", "predominance", "ordinary",
    }  # fmt: skip
    assert {k.split("/")[0] for k in tuning["by_language"]} == {"ar", "en", "es", "fr"}
    assert tuning["screen_ms_per_kib"] > 0
    assert main(["policy", "eval", "--split", "tuning"]) == 0
    text = capsys.readouterr().out
    assert "recall on prohibited" in text and "misses:" in text and "FAIL" not in text


# --- the gate can fail ----------------------------------------------------------------


def _candidate(tmp_path: Path, edit: Any) -> Path:
    raw = tomllib.loads(POLICY.read_text(encoding="utf-8"))
    edit(raw)
    parse_policy(raw)  # still a valid policy: only its decisions change
    path = tmp_path / "candidate.toml"
    path.write_text(_toml(raw), encoding="utf-8")
    return path


def _toml(raw: dict[str, Any]) -> str:
    """A minimal TOML writer for the policy's shapes (strings, bools, ints, lists, tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(v)

    lines = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict | list)]
    lines += [f"{k} = {value(v)}" for k, v in raw.items() if isinstance(v, list) and k not in (
        "rules", "indicators")]  # fmt: skip
    for k, v in raw.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in v.items()]
    for table in ("rules", "indicators"):
        for item in raw[table]:
            lines.append(f"[[{table}]]")
            lines += [f"{kk} = {value(vv)}" for kk, vv in item.items()]
    return "\n".join(lines) + "\n"


def _drop_category(raw: dict[str, Any], category: str) -> None:
    raw["indicators"] = [i for i in raw["indicators"] if i["category"] != category]
    for key in ("risk_categories", "article3_categories"):
        raw[key] = [c for c in raw[key] if c != category]
    for r in raw["rules"]:
        when = r.get("when", {})
        if "indicators_any" in when:
            when["indicators_any"] = [c for c in when["indicators_any"] if c != category]
    raw["rules"] = [r for r in raw["rules"] if r.get("when", {}).get("indicators_any") != []]


def test_a_candidate_without_the_religious_category_fails_on_recall(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _candidate(tmp_path, lambda raw: _drop_category(raw, "religious"))
    assert main(["policy", "eval", "--policy", str(path), "--split", "tuning"]) == 1
    out = capsys.readouterr().out
    assert "FAIL tuning recall on prohibited" in out
    assert "religious RED_NOTICE_REQUEST: expected hold or refuse, got deliver by DEFAULT" in out


def test_a_candidate_without_status_and_context_fails_on_predominance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(raw: dict[str, Any]) -> None:
        _drop_category(raw, "status")
        _drop_category(raw, "political_context")

    path = _candidate(tmp_path, edit)
    assert main(["policy", "eval", "--policy", str(path), "--split", "tuning"]) == 1
    assert "FAIL tuning predominance held" in capsys.readouterr().out


def test_a_candidate_that_holds_everything_fails_on_false_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _candidate(tmp_path, lambda raw: raw.update(default="hold"))
    assert main(["policy", "eval", "--policy", str(path), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert any(f.startswith("tuning false holds on ordinary") for f in out["failures"])
    assert out["splits"]["tuning"]["recall_prohibited"] == 1.0


def test_a_weak_candidate_fails_the_heldout_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(raw: dict[str, Any]) -> None:
        for category in ("religious", "military", "racial"):
            _drop_category(raw, category)

    path = _candidate(tmp_path, edit)
    assert main(["policy", "eval", "--policy", str(path), "--split", "heldout"]) == 1
    assert "FAIL held-out recall on prohibited" in capsys.readouterr().out


def test_a_split_asked_for_but_absent_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tuning").mkdir()
    (tmp_path / "tuning" / "fr.jsonl").write_text(
        (CORPUS / "tuning" / "fr.jsonl").read_text(encoding="utf-8"), encoding="utf-8"
    )
    assert main(["policy", "eval", "--corpus", str(tmp_path), "--split", "tuning"]) == 0
    assert main(["policy", "eval", "--corpus", str(tmp_path)]) == 1
    assert "FAIL heldout: no case" in capsys.readouterr().out


def test_a_malformed_corpus_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "tuning").mkdir()
    good = (CORPUS / "tuning" / "fr.jsonl").read_text(encoding="utf-8").splitlines()[0]
    bad = json.loads(good) | {"label": "ordinary"}  # a political case labelled ordinary
    path = tmp_path / "tuning" / "fr.jsonl"
    path.write_text(good + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"fr.jsonl:2: case TU-FR-001: category political"):
        load_corpus(tmp_path)
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"fr.jsonl:1: not JSON"):
        load_corpus(tmp_path)


def test_policy_check_prints_the_digest_or_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["policy", "check", str(POLICY)]) == 0
    out = capsys.readouterr().out
    assert hashlib.sha256(POLICY.read_bytes()).hexdigest()[:16] in out and "valid policy" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(POLICY.read_text(encoding="utf-8") + "\n[matching]\nsynonyms = {}\n", "utf-8")
    assert main(["policy", "check", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err  # [matching] defined twice
