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


class _Fold(dict[int, int | None]):
    """``str.translate`` table: combining marks removed, Arabic variants mapped; other
    code points map to themselves. Filled on first sight of each code point, so after a
    warm-up the translation runs in C (a text used to cost one Python call per char)."""

    def __missing__(self, cp: int) -> int | None:
        out: int | None
        if cp in _ARABIC_MAP:
            mapped = _ARABIC_MAP[cp]
            out = None if mapped is None else ord(mapped)
        elif unicodedata.combining(chr(cp)):
            out = None
        else:
            out = cp
        if len(self) < 65_536:  # bounded: a hostile text cannot grow it without limit
            self[cp] = out
        return out


_FOLD = _Fold()


def normalise(text: str) -> str:
    """The form both texts and terms are compared in (see the module docstring)."""
    if text.isascii():  # NFKD, combining marks and the Arabic map change nothing
        return " ".join(text.casefold().split())
    decomposed = unicodedata.normalize("NFKD", text)
    return " ".join(decomposed.translate(_FOLD).casefold().split())


WORD = re.compile(r"\w+")


def key_word(term: str) -> str | None:
    """A word that is a whole word (a maximal ``\\w+`` run) of any normalised text the
    term matches, or None if the term has none (a single Arabic word, which may carry
    proclitics, or a single word ending in ``*``). The longest such word of the term:
    looking it up in the set of a text's words rules the term out at once."""
    norm = needle(term)
    runs = WORD.findall(norm)
    if _ARABIC.search(norm):
        runs = runs[1:]  # proclitics may be glued to the first word
    if normalise(term).endswith("*"):
        runs = runs[:-1]  # the last word may go on
    return max(runs, key=len) if runs else None


def needle(term: str) -> str:
    """The literal every match of ``term`` contains, in a normalised text (whose white
    space is single spaces): the term's words, normalised, without the trailing ``*``.
    A quick ``needle in text`` rules most terms out before their regular expression
    (which checks the word boundaries and the Arabic proclitics) runs."""
    return " ".join(normalise(term).rstrip("*").split())


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
