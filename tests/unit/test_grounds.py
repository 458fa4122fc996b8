"""The one list of refusal grounds matches the schema's enum (less an approval's NONE)."""

from __future__ import annotations

import json
from pathlib import Path

from i24net.grounds import GROUNDS

SCHEMA = Path(__file__).parents[2] / "schemas" / "net.i24.ReviewGrounds.avsc"


def test_grounds_are_the_schema_symbols_but_none() -> None:
    symbols = json.loads(SCHEMA.read_text())["symbols"]
    assert symbols[0] == "NONE"
    assert tuple(symbols[1:]) == GROUNDS


def test_every_user_of_grounds_shares_the_one_list() -> None:
    from i24net.cli import review as cli_review
    from i24net.report import _build
    from i24net.router import review

    assert cli_review.GROUNDS is GROUNDS
    assert _build.GROUNDS is GROUNDS
    assert review.GROUNDS is GROUNDS
