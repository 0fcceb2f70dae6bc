"""The decontamination index: n-gram hashes of test strings, per benchmark, and the lookup.

A test string of at least `n` tokens contributes all its n-grams; one of `min_tokens`..n-1 tokens
contributes itself as a whole (an exact match of that many tokens); shorter ones are ignored. The
index is one `.npz`: per length, a sorted uint64 hash array and the benchmark of each hash.

Saved under a name ending in `.xz`, it is compact (the bundled index is one): per length, the hashes
grouped by benchmark, each group sorted and delta-coded (`d<len>`, stored byte-plane by byte-plane so
the near-zero high bytes of the deltas compress away) with the group sizes (`c<len>`), the whole
`.npz` compressed with xz. Hashes of random n-grams cannot compress much below their entropy, about
64 - log2(count) bits each plus the benchmark: ~6.1 bytes a hash for the bundled index, 12 in `.npz`.
Both forms load into the same tables; `digest()` identifies the content whichever form it came from.
"""

from __future__ import annotations

import hashlib
import io
import lzma

import numpy as np

from dsllm import storage
from dsllm.curation.decontam.ngrams import (
    batch_ngrams,
    batch_tokens,
    ngram_hashes,
    ngram_keys,
    token_hashes,
    tokens,
    unmix,
)
from dsllm.errors import UserError

_BITS = 26  # prefilter of the largest tables: 8 MB, ~4% false candidates at 3M hashes
_BITS_PER_HASH = 64  # smaller tables get a filter of >= 64 bits per hash (~1.5% false candidates)
FORMAT = "dsllm-decontam-2"  # bump whenever tokens or hashes change: old indexes are refused


