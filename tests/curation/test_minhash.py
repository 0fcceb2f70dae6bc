"""Shingles and signatures against independent oracles:

- the shingling rule as curation/dedup/shingles.py's docstring states it, written here with the
  standard library (Unicode categories and names, itertools.groupby), checked on hand-worked
  examples; the vectorized hasher must give one hash per oracle shingle, the same hash for the
  same shingle everywhere, different hashes for different shingles;
- datasketch 2.x: our signatures are bit-identical to its MinHash (default affine32 permutation
  scheme) over the oracle's shingles, and our Jaccard estimates equal its estimates and track the
  true Jaccard of the oracle's shingle sets as closely as its own SHA-1 MinHash does.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param

from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.minhash import MinhashSignature
from dsllm.curation.dedup.shingles import ShingleHasher, shingle_hash32
from dsllm.curation.dedup.synthetic import chinese_pieces, english_pieces, near_duplicate
from dsllm.errors import UserError
from tests.curation.shingle_oracle import oracle_shingles


def spaced(*shingles: str) -> list[bytes]:
    """Hand-written shingles: CJK shingles written without spaces get one between characters."""
    return [(s if s.isascii() or " " in s else " ".join(s)).encode("utf-8") for s in shingles]


# worked by hand from the rule (word 3-grams, CJK character 5-grams, short runs whole)
EXAMPLES = [
    ("", []),
    ("   ", []),
    ("x", spaced("x")),
    ("Hello, World! It's 3 a.m.", spaced("hello world it", "world it s", "it s 3", "s 3 a", "3 a m")),
    ("混合 text 中文和English混在一起。", spaced("混合", "text", "中文和", "english", "混在一起")),
    ("Ünïcode café 😀 naïve", spaced("ünïcode café naïve")),
    ("ＦＵＬＬ　ｗｉｄｔｈ，标点！", spaced("ｆｕｌｌ ｗｉｄｔｈ", "标点")),
    ("a\u00a0b\tc\nd", spaced("a b c", "b c d")),
    ("𠀀𠀁𠀂 astral CJK", spaced("𠀀𠀁𠀂", "astral cjk")),
    ("カタカナとひらがな", spaced("カタカナと", "タカナとひ", "カナとひら", "ナとひらが", "とひらがな")),
    (
        "青山依旧在，几度夕阳红。",
        spaced("青山依旧在", "山依旧在几", "依旧在几度", "旧在几度夕", "在几度夕阳", "几度夕阳红"),
    ),
]


@pytest.fixture(scope="module")
def texts():
    return english_pieces()[:40] + chinese_pieces()[:40] + [t for t, _ in EXAMPLES]


def per_doc(hashes: np.ndarray, offsets: np.ndarray) -> list[list[int]]:
    return [hashes[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


@pytest.mark.parametrize("text,expected", EXAMPLES, ids=[t[:12] or "empty" for t, _ in EXAMPLES])
def test_hand_worked_examples(text, expected):
    assert oracle_shingles(text) == expected  # the oracle follows the rule
    hashes, offsets = ShingleHasher(3, 5).hash_batch([text])
    assert per_doc(hashes, offsets)[0] == [shingle_hash32(s) for s in expected]


def test_one_hash_per_shingle_the_same_everywhere(texts):
    """Over real English and Chinese prose: the hasher's sequence per document follows the oracle's
    shingles one to one, as a function (same shingle, same hash, in any document) that is injective
    here and is the documented hash of the shingle's units."""
    docs = per_doc(*ShingleHasher(3, 5).hash_batch(texts))
    table: dict[bytes, int] = {}
    for text, hashes in zip(texts, docs):
        shingles = oracle_shingles(text)
        assert len(hashes) == len(shingles), text[:60]
        for s, h in zip(shingles, hashes):
            assert table.setdefault(s, h) == h, s
    assert len(set(table.values())) == len(table) > 20_000
    assert all(shingle_hash32(s) == h for s, h in itertools.islice(table.items(), 0, None, 50))


def test_chinese_paragraph_is_character_ngrams_not_one_word():
    para = chinese_pieces(200)[3]
    n_han = sum(1 for ch in para if "\u4e00" <= ch <= "\u9fff")
    # punctuation does not break the run: one 5-gram per position of the character run
    hashes, offsets = ShingleHasher(3, 5).hash_batch([para])
    assert offsets[1] == n_han - 4 == len(oracle_shingles(para))


def datasketch_minhash(shingles: list[bytes], cfg: DedupConfig, hashfunc=shingle_hash32) -> MinHash:
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=hashfunc)
    m.update_batch(shingles)
    return m


@pytest.mark.parametrize(
    "cfg", [DedupConfig(), DedupConfig(num_perm=64, seed=7, bands=8, rows=8)], ids=["default", "64-perm-seed-7"]
)
def test_signatures_are_datasketch_minhash_bit_for_bit(texts, cfg):
    sig, _ = MinhashSignature(cfg).from_texts(texts)
    for i, t in enumerate(texts):
        m = datasketch_minhash(oracle_shingles(t), cfg)
        assert m.scheme == "affine32"  # datasketch 2.x's default permutation scheme
        np.testing.assert_array_equal(sig[i], m.hashvalues)
        ours = LeanMinHash(seed=cfg.seed, hashvalues=sig[i], scheme="affine32")
        assert LeanMinHash(m).jaccard(ours) == 1.0


