"""Matching indicator concepts in free text: stems, proximity, negation, explained.

A phrase list does not generalise: "member of an opposition party" misses
"member of a banned opposition party", and "insulting the president" misses
"insulted the President of the Republic". So an indicator term is a small
pattern over *word stems*, matched inside one sentence:

``insult* ~4 president|king|head``
    groups of alternatives (``|``); consecutive groups are adjacent content
    words (stop words such as "of", "the", "de", "في" are skipped on both
    sides), or, with ``~N`` between them, within N content words of each other
    in either order. A word is compared by its stem in the term's language
    (Snowball for English, French, Spanish; a light Arabic stemmer, below);
    ``word*`` compares the folded surface form by prefix (at least 3
    letters) and ``=word`` compares it exactly (when the stem is too wide:
    "strike" the blow and "strike" the stoppage share one).

Before matching, text and term are folded (``_text.normalise``: NFKD, marks
and harakat removed, case folded, Arabic alef/yaa/taa-marbuta variants and
tatweel unified), split into sentences and words (French elisions ``l'``,
``d'`` fall apart into a stop word and the word; a hyphenated compound is one
word: "anti-government" is "antigovernment").

Negation: a match is dropped when a negation word ("not", "no", "never",
"sans", "aucun", "ningún", "ليس", "لم", "غير") stands within
``negation_window`` words before its first word, unless a breaker ("and",
"but", a comma...) stands between them: "not a member of any political
party" is no membership; "did not report and deserted" is still desertion.

Arabic: the Snowball Arabic stemmer was measured inconsistent on this
vocabulary ("فرار" -> "رار", "والمعارضة" keeps its "وال", "مظاهرات" ->
"مظاهرا" but "مظاهرة" -> "مظاهر"), so Arabic words go through a light
stemmer of the Light10 family: the article forms (ال وال بال كال فال لل), a
taa marbuta before a pronoun (وحدته -> وحده) and the common suffixes
(ها ان ات ون ين يه ه ي ا) are stripped while the stem keeps at least three
letters; a word also gets the keys of its forms without one attached
conjunction or preposition (و ف ب ل ك), as both readings exist ("باختلاس" ->
"اختلاس", but the و of "وحدة" is a root letter).

Every match is explainable: the term as written, its language, and the
surface words of the text that matched it (what a reviewer's console
highlights). The language of a term, not of the message, chooses the
stemmer: every term is tried on every text, since a French message may quote
an English charge.

Cost: stemming costs 30-60 µs a word in pure Python, so each distinct word is
analysed once per engine (bounded cache) into the vocabulary keys it can
match; a message then costs a dictionary lookup per word and the search of
the few terms whose every group is present in a sentence.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import snowballstemmer

from i24net.policy._text import normalise

LANGS: tuple[str, ...] = ("ar", "en", "es", "fr")
_LATIN_LANGS = ("en", "es", "fr")
_SNOWBALL = {"en": "english", "es": "spanish", "fr": "french"}

# Sentence ends (Latin and Arabic) and line breaks: proximity never crosses them.
SENTENCE = re.compile(r"[.!?;\n\u061f\u061b\u06d4]+")
# A word: letters/digits plus the combining marks and tatweel that may sit inside
# an Arabic or decomposed Latin word; a comma (Latin or Arabic) or a colon or a
# bracket is kept as a token of its own (a negation breaker).
_W = r"[\w\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]+"
_TOKEN = re.compile(rf"{_W}(?:-{_W})*|[,\u060c:()\[\]]")
_ENDS = r"[.!?;\n\u061f\u061b\u06d4]+"
_STREAM = re.compile(rf"{_W}(?:-{_W})*|[,\u060c:()\[\]]|{_ENDS}")
_ENDS_RE = re.compile(rf"^{_ENDS}$")
_SENTENCE_GAP = 1000  # beyond any ~N window (N <= 99)
_HEAD = 3  # letters a stem shares with its word (Matcher._may_stem)


def _yi(word: str) -> str:
    return word.replace("y", "i")


_WORD = re.compile(r"\w+")
_HYPHENATED = re.compile(r"\w+(?:-\w+)*")


def _words(folded: str) -> list[str]:
    """The words of a folded text as the tokeniser sees them: a hyphenated compound
    is one word without its hyphens ("anti-government" -> "antigovernment")."""
    return [w.replace("-", "") for w in _HYPHENATED.findall(folded)]


_ARABIC = re.compile(r"[\u0600-\u06ff]")
_GAP = re.compile(r"^~(\d{1,2})$")

_AR_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
_AR_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")
_AR_PREPOSITIONS = frozenset("بلكف")
_AR_PROCLITICS = frozenset("وفبلك")

DEFAULT_STOPWORDS: dict[str, list[str]] = {
    "en": ["a", "an", "the", "of", "to", "in", "on", "at", "for", "by", "with", "from", "as",
           "his", "her", "their", "its", "s", "this", "that", "these", "those", "is", "was",
           "were", "be", "been", "being", "are", "has", "have", "had", "and", "or", "who",
           "which", "he", "she", "they", "him", "them", "into", "any", "some", "an", "it"],
    "fr": ["le", "la", "les", "l", "un", "une", "des", "de", "du", "d", "a", "au", "aux",
           "en", "dans", "sur", "pour", "par", "avec", "et", "ou", "qui", "que", "qu", "son",
           "sa", "ses", "leur", "leurs", "ce", "cet", "cette", "ces", "il", "elle", "ils",
           "est", "a", "ete", "etait", "s", "se", "y", "lui"],
    "es": ["el", "la", "los", "las", "un", "una", "unos", "unas", "de", "del", "a", "al",
           "en", "por", "para", "con", "y", "e", "o", "u", "que", "quien", "su", "sus", "se",
           "lo", "le", "les", "es", "fue", "era", "ha", "sido", "este", "esta", "estos"],
    "ar": ["في", "من", "على", "الى", "عن", "مع", "ان", "هذا", "هذه", "التي", "الذي",
           "الذين", "قد", "تم", "او", "و", "ب", "ل", "ثم", "وفي", "كان", "كانت", "بعد", "قبل"],
}  # fmt: skip
DEFAULT_NEGATIONS: dict[str, list[str]] = {
    "en": ["not", "no", "never", "nor", "neither", "without", "none", "didn", "wasn", "isn",
           "hasn", "doesn", "cannot"],
    "fr": ["ne", "n", "pas", "aucun", "aucune", "jamais", "sans", "ni", "nullement"],
    "es": ["no", "nunca", "ningun", "ninguna", "ninguno", "sin", "ni", "jamas", "tampoco"],
    "ar": ["لا", "ليس", "ليست", "لم", "لن", "غير", "دون", "بدون", "ولا", "ولم", "وليس",
           "ليسوا", "بلا"],
}  # fmt: skip
DEFAULT_BREAKERS: dict[str, list[str]] = {
    "en": ["and", "but", "then", "while", "whereas", "however", "also"],
    "fr": ["et", "mais", "puis", "alors", "cependant", "or"],
    "es": ["y", "pero", "sino", "luego", "mientras", "aunque"],
    "ar": ["لكن", "لكنه", "ولكن", "بل", "ثم", "بينما"],
}  # fmt: skip
_PUNCT_BREAKERS = frozenset({",", "\u060c", ":", "(", ")", "[", "]"})


@functools.cache
def _snowball(lang: str) -> snowballstemmer.stemmer:
    return snowballstemmer.stemmer(_SNOWBALL[lang])


@functools.lru_cache(maxsize=1 << 16)
def stem(lang: str, word: str) -> str:
    """The stem of a folded word in ``lang`` (bounded cache: stemming is slow)."""
    if lang == "ar":
        return ar_light_stem(word)
    if word.isdigit():
        return word
    result: str = _snowball(lang).stemWord(word)
    return result


def ar_light_stem(word: str) -> str:
    """A Light10-style stem of a folded Arabic word (see the module docstring)."""
    w = word
    for p in _AR_PREFIXES:
        if w.startswith(p) and len(w) - len(p) >= 2:
            w = w[len(p) :]
            break
    for p in ("تها", "تهم", "ته"):  # ta marbuta before a pronoun: وحدته -> وحده
        if w.endswith(p) and len(w) - len(p) >= 3:
            w = w[: -len(p)] + "ه"
            break
    for s in _AR_SUFFIXES:
        if w.endswith(s) and len(w) - len(s) >= 3:
            w = w[: -len(s)]
    if w.endswith("ا") and len(w) >= 4:  # accusative tanween alef: عضوا -> عضو
        w = w[:-1]
    return w


def ar_keys(word: str) -> tuple[str, ...]:
    """The stems an Arabic word may match: its own, and without one attached
    conjunction or preposition (و ف ب ل ك), or both: "وحدته" is a unit (its و is
    a root letter), "وحزب" is "and a party"; both readings are kept."""
    keys = [ar_light_stem(word)]
    if len(word) >= 4 and word[0] in _AR_PROCLITICS:
        keys.append(ar_light_stem(word[1:]))
    if len(word) >= 5 and word[0] in "وف" and word[1] in _AR_PREPOSITIONS:
        keys.append(ar_light_stem(word[2:]))
    return tuple(dict.fromkeys(keys))


@dataclass(frozen=True, slots=True)
class Term:
    """One compiled indicator term: groups of alternative keys and the gaps between them."""

    text: str
    """The term as written in the policy file."""
    lang: str
    groups: tuple[frozenset[str], ...]
    """Per group, its keys: a stem, ``=folded`` (exact) or ``*prefix``."""
    gaps: tuple[int, ...]
    """Before each group after the first: 0 adjacent and in order, N within N words."""


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Stop words, negations and breakers (folded), from the policy's ``[matching]``."""

    stopwords: frozenset[str]
    negations: frozenset[str]
    breakers: frozenset[str]
    negation_window: int
    marks: Mapping[str, str]
    """Stop words of exactly one language, to that language ("the": en, "les": fr,
    "los": es): what a text's own words say its language is."""

    @classmethod
    def of(
        cls,
        stopwords: Mapping[Any, Sequence[str]],
        negations: Mapping[Any, Sequence[str]],
        breakers: Mapping[Any, Sequence[str]],
        negation_window: int,
    ) -> Lexicon:
        def fold(m: Mapping[Any, Sequence[str]]) -> frozenset[str]:
            return frozenset(normalise(w) for ws in m.values() for w in ws)

        owners: dict[str, set[str]] = {}
        for lang, words in stopwords.items():
            for w in words:
                owners.setdefault(normalise(w), set()).add(str(lang))
        marks = {w: next(iter(ls)) for w, ls in owners.items() if len(ls) == 1}
        return cls(fold(stopwords), fold(negations), fold(breakers), negation_window, marks)


