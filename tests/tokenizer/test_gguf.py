"""DeepSeek's tokenizer rebuilt from its GGUF reproduces the reference encodings, llama.cpp's
identifying hash, and the quirk of the 13 added byte tokens."""

from __future__ import annotations

import hashlib
import json

import pytest

from dsllm.tokenizer import deepseek
from dsllm.tokenizer.io import load_hf_tokenizer, load_tokenizer
from tests.conftest import run_cli

LLAMA_CPP_HASH = "049ecf7629871e3041641907f3de7c733e4dbfdc736f57d882ba0b0845599754"
EXTRA_BYTES = "øöúÿõ÷ûýÀùÁþü"


@pytest.fixture(scope="module")
def references(deepseek_gguf):
    inp = deepseek_gguf.with_name(deepseek_gguf.name + ".inp").read_text(encoding="utf-8")
    out = deepseek_gguf.with_name(deepseek_gguf.name + ".out").read_text(encoding="utf-8")
    texts = inp.split("\n__ggml_vocab_test__\n")
    assert texts[-1] == ""  # the file ends with a separator
    texts = texts[:-1]
    ids = [[int(x) for x in line.split()] for line in out.split("\n")[: len(texts)]]
    assert len(texts) == len(ids) == 46
    return list(zip(texts, ids))


def test_all_46_reference_encodings(deepseek_dir, references):
    tok, _ = load_tokenizer(str(deepseek_dir))
    got = [tok.encode(text, add_special_tokens=False).ids for text, _ in references]
    assert got == [ids for _, ids in references]


def test_llama_cpp_identifying_hash(deepseek_dir, references):
    hf = load_hf_tokenizer(str(deepseek_dir))
    chktok = hf.encode(references[-1][0])  # add_bos_token: [100000] + ids
    assert chktok[0] == 100000
    assert hashlib.sha256(str(chktok).encode()).hexdigest() == LLAMA_CPP_HASH


def test_layout_and_config(deepseek_dir):
    tok, info = load_tokenizer(str(deepseek_dir))
    assert (info.vocab_size, info.bos_id, info.eos_id) == (100015, 100000, 100001)
    assert info.sha256 == hashlib.sha256((deepseek_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert [tok.token_to_id(c) for c in EXTRA_BYTES] == list(range(100002, 100015))
    cfg = json.loads((deepseek_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["add_bos_token"] is True and cfg["add_eos_token"] is False
    assert cfg["model_max_length"] == 4096
    assert cfg["bos_token"]["content"] == deepseek.BOS and cfg["eos_token"]["content"] == deepseek.EOS
    # all 256 byte symbols are present: 243 in the BPE vocabulary + the 13 added ones
    assert all(tok.token_to_id(s) is not None for s in deepseek.byte_alphabet())


def test_transformers_loads_it_with_bos_eos(deepseek_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    for hf in (
        PreTrainedTokenizerFast(
            tokenizer_file=str(deepseek_dir / "tokenizer.json"), bos_token=deepseek.BOS, eos_token=deepseek.EOS
        ),
        AutoTokenizer.from_pretrained(str(deepseek_dir)),
    ):
        assert (hf.bos_token_id, hf.eos_token_id) == (100000, 100001)
        assert hf.decode(hf.encode("Hello world"), skip_special_tokens=True) == "Hello world"


def test_added_byte_tokens_quirk_is_reproduced(deepseek_dir):
    """ "München": the 'ü' matches the added byte token 0xFC, which decodes to an invalid byte."""
    tok, _ = load_tokenizer(str(deepseek_dir))
    ids = tok.encode("München", add_special_tokens=False).ids
    assert 100014 in ids  # 'ü' == the byte symbol of 0xFC, DeepSeek's id 100014
    assert tok.decode(ids) == "M\ufffdnchen"
    # characters whose UTF-8 does not look like those symbols round-trip
    assert tok.decode(tok.encode("Äpfel 中文 🚀", add_special_tokens=False).ids) == "Äpfel 中文 🚀"


def test_not_a_gguf_is_one_line_error(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all" * 10)
    proc = run_cli("tokenizer", "from-gguf", str(bad), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "x.gguf" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("tokenizer", "from-gguf", str(tmp_path / "missing.gguf"), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "no such file" in proc.stderr
