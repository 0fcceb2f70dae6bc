"""Tokens and n-gram hashes, vectorised with numpy.

Text is lowercased and split into tokens: each CJK ideograph is one token (character n-grams for
Chinese), every other run of word characters is one token (cut into pieces of at most 32
characters). A token's 64-bit hash is a polynomial over its code points, computed from one prefix
sum over all characters at once; an n-gram's hash combines its n token hashes the same way,
n shifted arrays at a time. Nothing loops in Python per token or per n-gram.

`tokens` (the regex `TOKEN_RE`) defines the tokens. `batch_tokens`, the hot path, finds the same
tokens without the regex: it classifies every code point of a batch by a lookup table (word
character as `\\w` means it, i.e. `str.isalnum()` or `_`; CJK ideograph; other) and cuts the runs
with array operations, about 3x cheaper than `findall` per text (tests/curation/test_decontam_ngrams.py
holds it to the regex on generated text).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]{{1,32}}")
_P = np.uint64(0x100000001B3)  # FNV-64 prime: per character
_M = np.uint64(0x9E3779B97F4A7C15)  # golden ratio: per token
_MAX_N = 32


def tokens(text: str) -> list[str]:
    """The text's tokens (lowercased words, single CJK characters)."""
    return TOKEN_RE.findall(text.lower())


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (wrapping uint64 arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base**0 .. base**n (wrapping uint64), from a per-process table grown by doubling."""
    have = _POWERS.get(int(base))
    if have is None or len(have) <= n:
        size = max(n + 1, 2 * len(have) if have is not None else 1 << 16)
        out = np.full(size, base, dtype=np.uint64)
        out[0] = 1
        with np.errstate(over="ignore"):
            have = _POWERS[int(base)] = np.cumprod(out, dtype=np.uint64)
    return have[: n + 1]


_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))  # P is odd, so it has an inverse modulo 2**64


def token_hashes(toks: list[str]) -> np.ndarray:
    """uint64 hash per token, independent of the other tokens in the list.

    The polynomial sum(c_j * P**(end-1-j)) of each token is a difference of one prefix sum over all
    code points (weighted by powers of P's inverse), so the work is a few array passes over the
    characters with no per-token loop and no padding."""
    if not toks:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer("\0".join(toks).encode("utf-32-le"), dtype=np.uint32)
    ends = np.append(np.flatnonzero(codes == 0), len(codes))
    starts = np.concatenate(([0], ends[:-1] + 1))
    return _span_hashes(codes, starts, ends)


def _span_hashes(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The token hash of each span codes[start:end] (see `token_hashes`)."""
    with np.errstate(over="ignore"):
        prefix = np.empty(len(codes) + 1, dtype=np.uint64)
        prefix[0] = 0
        np.cumsum(codes.astype(np.uint64) * _powers(_P_INV, len(codes))[1:], dtype=np.uint64, out=prefix[1:])
        h = _powers(_P, len(codes))[ends] * (prefix[ends] - prefix[starts])
        return _mix(h ^ (ends - starts).astype(np.uint64))


_CLASS_BMP: np.ndarray | None = None  # 0 other, 1 word character (not CJK), 2 CJK ideograph
_CLASS_ASTRAL: dict[int, int] = {}


def _classes(codes: np.ndarray) -> np.ndarray:
    """Token class of each code point, by the same rules as `TOKEN_RE` (`\\w` = isalnum or `_`)."""
    global _CLASS_BMP
    if _CLASS_BMP is None:
        table = np.fromiter((chr(c).isalnum() for c in range(0x10000)), dtype=np.uint8, count=0x10000)
        table[ord("_")] = 1
        for lo, hi in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)):
            table[lo : hi + 1] = 2
        _CLASS_BMP = table
    cls = _CLASS_BMP[np.minimum(codes, 0xFFFF)]
    astral = codes > 0xFFFF
    if astral.any():  # rare: emoji, historic scripts, CJK extension B+ (words, not CJK tokens)
        for c in np.unique(codes[astral]).tolist():
            if c not in _CLASS_ASTRAL:
                _CLASS_ASTRAL[c] = int(chr(c).isalnum())
        cls[astral] = [_CLASS_ASTRAL[c] for c in codes[astral].tolist()]
    return cls