DEFAULT_LEXICON = Lexicon.of(DEFAULT_STOPWORDS, DEFAULT_NEGATIONS, DEFAULT_BREAKERS, 4)


def _word_keys(lang: str, word: str) -> set[str]:
    """The keys of one written term word (folded): its stem and its exact form
    (``=word``), only the exact form (``=word`` written), or a prefix (``word*``)."""
    if word.startswith("="):
        return {word}
    if word.endswith("*"):
        prefix = word[:-1]
        if len(prefix) < 3:
            raise ValueError(f"prefix {word!r} is shorter than 3 letters")
        return {"*" + prefix}
    return {stem(lang, word), "=" + word}


def compile_concept(term: str, lang: str, lexicon: Lexicon = DEFAULT_LEXICON) -> Term:
    """Compile one term (syntax in the module docstring); ``ValueError`` says what is wrong."""
    groups: list[frozenset[str]] = []
    gaps: list[int] = []
    pending_gap = 0
    for part in normalise(term).split():
        m = _GAP.match(part)
        if m:
            if not groups or pending_gap:
                raise ValueError(f"term {term!r}: ~N must stand between two words")
            pending_gap = int(m.group(1))
            if pending_gap < 1:
                raise ValueError(f"term {term!r}: ~0 is no window")
            continue
        new_groups: list[frozenset[str]] = []
        alts = part.split("|")
        if len(alts) == 1 and not part.startswith("="):
            # one written word may hold several: "lèse-majesté", "d'opposition"
            words = [w for w in _words(part) if w not in lexicon.stopwords]
            for j, w in enumerate(words):
                star = "*" if j == len(words) - 1 and part.endswith("*") else ""
                new_groups.append(frozenset(_word_keys(lang, w + star)))
        else:
            keys: set[str] = set()
            for alt in alts:
                marker = "=" if alt.startswith("=") else ""
                star = "*" if alt.endswith("*") else ""
                words = [w for w in _words(alt) if w not in lexicon.stopwords]
                if len(words) > 1:
                    raise ValueError(
                        f"term {term!r}: alternative {alt!r} holds several words (use spaces)"
                    )
                if words:
                    keys |= _word_keys(lang, marker + words[0] + star)
            if keys:
                new_groups.append(frozenset(keys))
        for g in new_groups:  # none: a stop word, skipped on both sides
            if groups:
                gaps.append(pending_gap)
            pending_gap = 0
            groups.append(g)
    if pending_gap:
        raise ValueError(f"term {term!r} ends with a window")
    if not groups:
        raise ValueError(f"term {term!r} has no content word")
    return Term(term, lang, tuple(groups), tuple(gaps))


