"""`dsllm eval`: loss and perplexity against `transformers` computed on the same packed rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dsllm.errors import UserError
from dsllm.trainer.checkpoints import hf
from dsllm.trainer.evaluate import evaluate_checkpoint

SEQ = 16


def _packed(folder, rows_per_shard=(3, 2), vocab=128, seed=0):
    """A PACKED folder (F's layout): input_ids fixed-size lists, doc_offsets, n_tokens, manifest."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    shards, all_ids, all_n = [], [], []
    for k, rows in enumerate(rows_per_shard):
        ids = rng.integers(0, vocab, size=(rows, SEQ), dtype=np.int32)
        n_tok = np.full(rows, SEQ, dtype=np.int32)
        n_tok[-1] = SEQ - 5  # the last row of each shard is padded
        ids[-1, n_tok[-1] :] = 2
        table = pa.table(
            {
                "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), SEQ),
                "doc_offsets": pa.array([[0] for _ in range(rows)], type=pa.list_(pa.int32())),
                "n_tokens": pa.array(n_tok),
            }
        )
        name = f"part-{k:05d}.parquet"
        pq.write_table(table, folder / name)
        shards.append({"path": name, "rows": rows, "bytes": (folder / name).stat().st_size, "tokens": int(n_tok.sum())})
        all_ids.append(ids)
        all_n.append(n_tok)
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "packed",
                "seq_len": SEQ,
                "rows": sum(rows_per_shard),
                "tokens": int(sum(s["tokens"] for s in shards)),
                "tokenizer": {"vocab_size": vocab, "eos_id": 2},
                "shards": shards,
            }
        )
    )
    return np.concatenate(all_ids), np.concatenate(all_n)


def _reference_loss(model, ids, n_tok) -> float:
    x = torch.from_numpy(ids.astype(np.int64))
    labels = x.masked_fill(torch.arange(SEQ)[None] >= torch.from_numpy(n_tok.astype(np.int64))[:, None], -100)
    with torch.no_grad():
        return float(model(x, labels=labels).loss)  # transformers: mean over every counted position


def test_eval_matches_transformers_and_max_rows(tiny_llama, tmp_path):
    folder, ref = tiny_llama()
    ids, n_tok = _packed(tmp_path / "packed")
    ckpt = hf.resolve_checkpoint(str(folder))
    res = evaluate_checkpoint(ckpt, str(tmp_path / "packed"), batch_size=2)
    want = _reference_loss(ref, ids, n_tok)
    assert res.rows == 5 and res.tokens == int((n_tok - 1).sum())  # padding never counted
    assert math.isclose(res.loss, want, rel_tol=1e-5) and math.isclose(res.perplexity, math.exp(want), rel_tol=1e-5)
    two = evaluate_checkpoint(ckpt, str(tmp_path / "packed"), max_rows=2)
    assert two.rows == 2 and math.isclose(two.loss, _reference_loss(ref, ids[:2], n_tok[:2]), rel_tol=1e-5)
    small, _ = tiny_llama(vocab=64, name="small")
    with pytest.raises(UserError, match=r"outside the model's vocabulary \(64\)"):
        evaluate_checkpoint(hf.resolve_checkpoint(str(small)), str(tmp_path / "packed"))


def test_loss_by_step_table_cli(tiny_llama, tmp_path, cli):
    refs = {}
    for step, seed in ((100, 0), (200, 1)):
        folder, refs[step] = tiny_llama(name=f"run/checkpoints/step-{step:08d}", seed=seed)
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "tokens": step * 64}))
    ids, n_tok = _packed(tmp_path / "packed")
    out = cli("eval", "--model", str(tmp_path / "run"), "--data", str(tmp_path / "packed"), "--json")
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert [(r["step"], r["trained_tokens"], r["rows"]) for r in res] == [(100, 6400, 5), (200, 12800, 5)]
    for r in res:
        assert math.isclose(r["loss"], _reference_loss(refs[r["step"]], ids, n_tok), rel_tol=1e-5)
    bad = cli("eval", "--model", str(tmp_path / "run"), "--data", str(tmp_path / "nothing"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"dsllm eval: error: {tmp_path / 'nothing'}: no manifest.json (not packed data, or packing did not finish)"
    ]


def test_table_format():
    from dsllm.trainer.evaluate import EvalResult, format_table

    rows = [
        EvalResult("run @ 100", 100, 6400, 5, 70, 4.8521, 128.0),
        EvalResult("run @ 200", 200, None, 5, 70, 4.1, 60.34),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split()[:3] == ["checkpoint", "step", "trained"] and len(lines) == 4
    assert lines[2].split()[-6:] == ["100", "6.40K", "5", "70", "4.8521", "128.00"]
    assert lines[3].split()[-6:] == ["200", "-", "5", "70", "4.1000", "60.34"]
