"""A fit as a terminal table, as JSON (`laws` as {"coefficient", "exponent", "ci"}), and as a
self-contained HTML page: IsoFLOP curves and the fitted laws drawn as inline SVG, every text from
the sweep escaped."""

from __future__ import annotations

import html
import math

import numpy as np

from dsllm.trainer.scaling.fit import ScalingFit

LAW_LABELS = {
    "M_opt": "M_opt (FLOPs/token)",
    "D_opt": "D_opt (tokens)",
    "eta_opt": "η_opt (learning rate)",
    "B_opt": "B_opt (tokens/batch)",
    "loss": "loss at the optimum (bits/byte)",
}


def to_json(fit: ScalingFit, sweep: str) -> dict:
    """The machine-readable fit (laws y = coefficient · C^exponent)."""
    return {
        "sweep": sweep,
        "loss": "held-out bits per byte",
        "band": fit.band,
        "bootstrap": fit.n_boot,
        "laws": {k: (v.to_dict() if v is not None else None) for k, v in fit.laws.items()},
        "notes": fit.notes,
        "isoflop": [
            {
                "compute": b.compute,
                "runs": len(b.M),
                "M_opt": b.M_opt,
                "D_opt": b.D_opt,
                "loss_min": b.loss_min,
                "parabola_ln_M": None if b.coef is None else [float(x) for x in b.coef],
                "note": b.note,
                "points": [{"M": float(m), "D": float(d), "loss": float(loss)} for m, d, loss in zip(b.M, b.D, b.loss)],
            }
            for b in fit.isoflop
        ],
        "hparams": [
            {
                "compute": g.compute,
                "runs": len(g.loss),
                "near_optimal": int(g.near.sum()),
                "points": [
                    {"lr": float(a), "batch_tokens": float(b), "loss": float(loss), "near_optimal": bool(n)}
                    for a, b, loss, n in zip(g.lr, g.batch, g.loss, g.near)
                ],
            }
            for g in fit.hparams
        ],
        "prediction": fit.prediction,
    }


def _ci(law) -> str:
    if law.ci is None:
        return "-"
    (k0, k1), (a0, a1) = law.ci
    return f"k [{k0:.4g}, {k1:.4g}]  a [{a0:.4f}, {a1:.4f}]"


def format_report(fit: ScalingFit, sweep: str) -> str:
    """IsoFLOP minima, the laws with their 95% intervals, and the prediction."""
    lines = [
        f"{sweep}: held-out bits per byte; {fit.n_boot} bootstrap resamples",
        "",
        f"{'budget C':>10} {'runs':>5} {'M_opt':>11} {'D_opt':>11} {'loss at min':>12}  note",
    ]
    for b in fit.isoflop:
        lines.append(
            f"{b.compute:>10.3g} {len(b.M):>5} {_g(b.M_opt):>11} {_g(b.D_opt):>11} "
            f"{_g(b.loss_min, '.4f'):>12}  {b.note or ''}"
        )
    for g in fit.hparams:
        lines.append(
            f"{g.compute:>10.3g} {len(g.loss):>5}  hparams grid: {int(g.near.sum())} near-optimal "
            f"(within {fit.band:.2%} of {g.loss.min():.4f})"
        )
    lines += ["", f"{'law':<8} {'y = k·C^a':<24} 95% interval"]
    for name, law in fit.laws.items():
        lines.append(f"{name:<8} {str(law) if law else '-':<24} {_ci(law) if law else fit.notes.get(name, '')}")
    p = fit.prediction
    if p:
        lines += ["", f"prediction at C = {p['compute']:.3g}" + (" (a budget of the fit)" if p["in_fit"] else "")]
        for name in LAW_LABELS:
            e = p.get(name)
            if e:
                ci = f"  [{e['ci'][0]:.4g}, {e['ci'][1]:.4g}]" if e["ci"] else ""
                lines.append(f"  {name:<8} {e['value']:.4g}{ci}")
        for m in p["measured"]:
            lines.append(
                f"  measured: {m['heldout_bpb']:.4f} bits/byte ({m['role']} run {m['run_id']}, "
                f"M {m['flops_per_token']:.3g}, D {m['tokens']:.3g})"
            )
        if not p["measured"]:
            lines.append("  measured: no run at this budget (dsllm scaling sweep --validate C)")
    return "\n".join(lines)


