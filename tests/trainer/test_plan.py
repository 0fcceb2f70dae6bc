"""DeepSeek LLM's scaling laws and `dsllm plan`."""

from __future__ import annotations

import json

import pytest

from dsllm.trainer.config import FLAVORS
from dsllm.trainer.plan import nearest_shape, plan, released


def test_released_models_match_the_paper():
    r = released()
    assert r["7b"].lr == pytest.approx(4.25e-4, rel=0.01)
    assert r["67b"].lr == pytest.approx(3.12e-4, rel=0.01)
    assert r["7b"].batch_sequences() == pytest.approx(2252, rel=0.01)
    assert r["67b"].batch_sequences() == pytest.approx(5043, rel=0.01)
    # M = 72·L·d² + 12·L·d·l_seq
    assert FLAVORS["7b"].flops_per_token(4096) == 72 * 30 * 4096**2 + 12 * 30 * 4096 * 4096


def test_plan_is_consistent():
    p = plan(1e21)
    assert p.lr == pytest.approx(0.3118 * 1e21 ** -0.125)
    assert p.batch_tokens == pytest.approx(0.2920 * 1e21 ** 0.3271)
    # the fitted M_opt·D_opt reproduces C within the fit's constants (0.1715·5.8316 ≈ 1.0001)
    assert p.model_flops_per_token * p.data_tokens == pytest.approx(1e21, rel=0.01)
    n_layer, d = nearest_shape(p.model_flops_per_token)
    m = 72 * n_layer * d * d + 12 * n_layer * d * 4096
    assert m == pytest.approx(p.model_flops_per_token, rel=0.25)


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
