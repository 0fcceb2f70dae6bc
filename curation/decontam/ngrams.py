"""Tokens and n-gram hashes, vectorised with numpy.

Text is lowercased and split into tokens: each CJK ideograph is one token (character n-grams for
Chinese), every other run of word characters is one token (cut into pieces of at most 32
characters). A token's 64-bit hash is a polynomial over its code points, computed from one prefix
sum over all characters at once; an n-gram's hash combines its n token hashes the same way,
n shifted arrays at a time. Nothing loops in Python per token or per n-gram.
"""

from __future__ import annotations

import itertools
import re

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


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base**0 .. base**n (wrapping uint64)."""
    out = np.full(n + 1, base, dtype=np.uint64)
    out[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(out, dtype=np.uint64)


_P_INV = np.uint64(pow(int(_P), -1, 1 << 64))  # P is odd, so it has an inverse modulo 2**64


def token_hashes(toks: list[str]) -> np.ndarray:
    """uint64 hash per token, independent of the other tokens in the list.

    The polynomial sum(c_j * P**(end-1-j)) of each token is a difference of one prefix sum over all
    code points (weighted by powers of P's inverse), so the work is a few array passes over the
    characters with no per-token loop and no padding."""
    if not toks:
        return np.zeros(0, dtype=np.uint64)
    codes = np.frombuffer("\0".join(toks).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    ends = np.append(np.flatnonzero(codes == 0), len(codes))
    starts = np.concatenate(([0], ends[:-1] + 1))
    with np.errstate(over="ignore"):
        prefix = np.concatenate(
            (np.zeros(1, np.uint64), np.cumsum(codes * _powers(_P_INV, len(codes))[1:], dtype=np.uint64))
        )
        h = _powers(_P, len(codes))[ends] * (prefix[ends] - prefix[starts])
        return _mix(h ^ (ends - starts).astype(np.uint64))


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
    """(token hashes of all texts, index of the text each token came from)."""
    per = [tokens(t) for t in texts]
    lens = np.fromiter((len(p) for p in per), dtype=np.int64, count=len(per))
    return token_hashes(list(itertools.chain.from_iterable(per))), np.repeat(np.arange(len(texts)), lens)


def ngrams_of(th: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n-gram hashes, owning text) from `batch_tokens`, never across two texts."""
    g = ngram_hashes(th, n)
    if not len(g):
        return g, np.zeros(0, dtype=np.int64)
    same = owner[: len(g)] == owner[n - 1 :]
    return g[same], owner[: len(g)][same]


def batch_ngrams(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n-gram hashes, index of the text each came from) over a batch, never across two texts."""
    return ngrams_of(*batch_tokens(texts), n)
