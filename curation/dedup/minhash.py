"""MinHash signatures of many documents at once, and their LSH band keys.

Semantics are datasketch 2.x's default scheme "affine32", bit for bit: with `h` the 32-bit hash
of a shingle (`shingles.shingle_hash32`), permutation k maps it to
`a_k * fmix32(h) + b_k mod 2^32`, where (a, b) are drawn exactly as `MinHash(num_perm, seed)`
draws them (`np.random.RandomState(seed)`, `a` odd). So
`MinHash(num_perm, seed, hashfunc=shingle_hash32).update_batch(shingles).hashvalues` equals our
row for that document (tests check it).

The permutation step is the hot loop: a (num_perm, shingles) uint32 product per chunk of a few
thousand shingles (sized to stay in cache), reduced per document with `np.minimum.reduceat`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.shingles import ShingleHasher, fmix64

EMPTY = np.uint32(0xFFFFFFFF)
_CHUNK_SHINGLES = 4096  # (128 perms x 4096) uint32 = 2 MiB: stays in L2
# text hashed per pass: its per-byte arrays (uint64 prefix sums, 8 B per byte) stay in cache; on
# the bench crawls 1.4x faster than hashing a whole 2048-document batch (~9 MB of text) at once
_CHUNK_BYTES = 1 << 19


def fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer on uint32 arrays (datasketch's pre-mix)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) uint32 arrays as datasketch.MinHash(num_perm, seed) (scheme affine32) makes them."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


class MinhashSignature:
    """Signatures and band keys of batches of documents under one DedupConfig."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.num_perm = cfg.num_perm
        self.bands, self.rows = cfg.band_rows
        a, b = permutations(cfg.num_perm, cfg.seed)
        self.a, self.b = a[:, None], b[:, None]  # (P, 1) for broadcasting over shingles
        self.hasher = ShingleHasher(cfg.shingle_words, cfg.shingle_chars)

    def from_texts(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """(signatures (n_docs, num_perm) uint32, shingles per document int64)."""
        hashes, offsets = self.hasher.hash_batch(texts)
        return self.from_hashes(hashes, offsets), np.diff(offsets)

    def text_hashes(self, texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(exact key per document, shingle hashes, offsets (n_docs + 1)) of a batch of texts,
        hashed about _CHUNK_BYTES of text at a time (whole documents; hashes do not depend on
        the chunking)."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        if not isinstance(texts, pa.Array):
            texts = pa.array(list(texts), type=pa.large_string())
        n_docs = len(texts)
        ends = np.cumsum(pc.fill_null(pc.binary_length(texts), 0).to_numpy())
        cuts = np.flatnonzero(np.diff(ends // _CHUNK_BYTES) > 0) + 1  # a chunk ends where a multiple is passed
        bounds = [0, *cuts.tolist(), n_docs] if n_docs else [0]
        exact, hashes, counts = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint32)], [np.zeros(0, np.int64)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            uhash, kind, doc, doc_units = self.hasher.units(texts.slice(lo, hi - lo))
            exact.append(self.hasher.exact_keys(uhash, doc_units))
            h, off = self.hasher.hash_units(uhash, kind, doc, hi - lo)
            hashes.append(h)
            counts.append(np.diff(off))
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=offsets[1:])
        return np.concatenate(exact), np.concatenate(hashes), offsets

    def from_hashes(self, hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Signatures of documents whose shingle hashes are hashes[offsets[i]:offsets[i+1]].
        Documents without shingles get the empty signature (all 0xFFFFFFFF), as in datasketch."""
        n_docs = len(offsets) - 1
        sig = np.full((n_docs, self.num_perm), EMPTY, dtype=np.uint32)
        mixed = fmix32(hashes.astype(np.uint32, copy=False))
        nonempty = np.flatnonzero(np.diff(offsets) > 0)
        if len(nonempty) == 0:
            return sig
        buf = np.empty((self.num_perm, max(_CHUNK_SHINGLES, int(np.diff(offsets).max()))), np.uint32)
        i = 0
        while i < len(nonempty):
            # a chunk of whole documents holding about _CHUNK_SHINGLES shingles
            lo = offsets[nonempty[i]]
            j = int(np.searchsorted(offsets[nonempty + 1], lo + _CHUNK_SHINGLES, side="right"))
            j = max(j, i + 1)
            docs = nonempty[i:j]
            hi = offsets[docs[-1] + 1]
            out = buf[:, : hi - lo]
            np.multiply(self.a, mixed[lo:hi], out=out)  # (P, S): wraps mod 2^32
            out += self.b
            sig[docs] = np.minimum.reduceat(out, offsets[docs] - lo, axis=1).T
            i = j
        return sig

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """(n_docs, bands) uint64 keys: a hash of each band's rows and the band's index, so one
        key space holds every band (equal keys = equal band = LSH candidates)."""
        n = len(sig)
        keys = np.empty((n, self.bands), dtype=np.uint64)
        for band in range(self.bands):
            acc = np.full(n, ((band + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF, dtype=np.uint64)
            for r in range(self.rows):
                col = sig[:, band * self.rows + r].astype(np.uint64)
                acc = fmix64(acc ^ col)
            keys[:, band] = acc
        return keys


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Fraction of equal signature values, row by row (datasketch's MinHash.jaccard)."""
    return (sig_a == sig_b).mean(axis=-1)
