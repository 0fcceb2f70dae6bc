"""Scaling-law sweeps (DeepSeek LLM §3) on Ray, and their fits.

  dsllm scaling sweep --data PACKED --output SWEEP --budgets 1e13,3e13,1e14 [--points 6]
                      [--mode isoflop|hparams] [--validate C] [--laws FIT.json] [--workers N | --ray-address ADDR]
  dsllm scaling fit SWEEP [--predict C] [--json] [--html FILE]

sweep: for each budget C a family of model shapes (isoflop) or an η × B grid (hparams) with
D = C/M tokens, M = 72·n_layer·d² + 12·n_layer·d·l_seq; one Ray task per run; held-out loss in
bits per byte on a split no run trains on; rerunning resumes (finished runs skipped, the others
retried alone). fit: IsoFLOP minima, power laws M_opt, D_opt, η_opt, B_opt and loss against C
with bootstrap intervals, and a prediction at a larger budget beside any run measured there.
Knobs: configs/scaling.toml (--config FILE, --set key=value).
"""

from __future__ import annotations

import argparse

from dsllm import console
from dsllm.jobs.commands.common import add_config_flags, add_ray_flags


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="scaling_command", metavar="SUBCOMMAND")
    s = sub.add_parser(
        "sweep",
        help="train a sweep of runs at several compute budgets (Ray tasks)",
        description="Plan and run an IsoFLOP (or η × B) sweep; rerun to resume.",
    )
    s.add_argument("--data", required=True, metavar="PACKED", help="packed data (local or a shared filesystem)")
    s.add_argument("--output", required=True, metavar="SWEEP", help="sweep directory")
    s.add_argument("--budgets", default="", metavar="C,C,...", help="compute budgets in FLOPs, e.g. 1e13,3e13,1e14")
    s.add_argument("--points", type=int, default=6, help="shapes per budget (isoflop) or values per axis (hparams)")
    s.add_argument("--mode", choices=["isoflop", "hparams"], default="isoflop")
    s.add_argument(
        "--validate",
        default="",
        metavar="C,...",
        help="also one run at the laws' optimum for each C (reported beside fit --predict C)",
    )
    s.add_argument(
        "--laws",
        default=None,
        metavar="FIT.json",
        help="plan with the laws of `dsllm scaling fit --json` (default: the paper's)",
    )
    s.add_argument("--tokenizer", default=None, metavar="DIR", help="the data's tokenizer (default: PACKED's manifest)")
    s.add_argument("--workers", type=int, default=1, help="runs at once on the in-process Ray")
    s.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    add_ray_flags(s)
    add_config_flags(s)

    f = sub.add_parser(
        "fit",
        help="fit the scaling laws of a sweep; predict a larger budget",
        description="IsoFLOP fits, power laws with bootstrap intervals, a prediction.",
    )
    f.add_argument("sweep", metavar="SWEEP")
    f.add_argument("--predict", default=None, metavar="C", help="compute budget to predict (FLOPs)")
    f.add_argument("--json", action="store_true", help="print JSON instead of tables")
    f.add_argument("--html", default=None, metavar="FILE", help="also write a self-contained HTML page")
    f.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    f.add_argument(
        "--band",
        type=float,
        default=0.0025,
        help="near-optimal band for η and B: within this fraction of the minimum (default 0.0025)",
    )


def budgets(text: str, flag: str) -> list[float]:
    """'1e13,3e13' → [1e13, 3e13] (positive, finite), or a one-line error."""
    import math

    from dsllm.errors import UserError

    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            c = float(item)
        except ValueError:
            raise UserError(f"{flag} {text!r}: {item!r} is not a number of FLOPs (e.g. 1e13)") from None
        if not (c > 0 and math.isfinite(c)):
            raise UserError(f"{flag} {text!r}: budgets must be positive and finite")
        out.append(c)
    return out


def _config(args):
    from dsllm.config import apply_overrides, from_dict, load_toml
    from dsllm.trainer.scaling.plan import SweepConfig

    data = load_toml(args.config or "scaling.toml")
    return from_dict(SweepConfig, apply_overrides(data, args.overrides), where="scaling config")


