"""One sweep run without Ray: the held-out split, bits per byte against independent oracles
(transformers for the loss, GPT-2's byte table for the bytes), and a shared first stage giving
exactly what training alone gives. The planner's shapes against ModelConfig's own M."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dsllm.trainer.scaling.laws import PAPER
from dsllm.trainer.scaling.plan import Planner, ShapeRule, SweepConfig, shape_for, share_groups

CFG = SweepConfig(
    precision="fp32",
    min_steps=2,
    micro_batch_size=4,
    heldout_rows=48,
    checkpoint_every_minutes=0,
    shape=ShapeRule(aspect=16, head_dim=8),
)


@pytest.fixture(scope="module")
def prose_packed(tmp_path_factory) -> Path:
    """Real English prose (State of the Union addresses) → a 384-token BBPE → 64-token rows."""
    from tests.scaling_data import build_prose_packed

    return build_prose_packed(tmp_path_factory.mktemp("scaling-data"))


def _rows(uri: str) -> list[bytes]:
    from dsllm.trainer.evaluate import read_packed

    return [row.tobytes() for ids, _ in read_packed(uri) for row in ids]


def test_heldout_split_is_disjoint_from_training_and_loses_nothing(prose_packed, tmp_path):
    from dsllm.trainer.scaling.data import split_packed

    info = split_packed(str(prose_packed / "packed"), str(tmp_path / "data"), CFG.heldout_rows)
    train, held, whole = (
        _rows(str(tmp_path / "data/train")),
        _rows(str(tmp_path / "data/heldout")),
        _rows(str(prose_packed / "packed")),
    )
    assert len(held) == info["heldout_rows"] >= CFG.heldout_rows and not set(train) & set(held)
    assert sorted(train + held) == sorted(whole) and train + held == whole  # the tail, in order
    again = split_packed(str(prose_packed / "packed"), str(tmp_path / "data"), CFG.heldout_rows)
    assert again == info


def _plan(prose_packed, tmp_path):
    from dsllm.trainer.scaling.data import split_packed

    info = split_packed(str(prose_packed / "packed"), str(tmp_path / "data"), CFG.heldout_rows)
    planner = Planner.for_data(PAPER, CFG, str(tmp_path / "data/train"))
    assert (planner.seq_len, planner.vocab_size) == (64, 448)  # 386 tokens, rounded up to 64
    return info, planner


def test_shared_first_stage_gives_exactly_the_run_trained_alone(prose_packed, tmp_path):
    from dsllm.trainer.scaling.execute import run_one, train_trunk

    info, planner = _plan(prose_packed, tmp_path)
    short, long = (dataclasses.replace(r, role="isoflop") for r in planner.plan([2e8, 4e8], "isoflop", 1))
    assert short.shape == long.shape and short.steps < long.steps and short.trunk_key() == long.trunk_key()
    (group,) = share_groups([short, long])
    assert group.shared and [r.steps for r in group.runs] == sorted([short.steps, long.steps])
    data, held = str(tmp_path / "data/train"), str(tmp_path / "data/heldout")
    branch = train_trunk(group.runs, str(tmp_path / "trunk"), short.branch_step(), data, CFG)
    shared = run_one(short, str(tmp_path / "shared"), data, held, info, CFG, branch_from=branch)
    alone = run_one(short, str(tmp_path / "alone"), data, held, info, CFG)
    assert shared["branched_from"] == branch and alone["branched_from"] is None
    assert (shared["train_loss"], shared["heldout_bpb"]) == (alone["train_loss"], alone["heldout_bpb"])
    steps = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    after = [(r["step"], r["loss"], r["lr"]) for r in steps("alone") if r["step"] > short.branch_step()]
    assert after and after == [(r["step"], r["loss"], r["lr"]) for r in steps("shared")]
    # the schedule decays after 80% and 90% of the run's own tokens: ×0.316, then ×0.1 of the peak
    lrs = {r["step"]: r["lr"] for r in steps("alone")}
    assert lrs[short.steps] == pytest.approx(0.1 * short.lr)
    assert lrs[short.branch_step()] == pytest.approx(short.lr)
    # a finished run is skipped: its result is returned as written
    assert run_one(short, str(tmp_path / "alone"), data, held, info, CFG) == alone


def test_bits_per_byte_matches_transformers_and_gpt2_bytes(prose_packed, tmp_path):
    import torch
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from dsllm.trainer.evaluate import read_packed
    from dsllm.trainer.scaling.execute import run_one

    info, planner = _plan(prose_packed, tmp_path)
    spec = planner.plan([2e8], "isoflop", 1)[0]
    held = str(tmp_path / "data/heldout")
    result = run_one(spec, str(tmp_path / "run"), str(tmp_path / "data/train"), held, info, CFG)
    ckpt = sorted((tmp_path / "run/checkpoints").iterdir())[-1]
    model = LlamaForCausalLM.from_pretrained(str(ckpt), torch_dtype=torch.float32).eval()
    tok = Tokenizer.from_file(str(prose_packed / "tok/tokenizer.json"))
    byte_of = {ch: b for b, ch in bytes_to_unicode().items()}
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    nats, nbytes = 0.0, 0
    for ids, n_tokens in read_packed(held):
        x = torch.from_numpy(ids.astype(np.int64))
        labels = x.masked_fill(torch.arange(x.shape[1])[None] >= torch.from_numpy(n_tokens)[:, None], -100)
        with torch.no_grad():  # transformers' mean over the real (non-padding) targets
            nats += float(model(x, labels=labels).loss) * int((labels[:, 1:] != -100).sum())
        for row, n in zip(ids, n_tokens):
            for t in row[1:n].tolist():
                nbytes += 0 if t in special else len([byte_of[ch] for ch in tok.id_to_token(t)])
    assert nbytes == info["heldout_bytes"]
    assert result["heldout_bpb"] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-4)
    assert 0 < result["heldout_bpb"] < 8


def test_shapes_follow_the_rule_and_the_paper_formula():
    from dsllm.trainer.config import FLAVORS

    rule = ShapeRule(aspect=128, head_dim=128)
    for c in (1e17, 1e19, 1e21, 1e23):
        target = float(PAPER["M_opt"](c))
        s = shape_for(target, 4096, rule)
        spec_cfg = Planner(PAPER, SweepConfig(shape=rule, min_steps=1), 4096, 102400, 100001).validate(c)[0]
        # M of the planned model, as ModelConfig computes it, is the shape's, and near the target
        assert spec_cfg.model_config().flops_per_token(4096) == s.flops_per_token(4096)
        assert abs(math.log(s.flops_per_token(4096) / target)) < math.log(1.5)
        assert s.d_model % 128 == 0 and s.n_heads * 128 == s.d_model
        assert spec_cfg.tokens == pytest.approx(c / s.flops_per_token(4096), rel=0.02)  # D = C / M
    # the 7B's M is the paper's formula
    assert FLAVORS["7b"].flops_per_token(4096) == 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096