def _g(x, fmt: str = ".3e") -> str:
    return "-" if x is None else format(x, fmt)


class _Plot:
    """A small log-x (and optionally log-y) SVG chart."""

    W, H, PAD = 440, 300, 64
    COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]

    def __init__(self, title: str, xlabel: str, ylabel: str, xs, ys, logy: bool):
        self.title, self.xlabel, self.ylabel, self.logy = title, xlabel, ylabel, logy
        xs, ys = np.log10(np.asarray(xs, float)), self._y(np.asarray(ys, float))
        self.x0, self.x1 = self._pad(xs.min(), xs.max())
        self.y0, self.y1 = self._pad(ys.min(), ys.max())
        self.parts: list[str] = []

    def _y(self, y):
        return np.log10(y) if self.logy else y

    @staticmethod
    def _pad(lo, hi):
        span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
        return lo - 0.08 * span, hi + 0.08 * span

    def px(self, x, y):
        X = self.PAD + (math.log10(x) - self.x0) / (self.x1 - self.x0) * (self.W - 1.5 * self.PAD)
        Y = self.H - self.PAD - (float(self._y(y)) - self.y0) / (self.y1 - self.y0) * (self.H - 1.6 * self.PAD)
        return X, Y

    def points(self, xs, ys, color, hollow=False, title=""):
        for x, y in zip(xs, ys):
            X, Y = self.px(x, y)
            fill = "none" if hollow else color
            self.parts.append(
                f'<circle cx="{X:.1f}" cy="{Y:.1f}" r="3.5" fill="{fill}" stroke="{color}">'
                f"<title>{html.escape(title)}</title></circle>"
            )

    def legend(self, row: int, text: str, color: str) -> None:
        self.parts.append(
            f'<text x="{self.W - 8}" y="{30 + 13 * row}" font-size="10" text-anchor="end" '
            f'fill="{color}">{html.escape(text)}</text>'
        )

    def line(self, xs, ys, color, dash=False):
        pts = " ".join("{:.1f},{:.1f}".format(*self.px(x, y)) for x, y in zip(xs, ys))
        style = ' stroke-dasharray="5,4"' if dash else ""
        self.parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"{style}/>')

    def svg(self) -> str:
        t, P, W, H = html.escape, self.PAD, self.W, self.H
        axes = (
            f'<line x1="{P}" y1="{H - P}" x2="{W - P / 2}" y2="{H - P}" stroke="#333"/>'
            f'<line x1="{P}" y1="{P * 0.6}" x2="{P}" y2="{H - P}" stroke="#333"/>'
        )
        ticks = []
        for k in range(math.ceil(self.x0), math.floor(self.x1) + 1):
            X = P + (k - self.x0) / (self.x1 - self.x0) * (W - 1.5 * P)
            ticks.append(f'<text x="{X:.1f}" y="{H - P + 14}" font-size="10" text-anchor="middle">1e{k}</text>')
        for v in np.linspace(self.y0, self.y1, 5)[1:-1]:
            Y = H - P - (v - self.y0) / (self.y1 - self.y0) * (H - 1.6 * P)
            label = f"{10**v:.3g}" if self.logy else f"{v:.3f}"
            ticks.append(f'<text x="{P - 4}" y="{Y + 3:.1f}" font-size="10" text-anchor="end">{label}</text>')
        labels = (
            f'<text x="{W / 2}" y="16" font-size="13" text-anchor="middle">{t(self.title)}</text>'
            f'<text x="{W / 2}" y="{H - 12}" font-size="11" text-anchor="middle">{t(self.xlabel)}</text>'
            f'<text x="12" y="{H / 2}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 12 {H / 2})">{t(self.ylabel)}</text>'
        )
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">'
            + axes
            + "".join(ticks)
            + "".join(self.parts)
            + labels
            + "</svg>"
        )


