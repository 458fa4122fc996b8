"""Review deadlines: how long a held message may wait for a reviewer.

A hold is a wanted-person request (or another message) that the neutrality
screen stopped; until a person decides, the requesting police force waits
and the subject of the request is neither protected by a refusal nor sought
by a notice. So every hold gets a deadline, fixed when it is held:

    deadline = held_ms + min(precedence limit, kind limit)

The precedence limit comes from the sender's urgency (FLASH 1 h ... DEFERRED
7 days); the kind limit is a policy floor for kinds the organisation has
promised to decide quickly (a Red Notice request within 24 h, whatever
precedence its sender chose). The tighter of the two wins, so a sender cannot
slow a review down by choosing a lower precedence, and a kind limit never
loosens an urgent precedence. An unknown or missing precedence gets
``default_ms`` (the ROUTINE limit unless configured otherwise).

The functions here are pure (the clock is passed in): the review desk sorts
its queue by :func:`deadline_ms`, the router's review service exports
:func:`overdue` as ``i24net_review_overdue``, and the alert fires on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from i24net.schemas import KIND_SCHEMAS

__all__ = ["PRECEDENCES", "Backlog", "ReviewDeadlines", "backlog", "deadline_ms", "overdue"]

HOUR_MS = 3_600_000

PRECEDENCES = ("FLASH", "IMMEDIATE", "PRIORITY", "ROUTINE", "DEFERRED")
"""The ``net.i24.Precedence`` symbols, most urgent first."""

_Ms = Annotated[int, Field(ge=60_000)]
"""A limit of at least one minute: a shorter one would be overdue before a person
could open the case."""


def _default_precedence() -> dict[str, int]:
    return {
        "FLASH": 1 * HOUR_MS,
        "IMMEDIATE": 4 * HOUR_MS,
        "PRIORITY": 12 * HOUR_MS,
        "ROUTINE": 72 * HOUR_MS,
        "DEFERRED": 7 * 24 * HOUR_MS,
    }


def _default_kind() -> dict[str, int]:
    return {"RED_NOTICE_REQUEST": 24 * HOUR_MS}


class ReviewDeadlines(BaseModel):
    """``[review.deadlines]`` in ``router.toml``: limits in milliseconds (see the module
    docstring for how they combine). Keys are ``net.i24.Precedence`` and
    ``net.i24.MessageKind`` symbols; an unknown key is a configuration error, since a
    misspelt kind would silently leave its requests on the slower precedence limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    precedence_ms: dict[str, _Ms] = Field(default_factory=_default_precedence)
    """Limit per precedence; entries given replace the defaults one by one (a table
    that names only FLASH keeps the other defaults)."""
    kind_ms: dict[str, _Ms] = Field(default_factory=_default_kind)
    """Limit per kind, applied when tighter than the precedence limit; merged over the
    default (RED_NOTICE_REQUEST 24 h) the same way."""
    default_ms: _Ms = 72 * HOUR_MS
    """For a hold whose precedence is missing or unknown (a hold from before the
    precedence header existed, say)."""

    @field_validator("precedence_ms")
    @classmethod
    def _known_precedences(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(v) - set(PRECEDENCES))
        if unknown:
            raise ValueError(f"unknown precedence {', '.join(unknown)}; known: {PRECEDENCES}")
        return {**_default_precedence(), **v}

    @field_validator("kind_ms")
    @classmethod
    def _known_kinds(cls, v: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(v) - set(KIND_SCHEMAS))
        if unknown:
            raise ValueError(f"unknown message kind {', '.join(unknown)}")
        return {**_default_kind(), **v}

    def limit_ms(self, kind: str | None, precedence: str | None) -> int:
        """How long a hold of this kind and precedence may wait (the tighter limit)."""
        limit = self.precedence_ms.get(precedence or "", self.default_ms)
        by_kind = self.kind_ms.get(kind or "")
        return limit if by_kind is None else min(limit, by_kind)


def deadline_ms(d: ReviewDeadlines, kind: str | None, precedence: str | None, held_ms: int) -> int:
    """When a hold made at ``held_ms`` (ms since the epoch) becomes overdue."""
    return held_ms + d.limit_ms(kind, precedence)


@dataclass(frozen=True, slots=True)
class Backlog:
    """The review queue at one moment, for the gauges and the console's header."""

    depth: int
    overdue: int
    oldest_held_ms: int
    """When the oldest undecided hold was made (0 when the queue is empty)."""
    most_overdue_ms: int
    """How far past its deadline the most overdue hold is (0 when none is)."""


def backlog(
    items: Iterable[tuple[str | None, str | None, int]], d: ReviewDeadlines, now_ms: int
) -> Backlog:
    """Summarise ``(kind, precedence, held_ms)`` holds at ``now_ms``.

    A hold is overdue once ``now_ms`` reaches its deadline (at the deadline itself
    the reviewer has had the whole allowance)."""
    depth = late = 0
    oldest = 0
    worst = 0
    for kind, precedence, held in items:
        depth += 1
        oldest = held if oldest == 0 else min(oldest, held)
        past = now_ms - deadline_ms(d, kind, precedence, held)
        if past >= 0:
            late += 1
            worst = max(worst, past)
    return Backlog(depth, late, oldest, worst)


def overdue(
    items: Iterable[tuple[str | None, str | None, int]], d: ReviewDeadlines, now_ms: int
) -> int:
    """How many of the ``(kind, precedence, held_ms)`` holds are past their deadline."""
    return backlog(items, d, now_ms).overdue
