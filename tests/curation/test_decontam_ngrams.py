"""The decontamination hot path finds tokens with array operations instead of the regex that
defines them (`TOKEN_RE`, `tokens`): held to the regex and to the per-token hash on generated text
full of what makes tokenizers disagree (CJK next to Latin, `_`, digits, runs longer than 32
characters, combining marks, final sigma, characters outside the BMP, NUL), and on real pages."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dsllm.curation.decontam.ngrams import (
    _mix,
    batch_tokens,
    ngram_hashes,
    ngram_keys,
    token_hashes,
    tokens,
    unmix,
)
from dsllm.curation.samples.prose import chinese_documents, english_documents

ALPHABET = st.sampled_from(
    list("aZ_09 .,-\n\t\0天地玄黄\u3400\uf900\ufa6e") + ["ΣΑΣ ", "İ", "e\u0301", "😀", "𠀀", "𝔘", "Ⅻ", "x" * 40, "٣"]
)


def _reference(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    per = [tokens(t) for t in texts]
    flat = [tok for p in per for tok in p]
    return token_hashes(flat), np.repeat(np.arange(len(texts)), [len(p) for p in per])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ALPHABET, max_size=60).map("".join), max_size=6))
def test_batch_tokens_equals_the_regex_tokens_hashed_one_by_one(texts):
    got_h, got_owner = batch_tokens(texts)
    want_h, want_owner = _reference(texts)
    assert got_h.tolist() == want_h.tolist()
    assert got_owner.tolist() == want_owner.tolist()


def test_batch_tokens_on_real_text():
    """Real English and Chinese prose (the sample crawl's sources) and real benchmark items."""
    texts = ["\n\n".join(d) for d in english_documents()[:30] + chinese_documents()[:30]]
    for path in sorted((Path(__file__).resolve().parents[1] / "data" / "eval_tasks").rglob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts += [json.loads(line)["request"]["context"] for line in f][:50]
    assert sum(map(len, texts)) > 100_000
    got_h, got_owner = batch_tokens(texts)
    want_h, want_owner = _reference(texts)
    assert np.array_equal(got_h, want_h) and np.array_equal(got_owner, want_owner)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), st.sets(st.integers(1, 12), min_size=1))
def test_ngram_keys_mix_to_ngram_hashes_and_unmix_inverts_mix(values, lengths):
    th = np.array(values, dtype=np.uint64)
    got = dict(ngram_keys(th, lengths))
    for n in lengths:
        want = ngram_hashes(th, n)
        if not len(want):
            assert n not in got
            continue
        assert _mix(got[n]).tolist() == want.tolist()
        assert unmix(want).tolist() == got[n].tolist()
    assert unmix(_mix(th)).tolist() == th.tolist()
