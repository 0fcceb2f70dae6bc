"""Shingles and signatures: vectorized path == pure-Python reference == datasketch 2.x."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash
from datasketch.lsh import _optimal_param

from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.minhash import MinhashSignature
from dsllm.curation.dedup.shingles import ShingleHasher, reference_shingles, shingle_hash32
from dsllm.curation.dedup.synthetic import chinese_pieces, english_pieces
from dsllm.errors import UserError


@pytest.fixture(scope="module")
def texts():
    en = english_pieces()[:40]
    zh = chinese_pieces()[:40]
    odd = ["", "   ", "x", "Hello, World! It's 3 a.m.", "混合 text 中文和English混在一起。",
           "Ünïcode café 😀 naïve", "ＦＵＬＬ　ｗｉｄｔｈ，标点！", "a\u00a0b\tc\nd", "𠀀𠀁𠀂 astral CJK"]
    return en + zh + odd


def test_vectorized_shingles_equal_reference(texts):
    hasher = ShingleHasher(3, 5)
    hashes, offsets = hasher.hash_batch(texts)
    assert len(offsets) == len(texts) + 1
    for i, t in enumerate(texts):
        want = [shingle_hash32(s) for s in reference_shingles(t, 3, 5)]
        assert hashes[offsets[i]:offsets[i + 1]].tolist() == want, t[:60]


def test_chinese_paragraph_is_character_ngrams_not_one_word():
    para = chinese_pieces(200)[3]
    shingles = reference_shingles(para, 3, 5)
    n_han = sum(1 for ch in para if "\u4e00" <= ch <= "\u9fff")
    # punctuation does not break the run: one 5-gram per position of the character run
    assert len(shingles) == n_han - 4
    assert all(len(s.split(b" ")) == 5 for s in shingles)
    hashes, offsets = ShingleHasher(3, 5).hash_batch([para])
    assert offsets[1] == n_han - 4


def test_signatures_equal_datasketch(texts):
    cfg = DedupConfig()
    sig, n_sh = MinhashSignature(cfg).from_texts(texts)
    for i, t in enumerate(texts):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=shingle_hash32)
        m.update_batch(reference_shingles(t, 3, 5))
        assert m.scheme == "affine32"
        np.testing.assert_array_equal(sig[i], m.hashvalues)
        lean = LeanMinHash(m)
        ours = LeanMinHash(seed=cfg.seed, hashvalues=sig[i], scheme="affine32")
        assert lean.jaccard(ours) == 1.0


def test_signature_other_seed_and_perm_count():
    cfg = DedupConfig(num_perm=64, seed=7, bands=8, rows=8)
    t = english_pieces()[5]
    sig, _ = MinhashSignature(cfg).from_texts([t])
    m = MinHash(num_perm=64, seed=7, hashfunc=shingle_hash32)
    m.update_batch(reference_shingles(t, 3, 5))
    np.testing.assert_array_equal(sig[0], m.hashvalues)


def test_estimated_jaccard_tracks_true_jaccard():
    from dsllm.curation.dedup.synthetic import jaccard, near_duplicate, shingle_set
    import random

    rng = random.Random(1)
    base = english_pieces()[10]
    copy, j = near_duplicate(base, 0.6, rng, chinese=False, max_jaccard=0.9)
    sig, _ = MinhashSignature(DedupConfig(num_perm=256)).from_texts([base, copy])
    est = (sig[0] == sig[1]).mean()
    assert abs(est - jaccard(shingle_set(base), shingle_set(copy))) < 0.1


def test_band_rows_from_datasketch_optimal_param():
    cfg = DedupConfig(threshold=0.7, num_perm=128, lsh_fn_weight=0.8)
    assert cfg.band_rows == tuple(_optimal_param(0.7, 128, 0.2, 0.8))
    assert DedupConfig(bands=16, rows=8).band_rows == (16, 8)


def test_band_keys_equal_only_for_equal_bands():
    cfg = DedupConfig(bands=4, rows=2, num_perm=8)
    mh = MinhashSignature(cfg)
    sig = np.arange(24, dtype=np.uint32).reshape(3, 8)
    sig[1, :2] = sig[0, :2]                   # band 0 equal between docs 0 and 1
    keys = mh.band_keys(sig)
    assert keys[0, 0] == keys[1, 0]
    assert len(set(keys.ravel().tolist())) == 11
    same_rows = np.zeros((1, 8), np.uint32)   # equal values in different bands: different keys
    assert len(set(mh.band_keys(same_rows)[0].tolist())) == 4


@pytest.mark.parametrize("kw", [dict(bands=3), dict(threshold=1.5), dict(verify="maybe"),
                                dict(bands=20, rows=10), dict(partitions=0)])
def test_config_validation(kw):
    from dsllm.config import from_dict

    with pytest.raises(UserError):
        from_dict(DedupConfig, kw)
