"""Review deadlines (router/deadlines.py): the tighter limit wins, overdue counts
from the deadline itself, and ``[review.deadlines]`` is read from router.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from i24net.errors import ConfigError
from i24net.router.deadlines import (
    HOUR_MS,
    PRECEDENCES,
    Backlog,
    ReviewDeadlines,
    backlog,
    deadline_ms,
    overdue,
)
from i24net.router.settings import load_settings

T0 = 1_790_000_000_000


def test_defaults_per_precedence() -> None:
    d = ReviewDeadlines()
    got = {p: deadline_ms(d, "POLICE_MESSAGE", p, T0) - T0 for p in PRECEDENCES}
    assert got == {
        "FLASH": 1 * HOUR_MS,
        "IMMEDIATE": 4 * HOUR_MS,
        "PRIORITY": 12 * HOUR_MS,
        "ROUTINE": 72 * HOUR_MS,
        "DEFERRED": 168 * HOUR_MS,
    }


def test_kind_limit_tightens_but_never_loosens() -> None:
    d = ReviewDeadlines()
    # A Red Notice request sent ROUTINE is still decided within 24 h ...
    assert deadline_ms(d, "RED_NOTICE_REQUEST", "ROUTINE", T0) == T0 + 24 * HOUR_MS
    assert deadline_ms(d, "RED_NOTICE_REQUEST", "DEFERRED", T0) == T0 + 24 * HOUR_MS
    # ... and one sent FLASH keeps its one hour.
    assert deadline_ms(d, "RED_NOTICE_REQUEST", "FLASH", T0) == T0 + 1 * HOUR_MS


def test_missing_or_unknown_precedence_gets_the_default() -> None:
    d = ReviewDeadlines(default_ms=5 * HOUR_MS)
    assert deadline_ms(d, "DIFFUSION", None, T0) == T0 + 5 * HOUR_MS
    assert deadline_ms(d, None, "SOMEDAY", T0) == T0 + 5 * HOUR_MS
    assert deadline_ms(d, "RED_NOTICE_REQUEST", None, T0) == T0 + 5 * HOUR_MS
    # a table naming one precedence keeps the other defaults
    partial = ReviewDeadlines(precedence_ms={"FLASH": 2 * HOUR_MS})
    assert deadline_ms(partial, "DIFFUSION", "FLASH", T0) == T0 + 2 * HOUR_MS
    assert deadline_ms(partial, "DIFFUSION", "ROUTINE", T0) == T0 + 72 * HOUR_MS


def test_overdue_counts_from_the_deadline_itself() -> None:
    d = ReviewDeadlines()
    items = [
        ("POLICE_MESSAGE", "FLASH", T0),  # due T0 + 1 h
        ("RED_NOTICE_REQUEST", "ROUTINE", T0),  # due T0 + 24 h
        ("DIFFUSION", "ROUTINE", T0 + HOUR_MS),  # due T0 + 73 h
    ]
    assert overdue(items, d, T0 + HOUR_MS - 1) == 0
    assert overdue(items, d, T0 + HOUR_MS) == 1
    assert overdue(items, d, T0 + 24 * HOUR_MS) == 2
    assert overdue(items, d, T0 + 73 * HOUR_MS) == 3
    assert overdue([], d, T0) == 0


def test_backlog_summary() -> None:
    d = ReviewDeadlines()
    items = [
        ("DIFFUSION", "ROUTINE", T0 + 5 * HOUR_MS),
        ("POLICE_MESSAGE", "FLASH", T0 + 2 * HOUR_MS),
        ("RED_NOTICE_REQUEST", "PRIORITY", T0),
    ]
    now = T0 + 4 * HOUR_MS
    # FLASH held at T0+2h is 1 h late; nothing else is due yet.
    assert backlog(iter(items), d, now) == Backlog(
        depth=3, overdue=1, oldest_held_ms=T0, most_overdue_ms=HOUR_MS
    )
    assert backlog([], d, now) == Backlog(0, 0, 0, 0)


def test_rejects_unknown_symbols_and_tiny_limits() -> None:
    with pytest.raises(ValidationError, match="unknown precedence URGENT"):
        ReviewDeadlines(precedence_ms={"URGENT": HOUR_MS})
    with pytest.raises(ValidationError, match="unknown message kind RED_NOTICE"):
        ReviewDeadlines(kind_ms={"RED_NOTICE": HOUR_MS})
    with pytest.raises(ValidationError):
        ReviewDeadlines(precedence_ms={"FLASH": 1000})


_BASE = """
[router]
instance = "a"
[kafka]
bootstrap = "127.0.0.1:9"
[keys]
gs_secret = "gs.json"
root_public = "root.json"
[state]
dir = "state"
[policy]
file = "policy.toml"
"""


def test_read_from_router_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "router.toml"
    cfg.write_text(
        _BASE
        + """
[review.deadlines]
precedence_ms = { FLASH = 1_800_000, ROUTINE = 86_400_000 }
kind_ms = { RED_NOTICE_REQUEST = 43_200_000, WANTED_PERSON_DIFFUSION = 43_200_000 }
"""
    )
    d = load_settings(cfg).review.deadlines
    assert d.limit_ms("POLICE_MESSAGE", "FLASH") == 1_800_000
    assert d.limit_ms("WANTED_PERSON_DIFFUSION", "ROUTINE") == 43_200_000
    assert d.limit_ms("RED_NOTICE_REQUEST", "ROUTINE") == 43_200_000
    # entries not named keep their defaults
    assert d.limit_ms("POLICE_MESSAGE", "IMMEDIATE") == 4 * HOUR_MS


def test_defaults_without_the_section(tmp_path: Path) -> None:
    cfg = tmp_path / "router.toml"
    cfg.write_text(_BASE)
    assert load_settings(cfg).review.deadlines == ReviewDeadlines()


def test_misspelt_kind_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "router.toml"
    cfg.write_text(_BASE + "\n[review.deadlines]\nkind_ms = { RED_NOTICE = 3_600_000 }\n")
    with pytest.raises(ConfigError, match=r"review\.deadlines\.kind_ms"):
        load_settings(cfg)