def test_jaccard_estimates_track_true_jaccard_like_datasketch():
    cfg = DedupConfig(num_perm=256)
    rng = random.Random(1)
    pairs = []
    for chinese, pieces in ((False, english_pieces()[10:22]), (True, chinese_pieces()[10:22])):
        for k, base in enumerate(pieces):
            lo = (0.3, 0.5, 0.7, 0.85)[k % 4]
            pairs.append((base, near_duplicate(base, lo, rng, chinese=chinese, max_jaccard=lo + 0.1)[0]))
    sig, _ = MinhashSignature(cfg).from_texts([t for pair in pairs for t in pair])
    ours_err, sha1_err = [], []
    for p, (a, b) in enumerate(pairs):
        sa, sb = oracle_shingles(a), oracle_shingles(b)
        true = len(set(sa) & set(sb)) / len(set(sa) | set(sb))
        ours = float((sig[2 * p] == sig[2 * p + 1]).mean())
        assert ours == datasketch_minhash(sa, cfg).jaccard(datasketch_minhash(sb, cfg))
        sha1 = MinHash(num_perm=256, seed=cfg.seed)  # datasketch's own hash (SHA-1) over the same shingles
        sha1.update_batch(sa)
        other = MinHash(num_perm=256, seed=cfg.seed)
        other.update_batch(sb)
        ours_err.append(abs(ours - true))
        sha1_err.append(abs(sha1.jaccard(other) - true))
    # 256 permutations: standard error <= 0.032 per estimate
    assert max(ours_err) < 0.12 and max(sha1_err) < 0.12
    assert np.mean(ours_err) < 0.05 and np.mean(ours_err) < np.mean(sha1_err) + 0.02


def test_band_rows_from_datasketch_optimal_param():
    cfg = DedupConfig(threshold=0.7, num_perm=128, lsh_fn_weight=0.8)
    assert cfg.band_rows == tuple(_optimal_param(0.7, 128, 0.2, 0.8))
    assert DedupConfig(bands=16, rows=8).band_rows == (16, 8)


def test_band_keys_equal_only_for_equal_bands():
    cfg = DedupConfig(bands=4, rows=2, num_perm=8)
    mh = MinhashSignature(cfg)
    sig = np.arange(24, dtype=np.uint32).reshape(3, 8)
    sig[1, :2] = sig[0, :2]  # band 0 equal between docs 0 and 1
    keys = mh.band_keys(sig)
    assert keys[0, 0] == keys[1, 0]
    assert len(set(keys.ravel().tolist())) == 11
    same_rows = np.zeros((1, 8), np.uint32)  # equal values in different bands: different keys
    assert len(set(mh.band_keys(same_rows)[0].tolist())) == 4


@pytest.mark.parametrize(
    "kw", [dict(bands=3), dict(threshold=1.5), dict(verify="maybe"), dict(bands=20, rows=10), dict(partitions=0)]
)
def test_config_validation(kw):
    from dsllm.config import from_dict

    with pytest.raises(UserError):
        from_dict(DedupConfig, kw)


def test_block_powers_match_python_pow():
    """x^j from the two block tables equals Python's pow(x, j, 2^64), across block boundaries."""
    from dsllm.curation.dedup.shingles import _BLOCK, _M, _P, _Q, _Powers

    rng = np.random.default_rng(0)
    j = np.concatenate([np.arange(3 * _BLOCK + 5), rng.integers(0, 50_000_000, 2000)]).astype(np.int64)
    for base in (_P, _Q, _M):
        powers = _Powers(base)
        assert powers.at(j).tolist() == [pow(base, int(e), 1 << 64) for e in j]
        values = rng.integers(0, 256, 2 * _BLOCK + 17).astype(np.uint8)
        expected = [(int(v) + 1) * pow(base, e, 1 << 64) % (1 << 64) for e, v in enumerate(values)]
        assert powers.times_range(values, plus=1).tolist() == expected


def _exact_key_oracle(text: str) -> int:
    """The exact key written out per unit in Python: fmix64(sum_k unit_hash(u_k) * M^k mod 2^64)
    over the oracle's units (words and CJK characters, in order)."""
    from dsllm.curation.dedup.shingles import _M, _fmix64_int, _unit_hash_int

    units = [u for s in oracle_shingles(text, 1, 1) for u in s.split(b" ")]
    acc = sum(_unit_hash_int(u) * pow(_M, k, 1 << 64) for k, u in enumerate(units)) % (1 << 64)
    return _fmix64_int(acc)


def test_text_hashes_in_chunks_equal_per_document_oracle(monkeypatch, texts):
    """A batch hashed a few hundred bytes at a time (documents cut into many chunks, words
    touching at document edges, empty documents) gives every document the oracle's shingle hashes
    and exact key, as if it were hashed alone."""
    from dsllm.curation.dedup import minhash

    monkeypatch.setattr(minhash, "_CHUNK_BYTES", 300)
    batch = ["", "abc", "def ghi", "", "中文", "字 jkl"] + texts[::7] + [""]
    exact, hashes, offsets = MinhashSignature(DedupConfig()).text_hashes(batch)
    assert len(exact) == len(batch) and len(offsets) == len(batch) + 1
    for i, text in enumerate(batch):
        assert hashes[offsets[i] : offsets[i + 1]].tolist() == [shingle_hash32(s) for s in oracle_shingles(text)]
        assert int(exact[i]) == _exact_key_oracle(text), text[:40]
