"""The shingling rule of curation/dedup/shingles.py's docstring, written independently with the
standard library (Unicode categories and names, itertools.groupby): the oracle of the dedup tests."""

from __future__ import annotations

import itertools
import unicodedata

SEP, WORD, CJK = "sep", "word", "cjk"
CJK_NAMES = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA")


def oracle_kind(ch: str) -> str:
    """Han and kana are CJK units; letters, marks and digits make words; the rest separates. (The
    code's range tables also make all of Latin-1's U+0080-U+00BF separators; the texts here avoid
    the three letters among them.)"""
    if unicodedata.name(ch, "").startswith(CJK_NAMES):
        return CJK
    cat = unicodedata.category(ch)
    return WORD if cat[0] in "LM" or cat in ("Nd", "Nl") else SEP


def oracle_shingles(text: str, n_words: int = 3, n_chars: int = 5) -> list[bytes]:
    """Units (words; single CJK characters) of the lower-cased text; runs of units of one kind;
    n consecutive units of a run joined by a space, or the whole run when shorter."""
    units = []
    for kind, chars in itertools.groupby(text.lower(), key=oracle_kind):
        chars = "".join(chars)
        units += [(kind, chars)] if kind == WORD else [(kind, c) for c in chars] if kind == CJK else []
    out = []
    for kind, run in itertools.groupby(units, key=lambda u: u[0]):
        toks = [u.encode("utf-8") for _, u in run]
        n = n_words if kind == WORD else n_chars
        out += [b" ".join(toks[i : i + n]) for i in range(max(1, len(toks) - n + 1))]
    return out
