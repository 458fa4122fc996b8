"""The grounds a review refusal can carry: one list for the review desk, its CLI and the
transparency report.

They are the ``net.i24.ReviewGrounds`` symbols less ``NONE`` (an approval's);
``tests/unit/test_schemas.py`` would not notice a drift, so
``tests/unit/test_grounds.py`` checks this list against the schema.
"""

from __future__ import annotations

import typing
from typing import Literal

Grounds = Literal[
    "POLITICAL",
    "MILITARY",
    "RELIGIOUS",
    "RACIAL",
    "HUMAN_RIGHTS",
    "REFUGEE_PROTECTION",
    "INSUFFICIENT_DATA",
    "OTHER",
]
GROUNDS: tuple[str, ...] = typing.get_args(Grounds)
