"""Scaling-law fits on synthetic sweeps drawn from known laws (the paper's exponents) with noise:
the fit recovers the exponents within ±0.02 and its 95% bootstrap intervals cover them.

The sweeps are the real planner's (shapes by the shape rule, η × B grids) at DeepSeek's budgets
and sequence length, planned with laws that differ from the truth (so a grid is not centred on
the answer); each run's loss is drawn from the true laws plus Gaussian noise.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from dsllm.trainer.scaling.fit import fit_sweep
from dsllm.trainer.scaling.laws import PAPER, PowerLaw
from dsllm.trainer.scaling.plan import Planner, SweepConfig
from dsllm.trainer.scaling.report import format_report, html_report, to_json

TRUE_LOSS = PowerLaw(5.0, -0.045)  # bits per byte at the compute-optimal shape


def _anchored(law: PowerLaw, exponent: float, at: float, factor: float = 1.0) -> PowerLaw:
    """A planning law with another exponent, equal to `law`·factor at C = `at`."""
    return PowerLaw(float(law(at)) * factor / at**exponent, exponent)


PLAN_LAWS = {
    "M_opt": _anchored(PAPER["M_opt"], 0.50, 3e18, 1.5),
    "D_opt": PAPER["D_opt"],
    "eta_opt": _anchored(PAPER["eta_opt"], -0.115, 1e18),
    "B_opt": _anchored(PAPER["B_opt"], 0.34, 1e18),
}


def _result(spec, loss: float) -> dict:
    return {
        "run_id": spec.run_id,
        "role": spec.role,
        "budget": spec.budget,
        "flops_per_token": spec.flops_per_token,
        "tokens": spec.tokens,
        "lr": spec.lr,
        "batch_tokens": spec.batch_seqs * spec.seq_len,
        "heldout_bpb": loss,
    }


def isoflop_sweep(seed: int, noise: float = 0.002, curvature: float = 0.02) -> list[dict]:
    """DeepSeek's 8 IsoFLOP budgets, 10 shapes each; loss = L(C) + curvature·(ln M − ln M_opt)² + noise."""
    rng = np.random.default_rng(seed)
    planner = Planner(PLAN_LAWS, SweepConfig(min_steps=1), seq_len=4096, vocab_size=102400, eos_id=1)
    out = []
    for c in (1e17, 3e17, 1e18, 3e18, 1e19, 3e19, 1e20, 3e20):
        for spec in planner.isoflop(c, 10):
            dx = math.log(spec.flops_per_token / float(PAPER["M_opt"](c)))
            out.append(_result(spec, float(TRUE_LOSS(c)) + curvature * dx * dx + rng.normal(0, noise)))
    return out


def hparams_sweep(seed: int, noise: float = 0.0005) -> list[dict]:
    """η × B grids (9 × 9, ratio √2) at five budgets; loss rises quadratically in ln η and ln B."""
    rng = np.random.default_rng(seed)
    cfg = SweepConfig(min_steps=1, lr_step=2**0.5, batch_step=2**0.5)
    planner = Planner(PLAN_LAWS, cfg, seq_len=4096, vocab_size=102400, eos_id=1)
    out = []
    for c in (1e17, 3e17, 1e18, 3e18, 1e19, 3e19):
        for spec in planner.hparams(c, 9):
            de = math.log(spec.lr / float(PAPER["eta_opt"](c)))
            db = math.log(spec.batch_seqs * spec.seq_len / float(PAPER["B_opt"](c)))
            base = float(TRUE_LOSS(c)) * (1 + 0.01 * de * de + 0.01 * db * db)
            out.append(_result(spec, base * (1 + rng.normal(0, noise))))
    return out


