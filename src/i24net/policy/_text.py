"""Normalising free text and matching indicator terms in Arabic, English, French, Spanish.

Matching is deliberately simple and explainable: a term is a sequence of
words; it matches when those words appear in that order, separated only by
white space, on word boundaries, after both sides are normalised:

- Unicode NFKD, combining marks removed (é -> e, Arabic harakat dropped),
  case folded (ß -> ss);
- Arabic: tatweel removed, alef variants (أ إ آ ٱ) -> ا, alef maqsura ى -> ي,
  taa marbuta ة -> ه, so spelling variants of one word compare equal;
- a trailing ``*`` in a term matches any word ending (``desert*`` matches
  ``deserted``, ``deserter``); use it sparingly;
- a term in Arabic script may be preceded by the attached proclitics
  و ف ب ك ل and the article ال (``والتجديف`` matches ``تجديف``).

Each term is matched in every text whatever the message's declared
language: a French message may quote an English charge.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_ARABIC = re.compile(r"[\u0600-\u06ff]")
_ARABIC_MAP = str.maketrans(
    {"\u0640": None, "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه"}
)
_PROCLITICS = r"(?:[وف]?[بكل]?(?:ال|ل)?)"


def normalise(text: str) -> str:
    """The form both texts and terms are compared in (see the module docstring)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.translate(_ARABIC_MAP).casefold().split())


def compile_term(term: str) -> re.Pattern[str]:
    """A regular expression for one indicator term (see the module docstring)."""
    norm = normalise(term)
    if not norm:
        raise ValueError("empty indicator term")
    prefix_wild = norm.endswith("*")
    words = norm.rstrip("*").split()
    if not words:
        raise ValueError(f"indicator term {term!r} has no word")
    body = r"\s+".join(re.escape(w) for w in words)
    lead = _PROCLITICS if _ARABIC.search(norm) else ""
    tail = r"\w*" if prefix_wild else ""
    return re.compile(rf"(?<!\w){lead}{body}{tail}(?!\w)")


def find_terms(patterns: Iterable[tuple[str, re.Pattern[str]]], texts: Iterable[str]) -> list[str]:
    """The terms (by their written form) found in any of ``texts``, in pattern order."""
    normalised = [normalise(t) for t in texts if t]
    return [term for term, pat in patterns if any(pat.search(t) for t in normalised)]
