"""Mix packed datasets by domain for training, without copying tokens.

    dsllm mix PACKED... --output MIX [--mixture FILE] [--set mixture.target.DOMAIN=W ...]
              [--set mixture.max_repeat=K] [--tokens N]

Writes MIX/order.parquet (the global sequence order: `source` index of the input, `domain`, `row`)
and MIX/mixture.json (per domain: natural tokens, target share, planned tokens, repeat factor,
shortfall). Targets are shares of tokens (configs/mixture.toml by default); unnamed domains keep
their natural share; `max_repeat` caps up-sampling. Train on it with `dsllm train --data MIX`;
change the mixture and retrain without re-curating or re-packing.
"""

from __future__ import annotations

from dsllm import console


def add_arguments(p) -> None:
    p.add_argument("packed", nargs="+", metavar="PACKED", help="packed datasets (dsllm pack outputs, local or s3://)")
    p.add_argument("--output", required=True, metavar="MIX", help="output directory (local or s3://)")
    p.add_argument("--mixture", metavar="FILE", default=None, help="mixture TOML (default: configs/mixture.toml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the mixture, e.g. --set mixture.target.news=0.2 --set mixture.max_repeat=2",
    )
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        metavar="N",
        help="planned total tokens (default: the natural total of the inputs)",
    )
    p.add_argument("--json", action="store_true", help="print mixture.json instead of the table")


def run(args) -> int:
    import json

    from dsllm.config import load_config
    from dsllm.errors import UserError
    from dsllm.trainer.mixture import MixConfig, build_mixture

    overrides = list(args.overrides)
    if args.tokens is not None:
        if args.tokens < 1:
            raise UserError(f"--tokens {args.tokens}: must be positive")
        overrides.append(f"mixture.tokens={args.tokens}")
    cfg = load_config(MixConfig, args.mixture, overrides, default="mixture.toml")
    mixture = build_mixture(args.packed, args.output, cfg.mixture, log=console.note)
    if args.json:
        console.out(json.dumps(mixture, indent=2))
    else:
        console.out(format_table(mixture))
    return 0


def format_table(mixture: dict) -> str:
    """Per domain: natural tokens and share, target share, planned tokens and share, repeat, shortfall."""
    head = f"{'domain':<16} {'natural':>12} {'nat %':>6} {'target %':>8} {'planned':>12} {'mix %':>6} {'repeat':>6} {'shortfall':>10}"
    lines = [head, "-" * len(head)]
    for d, m in mixture["domains"].items():
        lines.append(
            f"{d[:16]:<16} {m['natural_tokens']:>12,} {100 * m['natural_share']:>6.1f} "
            f"{100 * m['target_share']:>8.1f} {m['planned_tokens']:>12,} {100 * m['planned_share']:>6.1f} "
            f"{m['repeat']:>6.2f} {m['shortfall_tokens']:>10,}"
        )
    if mixture.get("absent_targets"):
        lines.append(f"targets for domains not in the data (ignored): {', '.join(mixture['absent_targets'])}")
    return "\n".join(lines)