def test_synthetic_sweep_recovers_the_paper_exponents_and_the_intervals_cover_them():
    fit = fit_sweep(isoflop_sweep(0) + hparams_sweep(0), n_boot=1000, seed=0)
    truth = {
        "M_opt": PAPER["M_opt"].exponent,
        "D_opt": PAPER["D_opt"].exponent,
        "loss": TRUE_LOSS.exponent,
        "eta_opt": PAPER["eta_opt"].exponent,
        "B_opt": PAPER["B_opt"].exponent,
    }
    for name, a in truth.items():
        law = fit.laws[name]
        assert law.exponent == pytest.approx(a, abs=0.02), name
        lo, hi = law.ci[1]
        assert lo <= a <= hi, (name, law.ci)
    # D = C / M, so the two exponents of the fit add up to one, as the paper's (0.5243 + 0.4757)
    assert fit.laws["M_opt"].exponent + fit.laws["D_opt"].exponent == pytest.approx(1.0, abs=1e-9)
    assert all(b.M_opt is not None for b in fit.isoflop)


@pytest.mark.parametrize("kind", ["isoflop", "hparams"])
def test_intervals_cover_the_truth_in_most_repeated_sweeps(kind):
    """Calibration over 40 independent noisy sweeps: a 95% interval should miss rarely."""
    names = ("M_opt", "loss") if kind == "isoflop" else ("eta_opt", "B_opt")
    truth = {
        "M_opt": PAPER["M_opt"].exponent,
        "loss": TRUE_LOSS.exponent,
        "eta_opt": PAPER["eta_opt"].exponent,
        "B_opt": PAPER["B_opt"].exponent,
    }
    covered = {n: 0 for n in names}
    for seed in range(1, 41):
        results = isoflop_sweep(seed) if kind == "isoflop" else hparams_sweep(seed)
        fit = fit_sweep(results, n_boot=300, seed=seed)
        for n in names:
            lo, hi = fit.laws[n].ci[1]
            covered[n] += lo <= truth[n] <= hi
            assert fit.laws[n].exponent == pytest.approx(truth[n], abs=0.02), (seed, n)
    assert all(v >= 32 for v in covered.values()), covered  # ≥ 80% of 40


def test_prediction_json_table_and_html():
    results = isoflop_sweep(0)
    measured = dict(results[0], run_id="validate-x", role="validate", budget=1e21, heldout_bpb=0.55)
    fit = fit_sweep(results + [measured], n_boot=200, predict=1e21)
    doc = json.loads(json.dumps(to_json(fit, "SWEEP")))
    law = doc["laws"]["M_opt"]
    assert set(law) == {"coefficient", "exponent", "ci"} and len(law["ci"]) == 2
    assert doc["laws"]["eta_opt"] is None and "hparams" in doc["notes"]["eta_opt"]
    p = doc["prediction"]
    # the prediction is the fitted law at C, inside its own interval, and the validate run sits beside it
    assert p["M_opt"]["value"] == pytest.approx(law["coefficient"] * 1e21 ** law["exponent"])
    assert p["M_opt"]["ci"][0] <= p["M_opt"]["value"] <= p["M_opt"]["ci"][1]
    assert p["loss"]["value"] == pytest.approx(float(TRUE_LOSS(1e21)), rel=0.02)
    assert [m["heldout_bpb"] for m in p["measured"]] == [0.55] and not p["in_fit"]
    assert "measured: 0.5500" in format_report(fit, "SWEEP")
    page = html_report(fit, "<script>alert(1)</script>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    svgs = page.count("<svg")
    assert svgs == 4  # IsoFLOP curves, M_opt, D_opt, loss
    for chunk in page.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")  # well-formed XML


def test_a_profile_without_interior_minimum_is_left_out_with_its_reason():
    results = isoflop_sweep(0)
    last = max(r["budget"] for r in results)
    # the largest budget's profile falls all the way: its minimum lies beyond the largest shape tried
    biggest = max(r["flops_per_token"] for r in results if r["budget"] == last)
    for r in results:
        if r["budget"] == last:
            r["heldout_bpb"] = 0.5 + 0.02 * math.log(r["flops_per_token"] / (10 * biggest)) ** 2
    fit = fit_sweep(results, n_boot=50)
    bad = [b for b in fit.isoflop if b.compute == last][0]
    assert bad.M_opt is None and "beyond the largest" in bad.note
    assert fit.laws["M_opt"].exponent == pytest.approx(PAPER["M_opt"].exponent, abs=0.02)