class DecontamIndex:
    """Benchmark n-gram hashes; `match(texts)` names the benchmark each text contains, if any."""

    def __init__(
        self,
        names: list[str],
        tables: dict[int, tuple[np.ndarray, np.ndarray]],
        n: int = 10,
        counts: dict[str, int] | None = None,
    ):
        self.names, self.tables, self.n = list(names), tables, n
        self.counts = counts or {}

    @classmethod
    def build(cls, strings: dict[str, list[str]], n: int = 10, min_tokens: int = 3) -> DecontamIndex:
        """From {benchmark: [test strings]} (a hash shared by two benchmarks goes to the first)."""
        by_len: dict[int, list[tuple[np.ndarray, int]]] = {}
        for k, (name, texts) in enumerate(strings.items()):
            g, _ = batch_ngrams(texts, n)
            by_len.setdefault(n, []).append((g, k))
            for t in texts:  # short strings: one hash each (a loop per string, not per token)
                toks = tokens(t)
                if min_tokens <= len(toks) < n:
                    by_len.setdefault(len(toks), []).append((ngram_hashes(token_hashes(toks), len(toks)), k))
        tables = {}
        for length, parts in by_len.items():
            h = np.concatenate([p for p, _ in parts]) if parts else np.zeros(0, np.uint64)
            owner = np.concatenate([np.full(len(p), k, np.int32) for p, k in parts])
            order = np.lexsort((owner, h))
            h, owner = h[order], owner[order]
            first = np.ones(len(h), bool)
            first[1:] = h[1:] != h[:-1]
            tables[length] = (h[first], owner[first])
        return cls(list(strings), tables, n, {k: len(v) for k, v in strings.items()})

    def match(self, texts: list[str]) -> list[str | None]:
        """For each text, the first benchmark (in index order) whose n-gram or short string it contains."""
        best = np.full(len(texts), len(self.names), dtype=np.int64)
        th, tok_owner = batch_tokens(texts)  # tokenized and hashed once for every length
        lengths = [length for length, (h, _) in self.tables.items() if len(h)]
        for length, keys in ngram_keys(th, lengths):
            bits, maybe, h, owner = self._lookup(length)
            top = keys >> np.uint64(64 - bits)
            cand = np.flatnonzero((maybe[top >> np.uint64(3)] >> (top & np.uint64(7)).astype(np.uint8)) & 1)
            doc = tok_owner[cand]
            within = doc == tok_owner[cand + length - 1]  # n-grams never span two texts
            g, doc = keys[cand[within]], doc[within]
            pos = np.minimum(np.searchsorted(h, g), len(h) - 1)
            hit = h[pos] == g
            np.minimum.at(best, doc[hit], owner[pos[hit]])
        return [None if b == len(self.names) else self.names[b] for b in best]

    def _lookup(self, length: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(bits, filter, sorted unmixed hashes, their benchmark) of one table, built once: the
        keys `match` looks up are unmixed (`ngram_keys`), so the table is unmixed instead, and a
        2**bits-bit filter on the top bits rules out most keys with one memory access (2**_BITS bits
        for the largest table, >= _BITS_PER_HASH bits per hash, small enough for the cache, for the
        short strings' tables)."""
        cache = self.__dict__.setdefault("_lookups", {})
        if length not in cache:
            h, owner = self.tables[length]
            u = unmix(h)
            order = np.argsort(u)
            u, owner = u[order], owner[order]
            bits = min(_BITS, max(10, int(len(u) * _BITS_PER_HASH - 1).bit_length()))
            top = u >> np.uint64(64 - bits)
            packed = np.zeros(1 << (bits - 3), dtype=np.uint8)
            np.bitwise_or.at(packed, top >> np.uint64(3), np.left_shift(1, top & np.uint64(7)).astype(np.uint8))
            cache[length] = (bits, packed, u, owner)
        return cache[length]

    def digest(self) -> str:
        """sha256 of the content (format, n, benchmarks, their string counts, every table), the same
        for an index built, saved as `.npz` or `.xz`, and loaded again."""
        d = hashlib.sha256(f"{FORMAT}\n{self.n}\n".encode())
        for name in self.names:
            d.update(f"{name}\t{self.counts.get(name, 0)}\n".encode())
        for length in sorted(self.tables):
            h, owner = self.tables[length]
            d.update(f"{length}:{len(h)}\n".encode())
            d.update(np.ascontiguousarray(h, dtype="<u8").tobytes())
            d.update(np.ascontiguousarray(owner, dtype="<i4").tobytes())
        return d.hexdigest()

    def save(self, uri: str) -> None:
        """Write the index: `.npz`, or compact when `uri` ends in `.xz` (see the module docstring)."""
        compact = uri.endswith(".xz")
        arrays = {
            "names": np.array(self.names),
            "counts": np.array([self.counts.get(x, 0) for x in self.names]),
            "meta": np.array([FORMAT, str(self.n), "compact" if compact else "plain"]),
        }
        for length, (h, owner) in self.tables.items():
            if not compact:
                arrays[f"h{length}"], arrays[f"o{length}"] = h, owner
                continue
            order = np.lexsort((h, owner))  # by benchmark, then hash
            hs = h[order].astype("<u8")
            with np.errstate(over="ignore"):
                deltas = np.diff(hs, prepend=np.uint64(0))  # wraps (harmlessly) where a group starts
            arrays[f"d{length}"] = deltas.view(np.uint8).reshape(-1, 8).T.copy()
            arrays[f"c{length}"] = np.bincount(owner, minlength=len(self.names)).astype(np.int64)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        data = buf.getvalue()
        storage.write_bytes(uri, lzma.compress(data, preset=9) if compact else data)

    @classmethod
    def load(cls, uri: str) -> DecontamIndex:
        if not storage.exists(uri):
            raise UserError(f"{uri}: no decontamination index there (build one with `dsllm decontam index`)")
        try:
            data = storage.read_bytes(uri)
            if data.startswith(b"\xfd7zXZ\x00"):
                data = lzma.decompress(data)
            z = np.load(io.BytesIO(data), allow_pickle=False)
            meta = [str(x) for x in z["meta"]]
            if meta[0] != FORMAT:
                raise ValueError(f"format {meta[0]!r}")
            names = [str(x) for x in z["names"]]
            tables = {int(k[1:]): (z[k], z["o" + k[1:]]) for k in z.files if k.startswith("h")}
            for k in (k for k in z.files if k.startswith("d")):
                tables[int(k[1:])] = _expand(z[k], z["c" + k[1:]])
            counts = dict(zip(names, (int(c) for c in z["counts"])))
        except (ValueError, KeyError, OSError, lzma.LZMAError) as exc:
            raise UserError(f"{uri}: not a decontamination index ({exc})") from None
        return cls(names, tables, int(meta[1]), counts)


def _expand(planes: np.ndarray, per_owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted hashes, owner) from a compact table's byte planes of deltas and its group sizes."""
    deltas = np.ascontiguousarray(planes.T).view("<u8").ravel()
    with np.errstate(over="ignore"):
        h = np.cumsum(deltas, dtype=np.uint64)
    owner = np.repeat(np.arange(len(per_owner), dtype=np.int32), per_owner)
    if len(owner) != len(h):
        raise ValueError("group sizes do not add up to the hashes")
    order = np.argsort(h, kind="stable")
    return h[order], owner[order]