def isoflop_svg(fit: ScalingFit) -> str:
    profiles = [b for b in fit.isoflop if len(b.M)]
    if not profiles:
        return ""
    xs = np.concatenate([b.M for b in profiles])
    ys = np.concatenate([b.loss for b in profiles] + [[b.loss_min] for b in profiles if b.loss_min is not None])
    plot = _Plot("IsoFLOP profiles", "M: non-embedding FLOPs per token", "held-out bits per byte", xs, ys, False)
    for i, b in enumerate(profiles):
        color = plot.COLORS[i % len(plot.COLORS)]
        plot.points(b.M, b.loss, color, title=f"C = {b.compute:.3g}")
        plot.legend(i, f"C = {b.compute:.3g}" + ("" if b.M_opt else " (no interior minimum)"), color)
        if b.coef is not None:
            grid = np.exp(np.linspace(np.log(b.M.min()), np.log(b.M.max()), 40))
            plot.line(grid, np.polyval(b.coef, np.log(grid)), color, dash=b.M_opt is None)
        if b.M_opt is not None:
            plot.points([b.M_opt], [b.loss_min], "#000", hollow=True, title=f"minimum at C = {b.compute:.3g}")
    return plot.svg()


def law_svg(fit: ScalingFit, name: str) -> str:
    """Observed optima (IsoFLOP minima, or near-optimal hparams runs) and the fitted law."""
    law = fit.laws.get(name)
    if law is None:
        return ""
    if name in ("eta_opt", "B_opt"):
        cs = np.concatenate([np.full(int(g.near.sum()), g.compute) for g in fit.hparams])
        ys = np.concatenate([(g.lr if name == "eta_opt" else g.batch)[g.near] for g in fit.hparams])
    else:
        used = [b for b in fit.isoflop if b.M_opt is not None]
        cs = np.array([b.compute for b in used])
        ys = np.array([{"M_opt": b.M_opt, "D_opt": b.D_opt, "loss": b.loss_min}[name] for b in used])
    span = list(cs)
    if fit.prediction:
        span.append(fit.prediction["compute"])
    grid = np.geomspace(min(span), max(span), 30)
    extra_y = [float(law(fit.prediction["compute"]))] if fit.prediction else []
    plot = _Plot(f"{name} = {law}", "compute C (FLOPs)", LAW_LABELS[name], grid, np.r_[ys, law(grid), extra_y], True)
    plot.line(grid, law(grid), "#1f77b4")
    plot.points(cs, ys, "#1f77b4")
    if fit.prediction and fit.prediction.get(name):
        plot.points(
            [fit.prediction["compute"]], [fit.prediction[name]["value"]], "#d62728", hollow=True, title="prediction"
        )
        if name == "loss":
            for m in fit.prediction["measured"]:
                plot.points([fit.prediction["compute"]], [m["heldout_bpb"]], "#d62728", title="measured")
    return plot.svg()


def html_report(fit: ScalingFit, sweep: str) -> str:
    """One self-contained page: the table, the IsoFLOP curves, each law's plot."""
    charts = [isoflop_svg(fit)] + [law_svg(fit, name) for name in LAW_LABELS]
    body = "".join(f'<div class="chart">{c}</div>' for c in charts if c)
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>scaling laws: '
        f"{html.escape(sweep)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        ".chart{display:inline-block;margin:8px;border:1px solid #ddd}pre{background:#f6f6f6;padding:1em}"
        f"</style></head><body><h1>Scaling laws of {html.escape(sweep)}</h1>"
        f"<pre>{html.escape(format_report(fit, sweep))}</pre>{body}</body></html>\n"
    )
