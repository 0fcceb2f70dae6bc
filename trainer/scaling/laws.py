"""Power laws y = k·C^a in the compute C, the paper's fitted laws, and reading a fit as laws.

DeepSeek LLM (§3): η_opt = 0.3118·C^−0.1250, B_opt = 0.2920·C^0.3271 (tokens),
M_opt = 0.1715·C^0.5243 (non-embedding FLOPs/token), D_opt = 5.8316·C^0.4757 (tokens).
A sweep plans with these by default; `dsllm scaling sweep --laws FIT.json` plans with the laws of
an earlier `dsllm scaling fit --json` instead (the laws it fitted; the paper's for the others).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsllm.errors import UserError

LAW_NAMES = ("M_opt", "D_opt", "eta_opt", "B_opt", "loss")


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · C^exponent; `ci` = ((k_lo, k_hi), (a_lo, a_hi)) when bootstrapped."""

    coefficient: float
    exponent: float
    ci: tuple[tuple[float, float], tuple[float, float]] | None = None

    def __call__(self, compute):
        return self.coefficient * np.asarray(compute, dtype=np.float64) ** self.exponent

    def to_dict(self) -> dict:
        return {
            "coefficient": self.coefficient,
            "exponent": self.exponent,
            "ci": [list(self.ci[0]), list(self.ci[1])] if self.ci else None,
        }

    @classmethod
    def from_dict(cls, d: dict, where: str) -> PowerLaw:
        try:
            k, a = float(d["coefficient"]), float(d["exponent"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{where}: a law needs numeric 'coefficient' and 'exponent'") from None
        if not (k > 0 and math.isfinite(k) and math.isfinite(a)):
            raise UserError(f"{where}: coefficient must be positive and finite, exponent finite")
        return cls(k, a)

    def __str__(self) -> str:
        return f"{self.coefficient:.4g}·C^{self.exponent:.4f}"


PAPER = {
    "M_opt": PowerLaw(0.1715, 0.5243),
    "D_opt": PowerLaw(5.8316, 0.4757),
    "eta_opt": PowerLaw(0.3118, -0.1250),
    "B_opt": PowerLaw(0.2920, 0.3271),
}


def fit_power_law(compute, values) -> PowerLaw:
    """Least squares of log y on log C (the straight line of a log-log plot)."""
    x, y = np.log(np.asarray(compute, np.float64)), np.log(np.asarray(values, np.float64))
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a power law needs points at two or more compute budgets")
    slope, intercept = np.polyfit(x, y, 1)
    return PowerLaw(float(math.exp(intercept)), float(slope))


def load_laws(path: str | None) -> dict[str, PowerLaw]:
    """The planning laws: the paper's, with those fitted in `path` (a `fit --json` file) on top."""
    laws = dict(PAPER)
    if path is None:
        return laws
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"--laws {path}: not a readable JSON file ({exc})") from None
    fitted = data.get("laws") if isinstance(data, dict) else None
    if not isinstance(fitted, dict):
        raise UserError(f"--laws {path}: no 'laws' object (expected the output of `dsllm scaling fit --json`)")
    for name in ("M_opt", "D_opt", "eta_opt", "B_opt"):
        if isinstance(fitted.get(name), dict):
            laws[name] = PowerLaw.from_dict(fitted[name], f"--laws {path}: {name}")
    return laws
