"""Text → units → shingle hashes, vectorized over the UTF-8 bytes of many documents at once.

Normalization: lower case (Arrow's `utf8_lower`), then every character is a separator
(punctuation, symbols, spaces, emoji), part of a word (letters and digits of space-delimited
scripts), or a CJK character (Han, kana; each one its own unit). Units are words and CJK
characters; a "run" is a maximal sequence of units of one kind in one document (punctuation does
not break a run, so a Chinese paragraph is one run of characters, never one giant word).
The classes come from the code point ranges below, an approximation of Unicode's categories: all of
Latin-1's U+0080-U+00BF are separators (µ, ª, º included), and symbols outside the listed ranges
count as word characters (tests/curation/test_minhash.py checks the rule on English and Chinese).

Shingles are n consecutive units of a run: n = `shingle_words` in word runs, `shingle_chars` in
CJK runs; a run shorter than n gives one shingle of the whole run. A shingle's hash depends only
on its units, so the same shingle hashes the same in any document, batch or worker:

    unit hash   u = fmix64(sum_j (byte_j + 1) * Q^j  mod 2^64)        (polynomial over the bytes)
    shingle     s = fmix64(sum_k u_k * M^k  mod 2^64)  & 0xFFFFFFFF   (polynomial over the units)

computed for a whole batch with prefix sums over the byte buffer (no Python loop per unit or
shingle). `shingle_hash32(b" ".join(units))` is the same function in pure Python: pass it as
`hashfunc` to datasketch's MinHash to check signatures against it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MASK64 = (1 << 64) - 1
_P = 0x100000001B3 * 2 + 1  # odd, so invertible mod 2^64
_Q = pow(_P, -1, 1 << 64)  # prefix sums use Q^j, substrings are rescaled by P^s
_M = 0x9E3779B97F4A7C15  # unit combiner (odd)
SEP, WORD, CJK = 0, 1, 2

# Code point ranges (inclusive) that are separators or CJK units; everything else non-ASCII is a
# word character. Checked in this order: CJK first.
_CJK_RANGES = [
    (0x3040, 0x30FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x31F0, 0x31FF),
    (0x20000, 0x3134F),
]
_SEP_RANGES = [
    (0x0080, 0x00BF),
    (0x00D7, 0x00D7),
    (0x00F7, 0x00F7),
    (0x2000, 0x2BFF),
    (0x3000, 0x303F),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFF0F),
    (0xFF1A, 0xFF20),
    (0xFF3B, 0xFF40),
    (0xFF5B, 0xFF65),
    (0xFFF0, 0xFFFF),
    (0x1F000, 0x1FAFF),
    (0xE000, 0xF8FF),
    (0xFE00, 0xFE0F),
]
_ASCII_CLASS = np.array([WORD if chr(c).isalnum() else SEP for c in range(128)], dtype=np.uint8)


def _bmp_table() -> np.ndarray:
    table = np.full(0x10000, WORD, dtype=np.uint8)
    table[:128] = _ASCII_CLASS
    for lo, hi in _SEP_RANGES:
        table[lo : min(hi, 0xFFFF) + 1] = SEP
    for lo, hi in _CJK_RANGES:
        table[lo : min(hi, 0xFFFF) + 1] = CJK
    return table


_BMP_CLASS = _bmp_table()
_BYTE_CLASS = np.concatenate((_ASCII_CLASS, np.full(128, SEP, np.uint8)))


def char_class(ch: str) -> int:
    """SEP, WORD or CJK of one (lower-cased) character: the reference for the vectorized path."""
    cp = ord(ch)
    if cp < 128:
        return int(_ASCII_CLASS[cp])
    for lo, hi in _CJK_RANGES:
        if lo <= cp <= hi:
            return CJK
    for lo, hi in _SEP_RANGES:
        if lo <= cp <= hi:
            return SEP
    return WORD


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (a bijection), element-wise on uint64 arrays."""
    x = x ^ (x >> np.uint64(33))  # a new array: the input is not modified
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


def _fmix64_int(x: int) -> int:
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & MASK64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & MASK64
    return x ^ (x >> 33)


def _unit_hash_int(unit: bytes) -> int:
    h, q = 0, 1
    for byte in unit:
        h = (h + (byte + 1) * q) & MASK64
        q = (q * _Q) & MASK64
    return _fmix64_int(h)


def shingle_hash32(shingle: bytes) -> int:
    """The 32-bit hash of one shingle given as its units joined by single spaces (pure Python)."""
    h, m = 0, 1
    for unit in shingle.split(b" "):
        h = (h + _unit_hash_int(unit) * m) & MASK64
        m = (m * _M) & MASK64
    return _fmix64_int(h) & 0xFFFFFFFF


def reference_units(text: str) -> list[tuple[int, str]]:
    """(kind, unit) of a text, one character at a time: the slow reference of `ShingleHasher`."""
    units, word = [], []
    for ch in text.lower():
        c = char_class(ch)
        if c == WORD:
            word.append(ch)
            continue
        if word:
            units.append((WORD, "".join(word)))
            word = []
        if c == CJK:
            units.append((CJK, ch))
    if word:
        units.append((WORD, "".join(word)))
    return units


