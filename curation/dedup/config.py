"""The one config of deduplication (exact and MinHash LSH), shared by all its passes.

Shingle size and threshold are chosen together. Jaccard similarity is measured on shingle sets:
word 3-grams for space-delimited text and character 5-grams over CJK runs (a Chinese clause of 5
characters carries about as much as 3 English words). Editing a fraction e of the words of a
document changes about 3e of its word 3-grams, so its Jaccard to the original is about
(1 - 3e) / (1 + 3e): 0.74 for 5% edited words (with word 5-grams it would already be 0.6). With
`threshold = 0.7`, pages that differ by a few percent of their words (dates, navigation, ads) are
near duplicates; rewrites are not.

The LSH split (bands x rows) is derived from the threshold with datasketch's `_optimal_param`,
weighting false negatives 0.8 (recall first; candidates are then verified on their signatures or
their true Jaccard, so false positives cost time, not documents). For threshold 0.7 and 128
permutations this gives 18 bands x 7 rows: a pair with Jaccard 0.8 becomes a candidate with
probability 0.986, one with Jaccard 0.5 with probability 0.13 (and is then rejected by verification).
Verification applies within a dump, against earlier dumps of the run and against the index, whose
batches keep the signatures of their documents (`verify = "none"` removes on any shared band key).
"""

from __future__ import annotations

import dataclasses
import functools

VERIFY_MODES = ("none", "signature", "jaccard")


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    """Knobs of `exact_dedup` and `minhash_dedup`."""

    exact: bool = True  # drop documents whose normalized text is identical
    minhash: bool = True  # MinHash LSH near-duplicate removal
    num_perm: int = 128  # MinHash permutations (datasketch scheme "affine32")
    bands: int = 0  # LSH bands; 0 = derived from threshold
    rows: int = 0  # rows per band; 0 = derived from threshold
    threshold: float = 0.7  # Jaccard (on shingles) from which two documents are near duplicates
    lsh_fn_weight: float = 0.8  # weight of false negatives in datasketch's optimal band/row choice
    shingle_words: int = 3  # word n-gram size for space-delimited scripts
    shingle_chars: int = 5  # character n-gram size inside CJK runs
    seed: int = 1  # permutation seed (datasketch MinHash(seed=...))
    verify: str = "signature"  # none | signature (estimated Jaccard) | jaccard (true Jaccard)
    partitions: int = 16  # band-key partitions: one task each; an index fixes its own
    batch_docs: int = 2048  # documents per vectorized signature batch

    def __post_init__(self):
        if self.num_perm < 2 or self.num_perm > 4096:
            raise ValueError(f"num_perm must be in [2, 4096], got {self.num_perm}")
        if (self.bands == 0) != (self.rows == 0):
            raise ValueError("set both bands and rows, or neither (then they follow threshold)")
        if self.bands < 0 or self.rows < 0 or self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands} x {self.rows} exceeds num_perm {self.num_perm}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 < self.lsh_fn_weight < 1.0:
            raise ValueError(f"lsh_fn_weight must be in (0, 1), got {self.lsh_fn_weight}")
        if self.shingle_words < 1 or self.shingle_chars < 1:
            raise ValueError("shingle_words and shingle_chars must be >= 1")
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, got {self.verify!r}")
        if not 1 <= self.partitions <= 4096:
            raise ValueError(f"partitions must be in [1, 4096], got {self.partitions}")
        if self.batch_docs < 1:
            raise ValueError("batch_docs must be >= 1")

    @property
    def band_rows(self) -> tuple[int, int]:
        """(bands, rows): as configured, or datasketch's optimal choice for `threshold`."""
        if self.bands:
            return self.bands, self.rows
        return _optimal_band_rows(self.threshold, self.num_perm, self.lsh_fn_weight)


# datasketch's `_optimal_param` for the shipped default (threshold 0.7, 128 permutations, weight 0.8),
# so a default run does not import datasketch and scipy (~0.5 CPU-s per process) to recompute it;
# tests/curation/test_curate_timing.py checks every entry against datasketch
KNOWN_OPTIMA = {(0.7, 128, 0.8): (18, 7)}


@functools.lru_cache(maxsize=64)
def _optimal_band_rows(threshold: float, num_perm: int, fn_weight: float) -> tuple[int, int]:
    if (threshold, num_perm, fn_weight) in KNOWN_OPTIMA:
        return KNOWN_OPTIMA[(threshold, num_perm, fn_weight)]
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, 1.0 - fn_weight, fn_weight)
    return int(b), int(r)
