"""``i24net policy``: check a policy file, and measure it on the corpus before deploying it.

The operator's flow (docs/policy.md): edit a candidate file, run
``i24net policy check candidate.toml`` (it loads as the router would load it,
and prints the digest the router will report in ``i24net_router_policy_info``
and in every audit entry), then ``i24net policy eval --policy candidate.toml``
(exit status 1 when a threshold of the CI gate fails), then put it in place:
the router reloads it on SIGHUP or when the file changes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from i24net.errors import PolicyError

_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_POLICY = _ROOT / "deploy" / "policy" / "article3.toml"
DEFAULT_CORPUS = _ROOT / "tests" / "policy" / "corpus"


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="check a neutrality policy and evaluate it on the corpus")
    sp = p.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    c = sp.add_parser("check", help="validate a policy file and print its digest")
    c.add_argument("file", type=Path)
    c.set_defaults(func=_check)
    e = sp.add_parser(
        "eval",
        help="screen the labelled corpus; exit 1 when a threshold fails",
        description="Screen every case of the corpus with the policy: confusion matrices per "
        "category and language, recall on prohibited cases, false holds on ordinary crime, "
        "predominance cases held, every miss with the rule and reasons that decided it, and "
        "the screen's cost. Exit 1 when tuning recall < 100 %%, tuning false holds > 5 %%, a "
        "tuning predominance case is not held, or held-out recall < 90 %%.",
    )
    e.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy file (TOML)")
    e.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="corpus directory")
    e.add_argument("--split", choices=("tuning", "heldout", "all"), default="all")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.set_defaults(func=_eval)


def _read(path: Path) -> tuple[Any, str]:
    from i24net.policy import load_policy

    policy = load_policy(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError as exc:  # pragma: no cover - load_policy read it a moment ago
        raise PolicyError(f"cannot read policy {path}: {exc.strerror}") from exc
    return policy, digest


def _check(args: argparse.Namespace) -> int:
    from i24net.policy import Engine

    policy, digest = _read(args.file)
    engine = Engine(policy)  # compiles every term, as the router does on load
    print(
        f"{args.file}: valid policy {policy.name!r}, digest {digest}, "
        f"{len(policy.rules)} rules, {len(policy.indicators)} indicators, "
        f"{len(engine.matcher.terms)} terms"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from i24net.policy import Engine
    from i24net.policy._eval import SPLITS, evaluate, load_corpus, render_json, render_text

    policy, digest = _read(args.policy)
    splits = SPLITS if args.split == "all" else (args.split,)
    cases = load_corpus(args.corpus, splits)
    reports = evaluate(Engine(policy), cases)
    for split in splits:  # a split asked for but absent is a failure, not a pass
        if split not in reports:
            from i24net.policy._eval import SplitReport

            reports[split] = SplitReport(split)
    render = render_json if args.format == "json" else render_text
    sys.stdout.write(render(reports, policy=str(args.policy), digest=digest))
    failures = [f for r in reports.values() for f in r.failures()]
    return 1 if failures else 0