def run_sweep_command(args) -> int:
    from dsllm import storage
    from dsllm.errors import UserError
    from dsllm.trainer.scaling.data import split_packed
    from dsllm.trainer.scaling.laws import load_laws
    from dsllm.trainer.scaling.plan import Planner

    if args.points < 1 or args.workers < 1:
        raise UserError("--points and --workers must be >= 1")
    if storage.is_remote(args.output):
        raise UserError(f"--output {args.output}: a sweep directory is local (or on a filesystem every node mounts)")
    cs, validate = budgets(args.budgets, "--budgets"), budgets(args.validate, "--validate")
    if not cs and not validate:
        raise UserError("--budgets (or --validate) names no compute budget")
    if args.mode == "isoflop" and 0 < args.points < 3 and cs:
        raise UserError(f"--points {args.points}: an IsoFLOP parabola needs at least 3 shapes per budget")
    from pathlib import Path

    args.output = str(Path(args.output).resolve())  # Ray workers see the same path whatever their cwd
    cfg, laws = _config(args), load_laws(args.laws)
    info = split_packed(args.data, f"{args.output}/data", cfg.heldout_rows, args.tokenizer)
    planner = Planner.for_data(laws, cfg, f"{args.output}/data/train")
    runs = planner.plan(cs, args.mode, args.points, validate)
    for note in planner.dropped:
        console.note(f"left out: {note}")
    if args.mode == "isoflop":
        for c in cs:
            n = sum(r.role == "isoflop" and r.budget == c for r in runs)
            if n < 3:
                console.warn(
                    f"budget {c:.3g} has {n} distinct shape(s); an IsoFLOP parabola needs 3 "
                    "(raise the budget, or lower shape.head_dim / shape.aspect)"
                )
    if not runs:
        raise UserError("every planned run was left out (raise the budgets or lower min_steps)")
    if args.dry_run:
        _print_plan(runs, cfg)
        return 0
    from dsllm.jobs.scaling import record_plan, run_sweep

    record_plan(Path(args.output), runs, cfg, args.data)
    summary = run_sweep(runs, args.output, info, cfg, args.ray_address, args.workers)
    console.out(
        f"{args.output}: {summary['planned']} runs, {summary['skipped']} already finished, "
        f"{summary['finished']} finished now, {len(summary['failed'])} failed"
    )
    if summary["failed"]:
        console.note(f"failed (rerun the same command to retry them): {', '.join(summary['failed'])}")
        return 1
    return 0


def _print_plan(runs, cfg) -> None:
    """One line per run, grouped by shared first stage, and the tokens the sharing saves."""
    from dsllm.trainer.scaling.plan import share_groups

    groups = share_groups(runs, cfg.share_first_stage)
    for g in groups:
        for r in g.runs:
            shared = f"  first {r.branch_step()} steps shared ({g.key[:8]})" if g.shared else ""
            console.out(
                f"{r.run_id}  M={r.flops_per_token:.3e}  D={r.tokens:.3e}  lr={r.lr:.3g}  "
                f"batch={r.batch_seqs}  steps={r.steps}  warmup={r.warmup_steps}{shared}"
            )
    alone = sum(r.tokens for r in runs)
    shared = sum(_group_tokens(g) for g in groups)
    console.out(f"# {len(runs)} runs, {shared:.3e} tokens to train ({alone:.3e} without shared first stages)")


def _group_tokens(group) -> int:
    """Tokens a group trains: its trunk to the last branch step, then every run's own tail."""
    if not group.shared:
        return group.runs[0].tokens
    tps = lambda r: r.batch_seqs * r.seq_len  # noqa: E731
    trunk = max(r.branch_step() for r in group.runs) * tps(group.runs[0])
    return trunk + sum((r.steps - r.branch_step()) * tps(r) for r in group.runs)


def run_fit_command(args) -> int:
    import json

    from dsllm import storage
    from dsllm.errors import UserError
    from dsllm.trainer.scaling.fit import fit_sweep, load_results
    from dsllm.trainer.scaling.report import format_report, html_report, to_json

    if args.bootstrap < 0 or not 0 < args.band < 1:
        raise UserError("--bootstrap must be >= 0 and --band in (0, 1)")
    predict = budgets(args.predict, "--predict")[0] if args.predict else None
    results = load_results(args.sweep)
    fit = fit_sweep(results, band=args.band, n_boot=args.bootstrap, predict=predict)
    doc = to_json(fit, args.sweep)
    if args.html:
        storage.write_text(args.html, html_report(fit, args.sweep))
    console.out(json.dumps(doc, indent=2) if args.json else format_report(fit, args.sweep))
    return 0


def run(args) -> int:
    from dsllm.errors import UserError

    if args.scaling_command == "sweep":
        return run_sweep_command(args)
    if args.scaling_command == "fit":
        return run_fit_command(args)
    raise UserError("a subcommand is needed: sweep or fit (dsllm scaling --help)")
