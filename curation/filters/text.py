"""Text views shared by the heuristic filters: words for space-delimited languages, characters for
CJK (which has no spaces between words), and vectorized n-gram repetition measures.

A document is treated as CJK when its language is zh/ja, or, when no language is known, when most
of its letters are CJK characters. In a CJK view the "words" are the non-space, non-punctuation
characters, so Gopher's word-level rules become character-level rules with their own thresholds.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

CJK_LANGS = ("zh", "ja")
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_WORD_RE = re.compile(r"\S+")
TERMINAL_PUNCT = (".", "!", "?", '"', "'", "”", "’", "。", "！", "？", "…", "」", "』", "）", ")")
CJK_TERMINAL_PUNCT = ("。", "！", "？", "…", "」", "』", "”", "）", ".", "!", "?", "；")
CJK_SENTENCE_RE = re.compile(r"[。！？!?]+")
LATIN_SENTENCE_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_PUNCT_TABLE = None


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


def cjk_tokens(text: str) -> list[str]:
    """The characters of a CJK text that carry content (no spaces, no punctuation or symbols)."""
    global _PUNCT_TABLE
    if _PUNCT_TABLE is None:
        _PUNCT_TABLE = {i: None for i in range(0x10000) if _is_punct(chr(i)) or chr(i).isspace()}
    return list(text.translate(_PUNCT_TABLE))


def lines_of(text: str) -> list[str]:
    return [ln.strip() for ln in text.split("\n") if ln.strip()]


def paragraphs_of(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def token_hashes(tokens: list[str]) -> np.ndarray:
    """One uint64 per token (Python's string hash; equal tokens get equal hashes)."""
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)


def ngram_hashes(h: np.ndarray, n: int) -> np.ndarray:
    """Rolling polynomial hash of every n-gram of a token-hash array (wrapping uint64 math)."""
    m = len(h) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    out = h[:m].copy()
    mult = np.uint64(1099511628211)
    with np.errstate(over="ignore"):
        for k in range(1, n):  # n is small (≤ 10): a loop over the n-gram width, not over tokens
            out = out * mult + h[k:k + m]
    return out


def top_ngram_char_fraction(h: np.ndarray, lens: np.ndarray, n: int) -> float:
    """Characters covered by the most frequent n-gram (count × its length) / all characters."""
    g = ngram_hashes(h, n)
    total = lens.sum()
    if len(g) == 0 or total == 0:
        return 0.0
    _, first, counts = np.unique(g, return_index=True, return_counts=True)
    if counts.max() < 2:
        return 0.0
    # the most frequent n-gram; among equally frequent ones the longest, so that the result does not
    # depend on hash order (Python's str hash is salted per process)
    cum = np.concatenate(([0], np.cumsum(lens)))
    chars = cum[first + n] - cum[first]
    top = counts == counts.max()
    return float((counts[top] * chars[top]).max() / total)


def dup_ngram_char_fraction(h: np.ndarray, lens: np.ndarray, n: int) -> float:
    """Characters inside any n-gram that occurs more than once / all characters."""
    g = ngram_hashes(h, n)
    total = lens.sum()
    if len(g) == 0 or total == 0:
        return 0.0
    _, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    starts = np.flatnonzero(counts[inverse] > 1)
    if len(starts) == 0:
        return 0.0
    delta = np.zeros(len(h) + 1, dtype=np.int64)
    np.add.at(delta, starts, 1)
    np.add.at(delta, starts + n, -1)
    covered = np.cumsum(delta[:-1]) > 0
    return float(lens[covered].sum() / total)


def duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier item, fraction of characters in those repeats)."""
    if not items:
        return 0.0, 0.0
    h = token_hashes(items)
    _, first = np.unique(h, return_index=True)
    dup = np.ones(len(items), dtype=bool)
    dup[first] = False
    lens = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    total = lens.sum()
    return float(dup.mean()), float(lens[dup].sum() / total) if total else 0.0
