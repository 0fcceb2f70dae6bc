"""Gopher's n-gram repetition measures for a whole batch of documents at once, in numpy.

Input: per document an array of token hashes (equal tokens → equal values) and token lengths in
characters. The documents are concatenated; an n-gram is identified by a rolling 64-bit hash of its
tokens mixed with its document's index (so equal n-grams of different documents never meet), and
n-grams that would cross a document's end are never formed.

Two measures per document and n (Rae et al. 2021, Gopher's repetition rules):
  top: characters covered by the most frequent n-gram (count × its length; among equally frequent
       ones the longest, so the result does not depend on hash order) / all characters, 0 unless
       some n-gram occurs twice;
  dup: characters inside any n-gram that occurs more than once / all characters.

Candidate pruning keeps the sorts small: an n-gram can only repeat if both of its (n-1)-grams
repeat, so only those positions are hashed and sorted for n; in prose most 5-grams are unique and
the sorts for larger n are tiny. Every call is one numpy operation over the batch, never a Python
loop over tokens or n-grams.
"""

from __future__ import annotations

import numpy as np

_MULT = np.uint64(1099511628211)  # FNV prime: the rolling hash's multiplier
_DOC_MIX = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio constant: spreads document indices


def repetition_fractions(
    hashes: list[np.ndarray], lens: list[np.ndarray], top_ns, dup_ns
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """({n: top fraction per document}, {n: dup fraction per document}) for a batch of documents."""
    top_ns, dup_ns = sorted(set(map(int, top_ns))), sorted(set(map(int, dup_ns)))
    n_docs = len(hashes)
    top = {n: np.zeros(n_docs) for n in top_ns}
    dup = {n: np.zeros(n_docs) for n in dup_ns}
    wanted = top_ns + dup_ns
    if not wanted or n_docs == 0:
        return top, dup
    sizes = np.fromiter(map(len, hashes), dtype=np.int64, count=n_docs)
    n_tok = int(sizes.sum())
    if n_tok == 0:
        return top, dup
    h = np.concatenate(hashes).astype(np.uint64, copy=False)
    length = np.concatenate(lens).astype(np.int64, copy=False)
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), sizes)
    room = offsets[1:][doc] - np.arange(n_tok)  # tokens from each position to its document's end
    cum = np.concatenate(([0], np.cumsum(length)))
    total = cum[offsets[1:]] - cum[offsets[:-1]]  # characters per document
    n_min, n_max = min(wanted), max(wanted)
    with np.errstate(over="ignore"):
        gram = h.copy()  # the n-gram hash at each candidate position
        for k in range(1, min(n_min, n_tok)):
            gram[: n_tok - k] = gram[: n_tok - k] * _MULT + h[k:]
        cand = np.flatnonzero(room >= n_min)
        for n in range(n_min, n_max + 1):
            if n > n_min:
                gram[cand] = gram[cand] * _MULT + h[cand + (n - 1)]
            keys = gram[cand] ^ (doc[cand].astype(np.uint64) * _DOC_MIX)
            repeats, runs = _repeating(keys, cand, n_tok)
            starts = np.flatnonzero(repeats)
            if n in dup:
                dup[n] = _covered_fraction(starts, n, doc, cum, total, n_docs)
            if n in top:
                top[n] = _top_fraction(runs, n, doc, cum, total, n_docs)
            # an (n+1)-gram can only repeat where both of its n-grams repeat
            cand = starts[repeats[starts + 1] & (room[starts] > n)]
            if len(cand) == 0:
                break  # nothing repeats at n + 1, so nothing repeats at any larger n
    return top, dup


def _repeating(keys: np.ndarray, cand: np.ndarray, n_tok: int):
    """Mask of the positions whose key occurs ≥ 2 times (one past the end: False), and the
    repeating runs (one position, count)."""
    order = np.argsort(keys)
    ordered = keys[order]
    new = np.empty(len(keys), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    run_start = np.flatnonzero(new)
    counts = np.diff(np.append(run_start, len(keys)))
    repeats = np.zeros(n_tok + 1, dtype=bool)
    repeats[cand[order[np.repeat(counts, counts) >= 2]]] = True
    multi = counts >= 2
    # every occurrence of a key has the same tokens, so any one stands for the run
    return repeats, (cand[order[run_start[multi]]], counts[multi])


def _covered_fraction(starts: np.ndarray, n: int, doc, cum, total, n_docs: int) -> np.ndarray:
    """Characters covered by the n-grams at the sorted `starts` (none crosses a document's end, so
    the gap to the next start, capped at n, is what each one adds)."""
    if len(starts) == 0:
        return np.zeros(n_docs)
    reach = np.minimum(np.diff(np.append(starts, starts[-1] + n)), n)
    chars = cum[starts + reach] - cum[starts]
    return _ratio(np.bincount(doc[starts], weights=chars, minlength=n_docs), total)


def _top_fraction(runs, n: int, doc, cum, total, n_docs: int) -> np.ndarray:
    first, counts = runs
    if len(first) == 0:
        return np.zeros(n_docs)
    d = doc[first]
    best = np.zeros(n_docs, dtype=np.int64)
    np.maximum.at(best, d, counts)
    top = counts == best[d]
    chars = cum[first + n] - cum[first]
    covered = np.zeros(n_docs, dtype=np.int64)
    np.maximum.at(covered, d[top], (counts * chars)[top])
    return _ratio(covered, total)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(len(den))
    np.divide(num, den, out=out, where=den > 0)
    return out
