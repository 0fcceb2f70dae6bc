"""decode(encode(s)) == s for any Unicode string, for tokenizers we train (property tests),
through `tokenizers` and through `transformers`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsllm.tokenizer.io import load_hf_tokenizer, load_tokenizer
from dsllm.tokenizer.train import TokenizerTrainConfig, train_tokenizer

SPECIAL = [
    "\r\n",
    "\t",
    "\u00a0",
    "\u2029",
    "\u2028",
    "１２３",
    "\u0301",
    "e\u0301",
    "🚀",
    "😶\u200d🌫️",
    "👩🏽\u200d💻",
    "München",
    "ø ö ú ÿ õ ÷ û ý À ù Á þ ü",
    "中文",
    "  ",
    "\n\n",
    "\x00",
    "\ufeff",
    "\U0010ffff",
]

# any code point except surrogates (which cannot be encoded as UTF-8)
any_char = st.characters(blacklist_categories=("Cs",))
texts = st.lists(
    st.one_of(
        st.sampled_from(SPECIAL),
        st.text(any_char, max_size=8),
        st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5), max_size=4),
        st.text(st.sampled_from("abc XYZ 0123456789.,!?'\""), max_size=10),
    ),
    max_size=12,
).map("".join)


@pytest.fixture(scope="module")
def ours(prose_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("rt") / "tok"
    train_tokenizer(
        [str(prose_shards)], str(out), TokenizerTrainConfig(vocab_size=1500, sample_bytes=300_000), progress=False
    )
    return out


@settings(max_examples=400, deadline=None)
@given(s=texts)
def test_roundtrip_tokenizers(ours, s):
    tok, _ = load_tokenizer_cached(ours)
    assert tok.decode(tok.encode(s).ids, skip_special_tokens=True) == s
    assert tok.decode(tok.encode(s, add_special_tokens=False).ids) == s


@settings(max_examples=150, deadline=None)
@given(s=texts)
def test_roundtrip_transformers(ours, s):
    hf = hf_cached(ours)
    assert hf.decode(hf.encode(s), skip_special_tokens=True) == s


def test_fixed_hard_cases(ours):
    tok, _ = load_tokenizer_cached(ours)
    s = "".join(SPECIAL)
    assert tok.decode(tok.encode(s).ids, skip_special_tokens=True) == s


_cache: dict = {}


def load_tokenizer_cached(d):
    if ("tok", d) not in _cache:
        _cache[("tok", d)] = load_tokenizer(str(d))
    return _cache[("tok", d)]


def hf_cached(d):
    if ("hf", d) not in _cache:
        _cache[("hf", d)] = load_hf_tokenizer(str(d))
    return _cache[("hf", d)]
