"""`dsllm tokenizer eval`: bytes per token by source and language, side by side."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from dsllm.tokenizer.evaluate import EvalConfig, evaluate, format_table
from dsllm.tokenizer.io import load_tokenizer
from dsllm.tokenizer.train import TokenizerTrainConfig, train_tokenizer
from tests.conftest import run_cli
from tests.tokenizer.conftest import english_speeches


@pytest.fixture(scope="module")
def two_tokenizers(prose_shards, tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    small, big = root / "small", root / "big"
    for out, vocab in ((small, 300), (big, 1500)):
        train_tokenizer(
            [str(prose_shards)], str(out), TokenizerTrainConfig(vocab_size=vocab, sample_bytes=300_000), progress=False
        )
    return small, big


def test_rows_match_a_direct_count(two_tokenizers, prose_shards):
    small, big = two_tokenizers
    rows = evaluate([str(small), str(big)], [str(prose_shards)], EvalConfig())
    by_lang = {r["lang"]: r for r in rows}
    assert set(by_lang) == {"en", "zh", "all"}
    table = pq.read_table(prose_shards / "shards", columns=["text", "lang"]).to_pylist()
    for lang in ("en", "zh"):
        docs = [r["text"] for r in table if r["lang"] == lang]
        r = by_lang[lang]
        assert r["documents"] == len(docs)
        assert r["bytes"] == sum(len(t.encode()) for t in docs)
        for i, d in enumerate((small, big)):
            tok, _ = load_tokenizer(str(d))
            n = sum(len(e.ids) for e in tok.encode_batch(docs, add_special_tokens=False))
            assert r["tokens"][i] == n
            assert r["bytes_per_token"][i] == pytest.approx(r["bytes"] / n, rel=1e-3)
        # the larger vocabulary compresses better
        assert r["bytes_per_token"][1] > r["bytes_per_token"][0]
    assert by_lang["all"]["tokens"] == [by_lang["en"]["tokens"][i] + by_lang["zh"]["tokens"][i] for i in (0, 1)]


def test_cli_side_by_side_with_a_text_source(two_tokenizers, prose_shards, tmp_path):
    small, big = two_tokenizers
    txt = tmp_path / "speeches.txt"
    txt.write_text("\n".join(english_speeches(3)), encoding="utf-8")
    proc = run_cli(
        "tokenizer",
        "eval",
        str(small),
        str(big),
        "--data",
        str(prose_shards),
        "--data",
        str(txt),
        "--text-lang",
        "en",
        "--max-bytes",
        "2e5",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    text_rows = [r for r in rows if r["source"] == str(txt)]
    assert len(text_rows) == 1 and text_rows[0]["lang"] == "en"
    assert text_rows[0]["bytes"] == len(txt.read_bytes())
    table = format_table(rows, [str(small), str(big)])
    assert "| zh |" in table and "tokens 2nd / 1st" in table and len(table.splitlines()) == len(rows) + 2


def test_eval_errors(two_tokenizers, tmp_path):
    small, _ = two_tokenizers
    proc = run_cli("tokenizer", "eval", str(tmp_path), "--data", str(tmp_path))
    assert proc.returncode == 2 and "tokenizer.json" in proc.stderr
    proc = run_cli("tokenizer", "eval", str(small), "--data", str(tmp_path / "nope.txt"))
    assert proc.returncode == 2 and "nope.txt" in proc.stderr and proc.stderr.count("\n") == 1
