"""Tokenize curated shards and pack fixed-length sequences joined with EOS.

    dsllm pack OUT/ --tokenizer TOK/ --output PACKED/ [--seq-len 4096]

SHARDS is a curated output directory (its manifest's shards), a directory / S3 prefix / glob of
Parquet files with a `text` column, or several of those. --tokenizer is a directory holding a
Hugging Face `tokenizer.json` (ours, or a published checkpoint's folder). Each shard is packed by
a Ray task (in-process Ray unless --ray-address); the output is the same bytes at any worker
count, and rerunning a killed run resumes it.
"""

from __future__ import annotations

from dsllm import console
from dsllm.jobs.commands.common import add_config_flags, add_ray_flags


def add_arguments(p) -> None:
    p.add_argument("shards", nargs="+", metavar="SHARDS", help="curated output, directory, prefix or glob of shards")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with tokenizer.json (local or s3://)")
    p.add_argument("--output", required=True, metavar="PACKED", help="output directory (local or s3://)")
    p.add_argument("--seq-len", type=int, default=None, metavar="N", help="tokens per row (default 4096)")
    p.add_argument(
        "--bos",
        choices=["eos", "document"],
        default=None,
        help="eos: documents joined by EOS only, as DeepSeek (default); document: also BOS before each",
    )
    p.add_argument("--workers", type=int, default=None, metavar="N", help="in-process Ray CPUs (default: all cores)")
    add_config_flags(p)
    add_ray_flags(p)


def run(args) -> int:

    from dsllm.config import load_config
    from dsllm.jobs.runner import RayExecutor, require_shared_path
    from dsllm.tokenizer.pack import PackConfig, pack

    overrides = list(args.overrides)
    if args.seq_len is not None:
        overrides.append(f"seq_len={args.seq_len}")
    if args.bos is not None:
        overrides.append(f'bos="{args.bos}"')
    cfg = load_config(PackConfig, args.config, overrides)
    executor = RayExecutor(args.ray_address, num_cpus=args.workers, max_in_flight=args.workers)
    try:
        if args.ray_address:
            _ = executor.ray  # join the cluster to see how many nodes it has
            require_shared_path(args.output, "--output")
        pack(args.shards, args.tokenizer, args.output, cfg, executor, log=console.note)
    finally:
        executor.close()
    return 0
