"""Fitting a sweep: IsoFLOP minima, near-optimal bands, power laws, bootstrap intervals, predictions.

IsoFLOP (DeepSeek §3.2): at each budget C, the held-out bits per byte of the runs against
x = ln M is fitted with a parabola a·x² + b·x + c; its minimum gives M_opt(C) = exp(−b/2a),
D_opt(C) = C / M_opt(C) and the loss at the optimum. A budget whose parabola opens downwards or
whose minimum lies outside the shapes it tried is reported and left out of the laws.
Hyperparameters (§3.1): at each budget of an hparams sweep, the runs within `band` (0.25%) of the
lowest loss are near-optimal; η_opt(C) and B_opt(C) are fitted to all of them together.
Laws: least squares of ln y on ln C (y = k·C^a): M_opt, D_opt, loss (from the IsoFLOP minima),
eta_opt, B_opt (from the bands).
Intervals: 95% percentile bootstrap. IsoFLOP budgets are resampled by their residuals (each
budget's fitted curve plus its own residuals drawn with replacement, scaled by √(n/(n−3)));
hparams grids by their runs (drawn with replacement within each budget). Every resample refits
everything down to the laws; a prediction's interval is the spread of the resampled laws at C.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dsllm.errors import UserError
from dsllm.trainer.scaling.laws import PowerLaw, fit_power_law

LOSS_KEY = "heldout_bpb"


@dataclass
class BudgetFit:
    """One IsoFLOP profile: runs (M, D, loss) at budget C and its parabola in ln M."""

    compute: float
    M: np.ndarray
    D: np.ndarray
    loss: np.ndarray
    coef: np.ndarray | None = None  # (a, b, c) of a·x² + b·x + c, x = ln M
    M_opt: float | None = None
    loss_min: float | None = None
    note: str | None = None  # why it is left out of the laws

    @property
    def D_opt(self) -> float | None:
        return None if self.M_opt is None else self.compute / self.M_opt


@dataclass
class HparamBudget:
    """One η × B grid at budget C; `near` marks the near-optimal band."""

    compute: float
    lr: np.ndarray
    batch: np.ndarray
    loss: np.ndarray
    near: np.ndarray


@dataclass
class ScalingFit:
    isoflop: list[BudgetFit]
    hparams: list[HparamBudget]
    laws: dict[str, PowerLaw | None]
    notes: dict[str, str]
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # law → (n, 2) of (k, a)
    prediction: dict | None = None
    band: float = 0.0025
    n_boot: int = 0


def load_results(sweep: str) -> list[dict]:
    """Every finished run's result.json under SWEEP/runs."""
    root = Path(sweep)
    if not (root / "sweep.json").exists():
        raise UserError(f"{sweep}: not a sweep directory (no sweep.json; run `dsllm scaling sweep` first)")
    out = []
    for path in sorted(root.glob("runs/*/result.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: unreadable result ({exc}); delete it to rerun that run") from None
    if not out:
        raise UserError(f"{sweep}: no finished runs yet")
    return out


def _by_budget(results: list[dict], role: str) -> dict[float, list[dict]]:
    groups: dict[float, list[dict]] = {}
    for r in results:
        if r["role"] == role:
            groups.setdefault(float(r["budget"]), []).append(r)
    return dict(sorted(groups.items()))


def fit_parabola(M: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, float | None, float | None, str | None]:
    """(a, b, c), M at the minimum, the minimum, or a reason why there is no interior minimum."""
    x = np.log(M)
    if len(np.unique(x)) < 3:
        return None, None, None, f"{len(np.unique(x))} model sizes (a parabola needs 3)"
    coef = np.polyfit(x, loss, 2)
    a, b, c = coef
    if a <= 0:
        return coef, None, None, "the profile has no minimum (parabola opens downwards)"
    x_opt = -b / (2 * a)
    if not x.min() <= x_opt <= x.max():
        side = "smallest" if x_opt < x.min() else "largest"
        return coef, None, None, f"the minimum lies beyond the {side} model tried (extend the sweep)"
    return coef, float(math.exp(x_opt)), float(c - b * b / (4 * a)), None


def isoflop_profiles(results: list[dict]) -> list[BudgetFit]:
    fits = []
    for c, runs in _by_budget(results, "isoflop").items():
        M = np.array([r["flops_per_token"] for r in runs], np.float64)
        D = np.array([r["tokens"] for r in runs], np.float64)
        loss = np.array([r[LOSS_KEY] for r in runs], np.float64)
        coef, m_opt, l_min, note = fit_parabola(M, loss)
        fits.append(BudgetFit(c, M, D, loss, coef, m_opt, l_min, note))
    return fits


def near_optimal(loss: np.ndarray, band: float) -> np.ndarray:
    return loss <= loss.min() * (1 + band)


def hparam_grids(results: list[dict], band: float) -> list[HparamBudget]:
    out = []
    for c, runs in _by_budget(results, "hparams").items():
        loss = np.array([r[LOSS_KEY] for r in runs], np.float64)
        out.append(
            HparamBudget(
                c,
                np.array([r["lr"] for r in runs], np.float64),
                np.array([r["batch_tokens"] for r in runs], np.float64),
                loss,
                near_optimal(loss, band),
            )
        )
    return out


def _line_fits(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted least-squares lines of y on x, row by row: (rows, 2) of (k = e^intercept, slope);
    NaN where a row has fewer than two distinct x."""
    sw = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm, ym = (w * x).sum(1) / sw, (w * y).sum(1) / sw
        sxx = (w * (x - xm[:, None]) ** 2).sum(1)
        slope = (w * (x - xm[:, None]) * (y - ym[:, None])).sum(1) / sxx
        slope[~(sxx > 1e-12)] = np.nan
        return np.stack([np.exp(ym - slope * xm), slope], axis=1)


def _isoflop_samples(fits: list[BudgetFit], n_boot: int, rng) -> dict[str, np.ndarray]:
    """Residual-bootstrap samples of (k, a) for M_opt, D_opt and loss."""
    used = [f for f in fits if f.M_opt is not None]
    if len(used) < 2 or n_boot == 0:
        return {}
    lnC = np.log([f.compute for f in used])
    x_opt, l_opt = np.full((n_boot, len(used)), np.nan), np.full((n_boot, len(used)), np.nan)
    for j, f in enumerate(used):
        x = np.log(f.M)
        X = np.vander(x, 3)  # (n, 3): x², x, 1
        fitted = X @ f.coef
        resid = (f.loss - fitted) * math.sqrt(len(x) / max(1, len(x) - 3))
        draws = fitted[None, :] + rng.choice(resid, size=(n_boot, len(x)), replace=True)
        a, b, c = np.linalg.pinv(X) @ draws.T  # each (n_boot,)
        ok = a > 0
        x_opt[ok, j] = -b[ok] / (2 * a[ok])
        l_opt[ok, j] = c[ok] - b[ok] ** 2 / (4 * a[ok])
    w = np.isfinite(x_opt).astype(np.float64)  # 0 where a resample has no minimum
    X = np.broadcast_to(lnC, x_opt.shape)
    positive = np.where(w > 0, l_opt, np.nan) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ln_loss = np.where(positive, np.log(np.abs(np.nan_to_num(l_opt))), 0.0)
    return {
        "M_opt": _line_fits(X, np.nan_to_num(x_opt), w),
        "D_opt": _line_fits(X, np.nan_to_num(lnC - x_opt), w),
        "loss": _line_fits(X, ln_loss, positive.astype(np.float64)),
    }


def _band_points(grids: list[HparamBudget], band: float, picks: list[np.ndarray] | None = None):
    """(ln C, ln η, ln B) of the near-optimal runs (of a resample when `picks` is given)."""
    cs, lrs, bs = [], [], []
    chosen: list[np.ndarray | None] = list(picks) if picks is not None else [None] * len(grids)
    for g, idx in zip(grids, chosen):
        lr, batch, near = g.lr, g.batch, g.near
        if idx is not None:
            lr, batch = g.lr[idx], g.batch[idx]
            near = near_optimal(g.loss[idx], band)
        cs += [math.log(g.compute)] * int(near.sum())
        lrs += list(np.log(lr[near]))
        bs += list(np.log(batch[near]))
    return np.array(cs), np.array(lrs), np.array(bs)


def _hparam_samples(grids: list[HparamBudget], band: float, n_boot: int, rng) -> dict[str, np.ndarray]:
    if len(grids) < 2 or n_boot == 0:
        return {}
    out = {"eta_opt": np.full((n_boot, 2), np.nan), "B_opt": np.full((n_boot, 2), np.nan)}
    for i in range(n_boot):
        picks = [rng.integers(0, len(g.loss), len(g.loss)) for g in grids]
        c, lr, b = _band_points(grids, band, picks)
        w = np.ones((1, len(c)))
        out["eta_opt"][i] = _line_fits(c[None], lr[None], w)[0]
        out["B_opt"][i] = _line_fits(c[None], b[None], w)[0]
    return out


def _with_ci(law: PowerLaw, samples: np.ndarray | None) -> PowerLaw:
    if samples is None or not np.isfinite(samples).all(1).any():
        return law
    ok = samples[np.isfinite(samples).all(1)]
    lo, hi = np.percentile(ok, [2.5, 97.5], axis=0)
    return PowerLaw(law.coefficient, law.exponent, ((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))))


def fit_laws(profiles: list[BudgetFit], grids: list[HparamBudget], band: float) -> tuple[dict, dict]:
    """Point estimates of the five laws (None with a note where the sweep cannot give one)."""
    laws: dict[str, PowerLaw | None] = dict.fromkeys(("M_opt", "D_opt", "eta_opt", "B_opt", "loss"))
    notes = {}
    used = [f for f in profiles if f.M_opt is not None]
    if len(used) >= 2:
        cs = [f.compute for f in used]
        laws["M_opt"] = fit_power_law(cs, [f.M_opt for f in used])
        laws["D_opt"] = fit_power_law(cs, [f.D_opt for f in used])
        laws["loss"] = fit_power_law(cs, [f.loss_min for f in used])
    else:
        for k in ("M_opt", "D_opt", "loss"):
            notes[k] = f"{len(used)} IsoFLOP budget(s) with an interior minimum (2 or more needed)"
    if len(grids) >= 2:
        c, lr, b = _band_points(grids, band)
        laws["eta_opt"] = fit_power_law(np.exp(c), np.exp(lr))
        laws["B_opt"] = fit_power_law(np.exp(c), np.exp(b))
    else:
        for k in ("eta_opt", "B_opt"):
            notes[k] = f"{len(grids)} hparams-mode budget(s) (2 or more needed: --mode hparams)"
    return laws, notes


def fit_sweep(
    results: list[dict], band: float = 0.0025, n_boot: int = 1000, seed: int = 0, predict: float | None = None
) -> ScalingFit:
    """Everything `dsllm scaling fit` reports."""
    rng = np.random.default_rng(seed)
    profiles, grids = isoflop_profiles(results), hparam_grids(results, band)
    laws, notes = fit_laws(profiles, grids, band)
    samples = {**_isoflop_samples(profiles, n_boot, rng), **_hparam_samples(grids, band, n_boot, rng)}
    laws = {k: (_with_ci(v, samples.get(k)) if v is not None else None) for k, v in laws.items()}
    fit = ScalingFit(profiles, grids, laws, notes, samples, band=band, n_boot=n_boot)
    if predict is not None:
        fit.prediction = prediction(fit, predict, results)
    return fit


def prediction(fit: ScalingFit, compute: float, results: list[dict]) -> dict:
    """Each law at `compute` with its bootstrap interval, beside the runs measured there."""
    out = {"compute": compute}
    for name, law in fit.laws.items():
        if law is None:
            out[name] = None
            continue
        entry = {"value": float(law(compute)), "ci": None}
        s = fit.samples.get(name)
        if s is not None and np.isfinite(s).all(1).any():
            ok = s[np.isfinite(s).all(1)]
            lo, hi = np.percentile(ok[:, 0] * compute ** ok[:, 1], [2.5, 97.5])
            entry["ci"] = [float(lo), float(hi)]
        out[name] = entry
    out["measured"] = [
        {
            "run_id": r["run_id"],
            "role": r["role"],
            "heldout_bpb": r[LOSS_KEY],
            "flops_per_token": r["flops_per_token"],
            "tokens": r["tokens"],
            "lr": r["lr"],
            "batch_tokens": r["batch_tokens"],
        }
        for r in results
        if math.isclose(float(r["budget"]), compute, rel_tol=1e-9) and r["role"] in ("validate", "isoflop")
    ]
    out["in_fit"] = any(math.isclose(f.compute, compute, rel_tol=1e-9) for f in fit.isoflop)
    return out