def ngram_hashes(th: np.ndarray, n: int) -> np.ndarray:
    """uint64 hash of every run of n consecutive token hashes (len(th) - n + 1 of them)."""
    m = len(th) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    g = np.full(m, n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            g = g * _M + th[k : k + m]
        return _mix(g)


def batch_tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(token hashes of all texts, index of the text each token came from): the tokens of `tokens`,
    hashed as `token_hashes` hashes them, found by array operations over the whole batch."""
    lowered = [t.lower() for t in texts]
    lens = np.fromiter((len(t) + 1 for t in lowered), dtype=np.int64, count=len(lowered))
    # one separator after each text: a non-word character, so no token spans two texts
    codes = np.frombuffer("\0".join(lowered).encode("utf-32-le") + b"\0\0\0\0", dtype=np.uint32)
    if not len(texts):
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    cls = _classes(codes)
    n = len(codes)
    word = cls == 1
    prev_word = np.empty(n, dtype=bool)
    prev_word[0] = False
    prev_word[1:] = word[:-1]
    run_start = word & ~prev_word
    # offset of each word character in its run: a run longer than _MAX_N is cut every _MAX_N
    pos = np.arange(n, dtype=np.int64)
    last_start = np.maximum.accumulate(np.where(run_start, pos, 0))
    start = (cls == 2) | (word & ((pos - last_start) % _MAX_N == 0))
    starts = np.flatnonzero(start)
    # a token ends at the next token's start or at the first character outside any token
    in_token = cls > 0
    nxt = np.empty(n, dtype=bool)
    nxt[-1] = True
    nxt[:-1] = start[1:] | ~in_token[1:]
    ends = np.flatnonzero(in_token & nxt) + 1
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lens)[starts]
    return _span_hashes(codes, starts, ends), owner


def ngrams_of(th: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n-gram hashes, owning text) from `batch_tokens`, never across two texts."""
    return _within(ngram_hashes(th, n), owner, n)


def _within(g: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not len(g):
        return g, np.zeros(0, dtype=np.int64)
    same = owner[: len(g)] == owner[n - 1 :]
    return g[same], owner[: len(g)][same]


def ngram_keys(th: np.ndarray, lengths) -> Iterator[tuple[int, np.ndarray]]:
    """(n, unmixed n-gram hashes at every start position) for each n in `lengths`, where
    `_mix(key) == ngram_hashes(th, n)`; positions whose n tokens span two texts are included (the
    caller checks the owners of its candidates). The work is shared between lengths: the unmixed
    hash of an (n+1)-gram extends the n-gram's by one token, so all lengths up to the longest cost
    one pass each instead of n."""
    want = set(lengths)
    if not want:
        return
    top = max(want)
    powers = _powers(_M, top)
    s = np.zeros(len(th), dtype=np.uint64)  # sum of th[i + k] * M**(n - 1 - k), k < n
    with np.errstate(over="ignore"):
        for n in range(1, top + 1):
            m = len(th) - n + 1
            if m <= 0:
                break
            s = s[:m] * _M + th[n - 1 : n - 1 + m]
            if n in want:  # ngram_hashes' g before mixing: n * M**n + s
                yield n, s + np.uint64(n) * powers[n]


def _unxorshift(h: np.ndarray, shift: int) -> np.ndarray:
    out = h.copy()
    k = shift
    while k < 64:
        out ^= h >> np.uint64(k)
        k += shift
    return out


_MIX_INV = (np.uint64(pow(0x94D049BB133111EB, -1, 1 << 64)), np.uint64(pow(0xBF58476D1CE4E5B9, -1, 1 << 64)))


def unmix(h: np.ndarray) -> np.ndarray:
    """The inverse of `_mix` (splitmix64's finaliser is a bijection): lets a table of mixed hashes
    be searched with unmixed keys, so looking up n-grams mixes none of them."""
    with np.errstate(over="ignore"):
        h = _unxorshift(h, 31) * _MIX_INV[0]
        h = _unxorshift(h, 27) * _MIX_INV[1]
        return _unxorshift(h, 30)


def batch_ngrams(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n-gram hashes, index of the text each came from) over a batch, never across two texts."""
    return ngrams_of(*batch_tokens(texts), n)
