"""The words that triggered an indicator, marked in the text a reviewer reads.

The text is untrusted (a sender wrote it). Matches are found on the raw text,
then every piece, matched or not, is HTML-escaped on its own and only the
matched pieces are wrapped in ``<mark>``: no sender's character ever reaches
the page unescaped, and a word can never match inside an entity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from markupsafe import Markup, escape

__all__ = ["highlight", "spans"]

MAX_WORDS = 200


def spans(text: str, words: Iterable[str]) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` of every case-insensitive whole-word match of ``words``."""
    ws = sorted({w.strip() for w in words if w and w.strip()}, key=len, reverse=True)[:MAX_WORDS]
    if not ws or not text:
        return []
    pat = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in ws) + r")(?!\w)", re.IGNORECASE)
    found: list[tuple[int, int]] = []
    for m in pat.finditer(text):
        if found and m.start() <= found[-1][1]:
            found[-1] = (found[-1][0], max(found[-1][1], m.end()))
        else:
            found.append((m.start(), m.end()))
    return found


def highlight(text: str | None, words: Iterable[str]) -> Markup:
    """``text`` escaped, with the matches of ``words`` in ``<mark>``."""
    if not text:
        return Markup("")
    out: list[str] = []
    at = 0
    for start, end in spans(text, words):
        out.append(str(escape(text[at:start])))
        out.append(f'<mark class="hit">{escape(text[start:end])}</mark>')
        at = end
    out.append(str(escape(text[at:])))
    return Markup("".join(out))
