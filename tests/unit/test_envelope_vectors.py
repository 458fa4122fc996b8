"""The known-answer vector pins the v1 format byte for byte."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VECTORS = Path(__file__).parents[1] / "vectors" / "envelope"
sys.path.insert(0, str(VECTORS))

from generate import build  # noqa: E402


def test_vector_is_reproduced_byte_for_byte() -> None:
    stored = json.loads((VECTORS / "v1.json").read_text("utf-8"))
    assert build() == stored