@dataclass(frozen=True, slots=True)
class Match:
    """A term found: which term, and the surface words of the text that matched it."""

    index: int
    """The term's position in the matcher's ``terms``."""
    term: Term
    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Tok:
    """What one surface word is to this vocabulary (computed once per engine)."""

    skip: bool  # a stop word, or no word at all (punctuation)
    negation: bool
    breaker: bool
    end: bool  # a sentence end
    keys: tuple[tuple[str, frozenset[str], frozenset[str]], ...]
    """Per language, the vocabulary keys this word matches: all of them, and those
    that need no stemmer (exact forms, prefixes); languages with none left out."""
    mark: str | None = None  # the language this word is a stop word of, if only one


_END = _Tok(True, False, True, True, ())


class Matcher:
    """A compiled vocabulary: ``find`` returns every term found in a set of texts.

    Built once per policy (the router builds one per loaded policy). ``find``
    and :meth:`find_reference` give the same result (a unit test holds them to
    it); the second tries every term on every sentence (the definition), the
    first makes one pass over the message's words, sentences kept apart by
    their coordinates, and searches only the terms whose first group is there.
    """

    _CACHE_MAX = 50_000  # ~35 MB when full (measured: 14 MB for 20,000 words)

    def __init__(self, terms: Iterable[Term], lexicon: Lexicon = DEFAULT_LEXICON) -> None:
        self.terms = tuple(terms)
        self.lexicon = lexicon
        self._vocab: dict[str, set[str]] = {lang: set() for lang in LANGS}
        self._prefixes: dict[str, dict[str, list[str]]] = {lang: {} for lang in LANGS}
        self._by_key: dict[tuple[str, str], list[int]] = {}
        for i, t in enumerate(self.terms):
            for g in t.groups:
                for k in g:
                    self._vocab[t.lang].add(k)
                    if k.startswith("*"):
                        self._prefixes[t.lang].setdefault(k[1:4], []).append(k)
            for k in t.groups[0]:
                self._by_key.setdefault((t.lang, k), []).append(i)
        self._toks: dict[str, _Tok] = {}
        # Which words can have a vocabulary stem at all (see _may_stem).
        self._stem_heads: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        for lang in _LATIN_LANGS:
            stems = {_yi(k) for k in self._vocab[lang] if k[0] not in "=*"}
            self._stem_heads[lang] = (
                frozenset(k[:_HEAD] for k in stems if len(k) >= _HEAD),
                frozenset(k for k in stems if len(k) < _HEAD),
            )

    def _may_stem(self, lang: str, word: str) -> bool:
        """Whether ``word`` can stem to a vocabulary stem of ``lang``: Snowball changes
        a word's end, not its first letters, so a stem of 3 letters or more begins
        with the word's first 3, and a shorter one is a beginning of it (English y/i
        folded: "spy" stems to "spi"; not 4 letters: "taking" stems to "take").
        Most words (names, places, numbers) fail this at once and are never
        stemmed: Snowball costs ~0.2 ms a word on this host, and a hostile text
        of novel words would otherwise cost that per word (measured: 0.7 ms a
        novel word without the filter, 25 µs with it).
        A unit test holds the filter to change no word's keys."""
        heads, short = self._stem_heads[lang]
        w = _yi(word)
        if w[:_HEAD] in heads:
            return True
        return any(w[:n] in short for n in range(1, min(len(w), _HEAD - 1) + 1))

    # --- words ------------------------------------------------------------------

    def _analyse(self, surface: str) -> _Tok:
        folded = normalise(surface)
        words = _WORD.findall(folded)
        if not words:
            if _ENDS_RE.match(surface):
                return _END
            return _Tok(True, False, surface in _PUNCT_BREAKERS, False, ())
        w = "".join(words)
        lex = self.lexicon
        if w in lex.stopwords:
            return _Tok(True, False, w in lex.breakers, False, (), lex.marks.get(w))
        keys: list[tuple[str, frozenset[str], frozenset[str]]] = []
        langs = ("ar",) if _ARABIC.search(w) else _LATIN_LANGS
        for lang in langs:
            vocab = self._vocab[lang]
            if lang == "ar":
                cand = set(ar_keys(w))
            else:
                cand = {stem(lang, w)} if self._may_stem(lang, w) else set()
            cand.add("=" + w)
            for p in self._prefixes[lang].get(w[:3], ()):
                if w.startswith(p[1:]):
                    cand.add(p)
            found = frozenset(c for c in cand if c in vocab)
            if found:
                keys.append((lang, found, frozenset(c for c in found if c[0] in "=*")))
        return _Tok(False, w in lex.negations, w in lex.breakers, False, tuple(keys))

    def _tok(self, surface: str) -> _Tok:
        tok = self._toks.get(surface)
        if tok is None:
            tok = self._analyse(surface)
            if len(self._toks) < self._CACHE_MAX:  # bounded: a hostile text cannot grow it
                self._toks[surface] = tok
        return tok

    # --- sentences ----------------------------------------------------------------

    def _sentences(self, texts: Sequence[str]) -> Iterable[tuple[list[str], list[_Tok]]]:
        """Each sentence's surface words and their analyses (the definition)."""
        for text in texts:
            if not text:
                continue
            if not text.isascii():
                text = unicodedata.normalize("NFC", text)
            for sentence in SENTENCE.split(text):
                surfaces = _TOKEN.findall(sentence)
                if surfaces:
                    yield surfaces, [self._tok(s) for s in surfaces]

    def _stream(self, texts: Sequence[str]) -> tuple[list[str], list[_Tok], list[int], list[int]]:
        """All texts as one stream of words: (surfaces, analyses, the raw index of each
        content word, its coordinate). A sentence end or a text end is a breaker and
        puts the next coordinates ``_SENTENCE_GAP`` further, beyond any window, so
        the search of one stream finds what the search of each sentence finds."""
        surfaces: list[str] = []
        toks: list[_Tok] = []
        content: list[int] = []
        coord: list[int] = []
        c = 0
        for text in texts:
            if not text:
                continue
            if not text.isascii():
                text = unicodedata.normalize("NFC", text)
            for surface in _STREAM.findall(text):
                tok = self._tok(surface)
                if tok.end:
                    c += _SENTENCE_GAP
                elif not tok.skip:
                    content.append(len(toks))
                    coord.append(c)
                    c += 1
                surfaces.append(surface)
                toks.append(tok)
            surfaces.append("")
            toks.append(_END)
            c += _SENTENCE_GAP
        return surfaces, toks, content, coord

    @staticmethod
    def _languages(toks: Sequence[_Tok], declared: str | None) -> frozenset[str] | None:
        """The languages whose terms are compared by stem: the declared one, and those
        the text's own stop words show (each with at least half the marks of the most
        marked one). The sender declares the language, so a Spanish text declared
        English is still stemmed as Spanish. None: every language."""
        if declared is None:
            return None
        counts: dict[str, int] = {}
        for t in toks:
            if t.mark is not None:
                counts[t.mark] = counts.get(t.mark, 0) + 1
        top = max(counts.values(), default=0)
        return frozenset({declared, *(lang for lang, n in counts.items() if 2 * n >= top)})

    @staticmethod
    def _present(
        toks: Sequence[_Tok], content: Sequence[int], languages: frozenset[str] | None
    ) -> dict[str, dict[str, list[int]]]:
        """Per language and key, the content positions of the words that have it. A term
        is compared by stem in the message's languages (:meth:`_languages`; and in
        Arabic, whose script says the language); in the others, by its exact forms
        only: an English "period" is not a Spanish "periodista", though both stem to
        "period"."""
        present: dict[str, dict[str, list[int]]] = {}
        for ci, ri in enumerate(content):
            for lang, every, exact in toks[ri].keys:
                stems = languages is None or lang in languages or lang == "ar"
                by_key = present.setdefault(lang, {})
                for k in every if stems else exact:
                    by_key.setdefault(k, []).append(ci)
        return present

    def find(self, texts: Sequence[str], language: str | None = None) -> list[Match]:
        """Every (term, words) found in ``texts``, in term order, one match per term.

        ``language``: the message's declared language, whose terms are compared by
        stem (None: every language's are; see :meth:`_present`). One pass over all
        the words (:meth:`_stream`); only the terms whose first group has a word in
        the message are searched."""
        surfaces, toks, content, coord = self._stream(texts)
        present = self._present(toks, content, self._languages(toks, language))
        cands: set[int] = set()
        for lang, by_key in present.items():
            index = self._by_key
            for k in by_key:
                got = index.get((lang, k))
                if got:
                    cands.update(got)
        found = []
        for i in sorted(cands):
            m = self._match(i, self.terms[i], present, content, coord, surfaces, toks)
            if m is not None:
                found.append(m)
        return found

    def find_reference(self, texts: Sequence[str], language: str | None = None) -> list[Match]:
        """What :meth:`find` returns, by trying every term on every sentence (slow)."""
        found: dict[int, Match] = {}
        languages = self._languages(self._stream(texts)[1], language)
        for surfaces, toks in self._sentences(texts):
            content = [i for i, t in enumerate(toks) if not t.skip]
            coord = list(range(len(content)))
            present = self._present(toks, content, languages)
            for i, term in enumerate(self.terms):
                if i not in found:
                    m = self._match(i, term, present, content, coord, surfaces, toks)
                    if m is not None:
                        found[i] = m
        return [found[i] for i in sorted(found)]

    def _match(
        self,
        index: int,
        term: Term,
        present: Mapping[str, Mapping[str, list[int]]],
        content: Sequence[int],
        coord: Sequence[int],
        surfaces: Sequence[str],
        toks: Sequence[_Tok],
    ) -> Match | None:
        by_key = present.get(term.lang)
        if by_key is None:
            return None
        keys = by_key.keys()
        for g in term.groups:  # every group present at all? (set operations, in C)
            if keys.isdisjoint(g):
                return None
        positions: list[list[int]] = []
        for g in term.groups:
            ks = g & keys
            ps = (
                by_key[next(iter(ks))]
                if len(ks) == 1
                else sorted({p for k in ks for p in by_key[k]})
            )
            positions.append(ps)

        def extend(chosen: list[int]) -> list[int] | None:
            n = len(chosen)
            if n == len(positions):
                first = content[min(chosen)]
                return None if self._negated(first, toks) else list(chosen)
            prev, gap = coord[chosen[-1]], term.gaps[n - 1]
            lo, hi = (prev + 1, prev + 1) if gap == 0 else (prev - gap, prev + gap)
            ps = positions[n]
            # only the positions inside the window (coordinates grow with positions):
            # a text repeating a word cannot make the search quadratic
            for i in range(bisect_left(ps, lo, key=coord.__getitem__), len(ps)):
                p = ps[i]
                if coord[p] > hi:
                    break
                if p in chosen:
                    continue
                got = extend([*chosen, p])
                if got is not None:
                    return got
            return None

        for p0 in positions[0]:
            got = extend([p0])
            if got is not None:
                words = tuple(dict.fromkeys(surfaces[content[p]] for p in sorted(got)))
                return Match(index, term, words)
        return None

    def _negated(self, first: int, toks: Sequence[_Tok]) -> bool:
        """A negation word before ``first``, within the window (counted in content words:
        stop words are free, up to 3 per window word: a run of stop words cannot make
        the walk long), and no breaker between them."""
        seen = 0
        i = first - 1
        stop = max(-1, first - 1 - 4 * self.lexicon.negation_window)
        while i > stop and seen < self.lexicon.negation_window:
            t = toks[i]
            if t.breaker:
                return False
            if t.negation:
                return True
            if not t.skip:
                seen += 1
            i -= 1
        return False
