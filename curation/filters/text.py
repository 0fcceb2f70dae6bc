"""Text views shared by the heuristic filters: words for space-delimited languages, characters for
CJK (which has no spaces between words), and vectorized n-gram repetition measures.

A document is treated as CJK when its language is zh/ja, or, when no language is known, when most
of its letters are CJK characters. In a CJK view the "words" are the non-space, non-punctuation
characters, so Gopher's word-level rules become character-level rules with their own thresholds.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

from dsllm.curation.filters.ngrams import repetition_fractions

CJK_LANGS = ("zh", "ja")
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_WORD_RE = re.compile(r"\S+")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", "…", "」", "』", "）", ")")
CJK_TERMINAL_PUNCT = ("。", "！", "？", "…", "」", "』", "”", "）", ".", "!", "?", "；")
CJK_SENTENCE_RE = re.compile(r"[。！？!?]+")
LATIN_SENTENCE_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


def cjk_ratio(text: str, sample: int = 2000) -> float:
    """Fraction of CJK characters among the non-space characters of a prefix of `text`."""
    head = text[:sample]
    letters = sum(1 for c in head if not c.isspace())
    return len(CJK_RE.findall(head)) / letters if letters else 0.0


def is_cjk_doc(text: str, lang: str) -> bool:
    if lang:
        return lang in CJK_LANGS
    return cjk_ratio(text) > 0.3


def words(text: str) -> list[str]:
    """Whitespace-delimited words."""
    return text.split()


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


@functools.lru_cache(maxsize=1)
def _noncontent() -> tuple[np.ndarray, re.Pattern]:
    """Basic-plane characters that carry no content (spaces, punctuation, symbols): as a lookup
    table for code point arrays and as a regex character class for strings."""
    table = np.fromiter((_is_punct(chr(i)) or chr(i).isspace() for i in range(0x10000)), dtype=bool, count=0x10000)
    idx = np.flatnonzero(table)
    cut = np.flatnonzero(np.diff(idx) != 1)
    lo, hi = np.concatenate(([idx[0]], idx[cut + 1])), np.concatenate((idx[cut], [idx[-1]]))
    ranges = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in zip(lo.tolist(), hi.tolist())
    )
    return table, re.compile(f"[{ranges}]+")


def cjk_tokens(text: str) -> list[str]:
    """The characters of a CJK text that carry content (no spaces, no punctuation or symbols)."""
    return list(_noncontent()[1].sub("", text))


def cjk_count(text: str) -> int:
    """len(cjk_tokens(text)) without building the list."""
    return len(_noncontent()[1].sub("", text))


def cjk_codepoints(text: str) -> np.ndarray:
    """The content characters of a CJK text as code points (its tokens' hashes: equal ⇔ same character)."""
    cp = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    table = _noncontent()[0]
    return cp[(cp > 0xFFFF) | ~table[np.minimum(cp, 0xFFFF)]].astype(np.uint64)


def token_view(text: str, cjk: bool) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes uint64, token lengths int64): CJK content characters or whitespace words."""
    if cjk:
        h = cjk_codepoints(text)
        return h, np.ones(len(h), dtype=np.int64)
    toks = text.split()
    return token_hashes(toks), np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))


@functools.lru_cache(maxsize=1024)
def lines_of(text: str) -> list[str]:
    """The stripped non-empty lines (cached: several stages ask for the same text's lines; callers
    must not modify the list)."""
    return [ln for ln in map(str.strip, text.split("\n")) if ln]


def paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def token_hashes(tokens: list[str]) -> np.ndarray:
    """One uint64 per token (Python's string hash; equal tokens get equal hashes)."""
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)


def top_ngram_char_fraction(h: np.ndarray, lens: np.ndarray, n: int) -> float:
    """Characters covered by the most frequent n-gram (count × its length) / all characters
    (one document; `curation.filters.ngrams` does whole batches)."""
    return float(repetition_fractions([h], [lens], [n], [])[0][n][0])


def dup_ngram_char_fraction(h: np.ndarray, lens: np.ndarray, n: int) -> float:
    """Characters inside any n-gram that occurs more than once / all characters (one document)."""
    return float(repetition_fractions([h], [lens], [], [n])[1][n][0])


def duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier item, fraction of characters in those repeats)."""
    if not items:
        return 0.0, 0.0
    first = dict.fromkeys(items)  # the first occurrence of every distinct item
    total = sum(map(len, items))
    dup_chars = total - sum(map(len, first))
    return (len(items) - len(first)) / len(items), dup_chars / total if total else 0.0
