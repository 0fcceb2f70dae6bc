"""DeepSeek LLM's scaling laws and `dsllm plan`."""

from __future__ import annotations

import json

import pytest

from dsllm.trainer.config import FLAVORS
from dsllm.trainer.plan import nearest_shape, plan, released

# Published values (/work/shared/DEEPSEEK.md, DeepSeek LLM paper Table 2 and §3), written out as
# literals, never recomputed from the fitted laws: the oracle is the paper, not the formula.
PUBLISHED = {  # flavor: (layers, hidden, peak LR used, batch sequences used, laws' LR, laws' batch sequences)
    "7b": (30, 4096, 4.2e-4, 2304, 4.25e-4, 2252),
    "67b": (95, 8192, 3.2e-4, 4608, 3.12e-4, 5043),
}
TRAIN_TOKENS = 2e12  # both released models saw 2T tokens of 4096-token sequences


@pytest.mark.parametrize("flavor", sorted(PUBLISHED))
def test_plan_at_the_released_budgets_gives_the_papers_numbers(flavor):
    """`plan(C)` for the compute each released model used (C = M·D, D = 2T tokens) lands on the
    hyperparameters the paper reports the laws give, and close to the ones DeepSeek trained with."""
    layers, hidden, lr_used, batch_used, lr_law, batch_law = PUBLISHED[flavor]
    cfg = FLAVORS[flavor]
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (layers, hidden)
    p = plan(cfg.flops_per_token(4096) * TRAIN_TOKENS)
    assert p.lr == pytest.approx(lr_law, rel=0.01)
    assert p.batch_sequences(4096) == pytest.approx(batch_law, rel=0.01)
    assert p.lr == pytest.approx(lr_used, rel=0.03)  # "close to what was used"
    assert p.batch_sequences(4096) == pytest.approx(batch_used, rel=0.10)
    assert released()[flavor].lr == pytest.approx(lr_law, rel=0.01)
    assert released()[flavor].batch_sequences() == pytest.approx(batch_law, rel=0.01)


def test_plan_splits_the_budget_and_shapes_the_7b():
    """The paper's M_opt·D_opt = C (exponents 0.5243 + 0.4757 = 1) at every budget, larger budgets
    want lower LR and larger batches, and the M of the 7B's budget maps back to its 30 × 4096 shape."""
    plans = [plan(c) for c in (1e17, 1e19, 1e21, 1e23)]
    for p in plans:
        assert p.model_flops_per_token * p.data_tokens == pytest.approx(p.compute, rel=1e-3)
    assert all(a.lr > b.lr and a.batch_tokens < b.batch_tokens for a, b in zip(plans, plans[1:]))
    layers, hidden = PUBLISHED["7b"][:2]
    assert nearest_shape(FLAVORS["7b"].flops_per_token(4096)) == (layers, hidden)
    # M = 72·L·d² + 12·L·d·l_seq (paper §3.2), term by term for the 7B
    assert FLAVORS["7b"].flops_per_token(4096) == 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096


def test_plan_cli(cli):
    run_cli = cli
    out = run_cli("plan", "--compute", "8.455716864e22", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["lr"] == pytest.approx(4.246e-4, rel=1e-3)
    text = run_cli("plan", "--compute", "1e20")
    assert "η_opt" in text.stdout and "7b" in text.stdout and "3.120e-04" in text.stdout
    bad = run_cli("plan", "--compute", "-5")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--compute" in bad.stderr


def test_memory_plan_cli_json_and_verdicts(cli):
    """`dsllm plan --model`: the issue's JSON keys; the paper's parameter counts; parameter,
    gradient and optimizer memory of the fp32-sharded layout (4 bytes each per parameter, two
    AdamW moments) against hand arithmetic; 7B fits 8 H100s, 67B does not fit 8 but fits 64."""
    out = cli("plan", "--model", "7b", "--gpus", "8", "--gpu", "h100", "--json")
    assert out.returncode == 0, out.stderr
    p = json.loads(out.stdout)
    assert isinstance(p["params"], int) and p["params"] == pytest.approx(6.91e9, rel=0.005)
    assert set(p["per_gpu_gib"]) == {"params", "grads", "optimizer", "activations", "total"}
    g = p["per_gpu_gib"]
    assert g["optimizer"] == pytest.approx(2 * 4 * 6.91e9 / 8 / 2**30, rel=0.01)
    assert g["grads"] >= 4 * 6.91e9 / 8 / 2**30 and g["params"] >= g["grads"]
    assert g["total"] == pytest.approx(g["params"] + g["grads"] + g["optimizer"] + g["activations"], abs=0.05)
    assert p["fits"] is True
    assert p["tokens_per_s_per_gpu"] == pytest.approx(
        0.4 * 989e12 / FLAVORS["7b"].train_flops_per_token(4096), rel=1e-3
    )
    big = json.loads(cli("plan", "--model", "67b", "--gpus", "8", "--gpu", "h100", "--json").stdout)
    assert big["params"] == pytest.approx(67.4e9, rel=0.005) and big["fits"] is False
    many = json.loads(
        cli(
            "plan", "--model", "67b", "--gpus", "64", "--gpu", "h100", "--json", "--activation-checkpointing", "full"
        ).stdout
    )
    assert many["fits"] is True
    text = cli(
        "plan",
        "--model",
        "7b",
        "--gpus",
        "1",
        "--gpu",
        "h200",
        "--activation-checkpointing",
        "full",
        "--bf16-optimizer-states",
    )
    assert text.returncode == 0 and "fits" in text.stdout and "tokens/s" in text.stdout
    assert cli("plan").returncode == 2


def test_memory_plan_moves_the_right_way():
    from dsllm.trainer.memory import plan_memory

    cfg = FLAVORS["7b"]
    act = {
        m: plan_memory(cfg, 8, "h100", activation_checkpointing=m).per_gpu["activations"]
        for m in ("none", "selective", "full")
    }
    assert act["full"] < act["selective"] < act["none"]
    one, two = (plan_memory(cfg, 8, "h100", micro_batch=b).per_gpu["activations"] for b in (1, 2))
    assert two == pytest.approx(2 * one, rel=0.01)
    fp32, bf16 = (plan_memory(cfg, 1, "h200", bf16_optimizer_states=b).per_gpu["optimizer"] for b in (False, True))
    assert bf16 == pytest.approx(fp32 / 2, rel=0.01)
    assert plan_memory(cfg, 16, "a100").per_gpu["params"] < plan_memory(cfg, 8, "a100").per_gpu["params"]
