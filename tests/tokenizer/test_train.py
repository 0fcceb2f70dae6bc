"""`dsllm tokenizer train` on real prose shards: layout, sampling budgets, determinism, resume,
S3 input, and clear errors."""

from __future__ import annotations

import json

import pytest

from dsllm.tokenizer import deepseek
from dsllm.tokenizer.io import load_hf_tokenizer, load_tokenizer
from dsllm.tokenizer.train import ShardTextSampler, TokenizerTrainConfig, shard_files
from tests.conftest import run_cli

TRAIN = ("--vocab-size", "2000", "--sample-bytes", "6e5", "--quiet")


@pytest.fixture(scope="module")
def trained(prose_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "ours"
    proc = run_cli("tokenizer", "train", str(prose_shards), "--output", str(out), *TRAIN)
    assert proc.returncode == 0, proc.stderr
    return out


def test_layout_ids_and_bytes(trained):
    tok, info = load_tokenizer(str(trained))
    assert (info.vocab_size, info.bos_id, info.eos_id) == (2002, 2000, 2001)
    vocab = tok.get_vocab()
    # all 256 byte symbols are ordinary BPE tokens (ids below the merges), none added
    assert all(vocab[s] < 256 for s in deepseek.byte_alphabet())
    added = json.loads((trained / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    assert [a["content"] for a in added] == [deepseek.BOS, deepseek.EOS]
    assert max(len(t) for t in vocab if t not in (deepseek.BOS, deepseek.EOS)) <= 128
    # it learned both languages: common words and characters are single tokens
    assert len(tok.encode(" the", add_special_tokens=False).ids) == 1
    assert len(tok.encode("之", add_special_tokens=False).ids) == 1


def test_record_of_what_it_trained_on(trained, prose_shards):
    rec = json.loads((trained / "training.json").read_text(encoding="utf-8"))
    assert rec["config"]["vocab_size"] == 2000 and rec["ordinary_tokens"] == 2000
    by = rec["sample"]["by_lang"]
    for lang in ("en", "zh"):
        assert 0 < by[lang]["bytes"] <= by[lang]["budget_bytes"] == 300_000
        assert by[lang]["bytes"] > 200_000  # the budget is filled, not just touched
    assert sum(i["bytes"] for i in rec["sample"]["inputs"]) == rec["sample"]["bytes"]
    assert {i["uri"] for i in rec["sample"]["inputs"]} <= set(rec["shards"])
    assert len(rec["shards"]) == 2 and rec["shards"][0].startswith(str(prose_shards))
    assert rec["tokenizer_sha256"] == load_tokenizer(str(trained))[1].sha256


def test_deterministic_and_rerun_resumes(trained, prose_shards, tmp_path):
    again = tmp_path / "again"
    assert run_cli("tokenizer", "train", str(prose_shards / "shards"), "--output", str(again), *TRAIN).returncode == 0
    assert (again / "tokenizer.json").read_bytes() == (trained / "tokenizer.json").read_bytes()
    before = (again / "training.json").read_bytes()
    proc = run_cli("tokenizer", "train", str(prose_shards / "shards"), "--output", str(again), *TRAIN)
    assert proc.returncode == 0 and "already trained" in proc.stdout
    assert (again / "training.json").read_bytes() == before


def test_loads_in_transformers_with_bos_eos(trained):
    from transformers import AutoTokenizer

    for hf in (load_hf_tokenizer(str(trained)), AutoTokenizer.from_pretrained(str(trained))):
        assert (hf.bos_token_id, hf.eos_token_id) == (2000, 2001)
        ids = hf.encode("Fellow-Citizens 同胞们")
        assert ids[0] == 2000 and hf.decode(ids[1:]) == "Fellow-Citizens 同胞们"


def test_language_mix_budgets(prose_shards):
    cfg = TokenizerTrainConfig(vocab_size=300, sample_bytes=400_000, lang_mix={"en": 0.8, "zh": 0.2})
    sampler = ShardTextSampler(shard_files([str(prose_shards)]), cfg, progress=False)
    texts = [t for batch in sampler for t in batch]
    rec = sampler.record()
    assert rec["by_lang"]["en"]["bytes"] <= 320_000 and rec["by_lang"]["zh"]["bytes"] <= 80_000
    assert rec["by_lang"]["zh"]["bytes"] > 40_000
    assert sum(len(t.encode()) for t in texts) == rec["bytes"]
    only_zh = ShardTextSampler(
        shard_files([str(prose_shards)]),
        TokenizerTrainConfig(vocab_size=300, sample_bytes=10**6, lang_mix={"zh": 1.0}),
        progress=False,
    )
    assert all(any("\u4e00" <= c <= "\u9fa5" for c in t) for b in only_zh for t in b)
    assert only_zh.record()["skipped"]["lang_not_in_mix"] == 30  # the 30 English speeches


def test_trains_from_s3(prose_shards, s3_bucket, tmp_path):
    from dsllm import storage

    for f in sorted((prose_shards / "shards").iterdir()):
        storage.upload_file(str(f), f"s3://{s3_bucket}/cur/shards/{f.name}")
    out = f"s3://{s3_bucket}/tok"
    proc = run_cli(
        "tokenizer",
        "train",
        f"s3://{s3_bucket}/cur/shards",
        "--output",
        out,
        "--vocab-size",
        "500",
        "--sample-bytes",
        "2e5",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    tok, info = load_tokenizer(out)
    assert info.vocab_size == 502 and info.eos_id == 501
    assert storage.read_json(f"{out}/training.json")["shards"][0].startswith("s3://")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["/nonexistent/shards"], "no Parquet shards"),
        (["{shards}", "--set", "train.lang_mix={{en=0.7,zh=0.7}}"], "sum to 1"),
        (["{shards}", "--set", "train.bogus=1"], "unknown key"),
        (["{shards}", "--vocab-size", "100"], "256 byte symbols"),
    ],
)
def test_user_errors_are_one_line(prose_shards, tmp_path, argv, needle):
    argv = [a.format(shards=prose_shards) for a in argv]
    proc = run_cli("tokenizer", "train", *argv, "--output", str(tmp_path / "o"), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "toml, needle",
    [
        ("vocab_size = -100\n[train]\nvocab_size = 300\n", "unknown top-level key 'vocab_size'"),
        ("[trian]\nvocab_size = 300\n", "unknown section [trian]"),
        ("[train]\nvocab_sise = 300\n", "unknown key(s) ['vocab_sise']"),
        ("[train]\nvocab_size = 300\n[eval]\nmax_byts = 5\n", "unknown key(s) ['max_byts']"),
    ],
)
def test_config_file_is_strict(prose_shards, tmp_path, toml, needle):
    """Unknown keys and misplaced sections in a tokenizer config are errors, never silently ignored
    (which used to train the 100K default)."""
    cfg = tmp_path / "tok.toml"
    cfg.write_text(toml)
    proc = run_cli(
        "tokenizer", "train", str(prose_shards), "--output", str(tmp_path / "o"), "--config", str(cfg), "--quiet"
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "o" / "tokenizer.json").exists()
