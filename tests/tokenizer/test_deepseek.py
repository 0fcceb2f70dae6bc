"""The tokenizer definition: DeepSeek's exact pre-tokenizer and the byte-level parts."""

from __future__ import annotations

import json

from dsllm.tokenizer import deepseek
from tests.conftest import shared_path


def test_pre_tokenizer_serializes_exactly_as_deepseeks():
    ref = json.loads(shared_path("data", "deepseek-tokenizer", "pre_tokenizer.json").read_text(encoding="utf-8"))
    ours = json.loads(deepseek.new_tokenizer().to_str())["pre_tokenizer"]
    assert ours == ref


def pieces(text: str) -> list[str]:
    return [p for p, _ in deepseek.pre_tokenizer().pre_tokenize_str(text)]


def test_pre_tokenization_rules():
    # digits one by one, CR and LF isolated, letters with their leading space, CJK runs apart
    assert pieces("ab 2024") == ["ab", "Ġ", "2", "0", "2", "4"]
    assert pieces("a\r\nb") == ["a", "č", "Ċ", "b"]
    assert pieces("Hello, world!") == ["Hello", ",", "Ġworld", "!"]
    table = dict(zip(range(256), deepseek.byte_alphabet()))
    expect_zh = "".join(table[b] for b in "滚滚长江".encode())
    assert pieces("滚滚长江abc") == [expect_zh, "abc"]  # a CJK run is one piece, apart from Latin letters
    assert pieces("x  \n") == ["x", "ĠĠ", "Ċ"]


def test_byte_alphabet_is_gpt2_bytes_to_unicode():
    from tokenizers import pre_tokenizers

    alphabet = deepseek.byte_alphabet()
    assert len(alphabet) == len(set(alphabet)) == 256
    assert sorted(alphabet) == sorted(pre_tokenizers.ByteLevel.alphabet())
    assert alphabet[ord("A")] == "A" and alphabet[ord(" ")] == "Ġ" and alphabet[ord("\n")] == "Ċ"


def test_untrained_tokenizer_parts():
    d = json.loads(deepseek.new_tokenizer().to_str())
    assert d["model"]["type"] == "BPE" and d["model"]["byte_fallback"] is False
    assert d["decoder"]["type"] == "ByteLevel"
    assert d["normalizer"] == {"type": "Sequence", "normalizers": []}


def test_specials_follow_ordinary_tokens_and_bos_is_prepended():
    vocab = {s: i for i, s in enumerate(deepseek.byte_alphabet())}
    tok = deepseek.build_tokenizer(vocab, [])
    assert tok.token_to_id(deepseek.BOS) == 256 and tok.token_to_id(deepseek.EOS) == 257
    enc = tok.encode("hi")
    assert enc.ids[0] == 256 and tok.decode(enc.ids) == "hi"
    assert tok.encode("hi", add_special_tokens=False).ids == [vocab["h"], vocab["i"]]
