"""Run the whole pipeline on a generated sample crawl, end to end, in a few minutes:
sample-crawl (two dumps) → curate (cross-dump dedup) → stats → tokenizer train → pack → stats →
train a tiny GQA model; then prints where every output is and the loss curve.

Sizes live in a small config (jobs.demo.DemoConfig); change them with --set, e.g.
--set max_steps=80 --set vocab_size=4000. Everything runs on one in-process Ray.
"""

from __future__ import annotations

from dsllm.jobs.commands.common import add_config_flags


def add_arguments(p) -> None:
    p.add_argument(
        "--workdir",
        default="dsllm-demo",
        metavar="DIR",
        help="where the crawl, curated shards, tokenizer, packed data and run go "
        "(local or s3://; default ./dsllm-demo)",
    )
    add_config_flags(p)


def run(args) -> int:
    from dsllm import storage
    from dsllm.config import load_config
    from dsllm.errors import UserError
    from dsllm.jobs.demo import DemoConfig, run_demo

    cfg = load_config(DemoConfig, args.config, args.overrides)
    if storage.is_http(args.workdir):
        raise UserError(f"--workdir {args.workdir}: cannot write to an HTTP URL; use a local path or s3://")
    if storage.list_files(storage.join(args.workdir, "run")):
        raise UserError(f"--workdir {args.workdir}: holds a finished demo already; remove it or pick another")
    run_demo(args.workdir, cfg)
    return 0