def reference_shingles(text: str, n_words: int, n_chars: int) -> list[bytes]:
    """The shingles of a text as bytes (units joined by a space), in order, with repeats."""
    units = reference_units(text)
    out, i = [], 0
    while i < len(units):
        j = i
        while j < len(units) and units[j][0] == units[i][0]:
            j += 1
        run = [u.encode("utf-8") for _, u in units[i:j]]
        n = n_words if units[i][0] == WORD else n_chars
        if len(run) <= n:
            out.append(b" ".join(run))
        else:
            out.extend(b" ".join(run[k : k + n]) for k in range(len(run) - n + 1))
        i = j
    return out


_BLOCK_BITS = 12
_BLOCK = 1 << _BLOCK_BITS  # x^j = (x^BLOCK)^(j // BLOCK) * x^(j % BLOCK): two small tables instead of one per byte


def _powers(base: int, n: int) -> np.ndarray:
    """uint64 powers base^0..base^(n-1) mod 2^64 (cumprod wraps mod 2^64)."""
    vals = np.full(n, base, dtype=np.uint64)
    vals[:1] = 1
    return np.cumprod(vals, dtype=np.uint64)


class _Powers:
    """x^j mod 2^64 for any j, from a table of x^0..x^(BLOCK-1) and one of (x^BLOCK)^k grown on
    demand (both small: no table as long as the byte buffer)."""

    def __init__(self, base: int):
        self.low = _powers(base, _BLOCK)
        self.step = pow(base, _BLOCK, 1 << 64)
        self.high = np.ones(1, dtype=np.uint64)

    def _high(self, rows: int) -> np.ndarray:
        if rows > len(self.high):
            self.high = _powers(self.step, max(rows, 2 * len(self.high)))
        return self.high[:rows]

    def at(self, j: np.ndarray) -> np.ndarray:
        """x^j element-wise for int64 exponents j >= 0."""
        if len(j) == 0:
            return np.zeros(0, np.uint64)
        high = self._high((int(j.max()) >> _BLOCK_BITS) + 1)
        return high[j >> _BLOCK_BITS] * self.low[j & (_BLOCK - 1)]

    def times_range(self, values: np.ndarray, plus: int = 0) -> np.ndarray:
        """(values[j] + plus) * x^j mod 2^64 for j = 0..len-1, a new uint64 array: the block tables
        broadcast over a (rows, BLOCK) view, so no power table as long as `values` is built."""
        n = len(values)
        rows = -(-n // _BLOCK)
        out = np.zeros(rows * _BLOCK, dtype=np.uint64)
        out[:n] = values
        out[:n] += np.uint64(plus)
        grid = out.reshape(rows, _BLOCK)  # (rows, BLOCK): element [r, c] has j = r * BLOCK + c
        grid *= self.low
        grid *= self._high(rows)[:, None]
        return out[:n]


class ShingleHasher:
    """Vectorized shingle hashing of a batch of documents."""

    def __init__(self, shingle_words: int, shingle_chars: int):
        self.n_words = shingle_words
        self.n_chars = shingle_chars
        self._p = _Powers(_P)
        self._q = _Powers(_Q)

    def units(self, texts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(unit_hash uint64, kind uint8, doc int64, doc_units offsets int64 (n_docs + 1))."""
        arr = _as_large_string(texts)
        n_docs = len(arr)
        lower = pc.utf8_lower(arr)
        offsets = np.frombuffer(lower.buffers()[1], dtype=np.int64)[lower.offset : lower.offset + n_docs + 1]
        start0 = int(offsets[0])
        data = np.frombuffer(lower.buffers()[2], dtype=np.uint8)[start0 : int(offsets[-1])]
        offsets = offsets - start0
        cls = self._byte_classes(data)
        n = len(data)
        word = cls == WORD
        cjk = cls == CJK
        lead = (data & 0xC0) != 0x80
        # a unit starts at a word byte after a non-word byte, or at a CJK character's lead byte;
        # it ends at a word byte before a non-word byte, or at a CJK character's last byte
        is_start = np.empty(n, dtype=bool)
        is_start[:1] = word[:1]
        np.greater(word[1:], word[:-1], out=is_start[1:])
        is_start |= cjk & lead
        is_end = np.empty(n, dtype=bool)
        is_end[-1:] = word[-1:]
        np.greater(word[:-1], word[1:], out=is_end[:-1])
        cjk[:-1] &= lead[1:]
        is_end |= cjk
        # documents break words: a word byte at a document's first (last) byte starts (ends) a unit
        firsts = offsets[:-1][offsets[:-1] < n]
        is_start[firsts] |= word[firsts]
        lasts = offsets[1:][offsets[1:] > 0] - 1
        is_end[lasts] |= word[lasts]
        starts = np.flatnonzero(is_start)
        ends = np.flatnonzero(is_end) + 1
        kind = cls[starts]
        # polynomial hash of every unit from prefix sums over the whole buffer
        terms = self._q.times_range(data, plus=1)  # (byte_j + 1) * Q^j
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(terms, out=prefix[1:])
        uhash = fmix64((prefix[ends] - prefix[starts]) * self._p.at(starts))
        # units per document: unit starts before each document's first byte
        doc_units = np.searchsorted(starts, offsets).astype(np.int64)
        doc = np.repeat(np.arange(n_docs), np.diff(doc_units))
        return uhash, kind, doc, doc_units

    def hash_batch(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes (uint32, grouped by document, in text order) and offsets (n_docs + 1)."""
        uhash, kind, doc, _ = self.units(texts)
        return self.hash_units(uhash, kind, doc, len(texts))

    def exact_keys(self, uhash: np.ndarray, doc_units: np.ndarray) -> np.ndarray:
        """A 64-bit key per document of its whole unit sequence: equal keys = equal normalized
        text (case, punctuation and spacing ignored)."""
        k = len(uhash)
        pos = np.arange(k) - np.repeat(doc_units[:-1], np.diff(doc_units))
        prefix = np.zeros(k + 1, dtype=np.uint64)
        if k:
            np.cumsum(uhash * _powers(_M, int(pos.max()) + 1)[pos], out=prefix[1:])
        return fmix64(prefix[doc_units[1:]] - prefix[doc_units[:-1]])

    def hash_units(self, uhash, kind, doc, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """Shingle hashes and offsets from the output of `units`."""
        k = len(uhash)
        if k == 0:
            return np.zeros(0, np.uint32), np.zeros(n_docs + 1, np.int64)
        brk = np.ones(k, dtype=bool)
        brk[1:] = (kind[1:] != kind[:-1]) | (doc[1:] != doc[:-1])
        run_starts = np.flatnonzero(brk)
        run_len = np.diff(np.append(run_starts, k))
        n = np.where(kind[run_starts] == WORD, self.n_words, self.n_chars)
        # a run of len >= n has len - n + 1 shingles of n units; a shorter run is one shingle
        count = np.maximum(run_len - n + 1, 1)
        total = int(count.sum())
        first = np.repeat(run_starts, count) + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
        length = np.repeat(np.minimum(n, run_len), count)
        acc = np.zeros(total, dtype=np.uint64)
        shortest, longest = int(length.min()), int(length.max())
        mpow = _powers(_M, longest)
        for j in range(longest):  # at most max(n) dense passes: sum_j u[first + j] * M^j
            if j < shortest:
                acc += uhash[first + j] * mpow[j]
            else:  # shingles shorter than j + 1 units add nothing
                acc += uhash[np.minimum(first + j, k - 1)] * np.where(length > j, mpow[j], np.uint64(0))
        hashes = (fmix64(acc) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        offsets = np.zeros(n_docs + 1, dtype=np.int64)
        np.cumsum(np.bincount(doc[run_starts], weights=count, minlength=n_docs).astype(np.int64), out=offsets[1:])
        return hashes, offsets

    @staticmethod
    def _byte_classes(data: np.ndarray) -> np.ndarray:
        """SEP / WORD / CJK of every byte (continuation bytes get their character's class).
        ASCII bytes by a 256-entry table; only multi-byte characters are decoded, each length on
        its own (2- and 3-byte code points fit uint16, so the BMP table is indexed directly)."""
        cls = _BYTE_CLASS[data]
        pos = np.flatnonzero(data >= 0xC0)  # lead bytes of multi-byte characters
        if len(pos) == 0:
            return cls
        padded = np.concatenate((data, np.zeros(4, np.uint8)))
        b0 = data[pos]
        sizes = 2 + (b0 >= 0xE0).view(np.uint8) + (b0 >= 0xF0).view(np.uint8)  # bytes per character
        for size in (2, 3, 4):
            at = pos[sizes == size]
            if len(at):
                ccls = _multibyte_classes(padded, at, size)
                for k in range(size):
                    cls[at + k] = ccls
        return cls


def _multibyte_classes(padded: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """Classes of the `size`-byte characters whose lead bytes are at `at`."""
    lead_bits = {2: 0x1F, 3: 0x0F, 4: 0x07}[size]
    cp = (padded[at] & lead_bits).astype(np.uint32 if size == 4 else np.uint16)
    for k in range(1, size):
        cp = (cp << 6) | (padded[at + k] & 0x3F)
    if size < 4:
        return _BMP_CLASS[cp]
    ccls = _BMP_CLASS[np.minimum(cp, 0xFFFF)]
    astral = np.flatnonzero(cp > 0xFFFF)  # emoji, CJK extension B+
    if len(astral):
        acp, acls = cp[astral], np.full(len(astral), WORD, dtype=np.uint8)
        for lo, hi in _SEP_RANGES:
            acls[(acp >= lo) & (acp <= hi)] = SEP
        for lo, hi in _CJK_RANGES:
            acls[(acp >= lo) & (acp <= hi)] = CJK
        ccls[astral] = acls
    return ccls


def _as_large_string(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if isinstance(texts, pa.Array):
        return texts.cast(pa.large_string()) if texts.type != pa.large_string() else texts
    return pa.array(list(texts), type=pa.large_string())
