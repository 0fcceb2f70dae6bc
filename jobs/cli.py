"""`dsllm`: argument parsing only; each command lives in `jobs/commands/<name>.py` and defines
`add_arguments(parser)` and `run(args) -> int`. Command modules import heavy libraries inside
`run`, so `dsllm --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# (command, module, one-line help) in the order of SPEC.md
COMMANDS = [
    ("demo", "demo", "the whole pipeline on a generated sample crawl, end to end, in minutes"),
    ("sample-crawl", "sample_crawl", "write a synthetic bilingual crawl in Common Crawl layout"),
    ("curate", "curate", "WARC → filtered, deduplicated, remixed Parquet shards"),
    ("stats", "stats", "statistics of curated or packed output (local or S3)"),
    ("quality", "quality", "fastText quality classifier (quality train)"),
    ("tokenizer", "tokenizer", "byte-level BPE tokenizer: train, from-gguf, eval"),
    ("pack", "pack", "tokenize curated shards and pack fixed-length sequences"),
    ("train", "train", "train the GQA transformer on packed data"),
    ("checkpoint", "checkpoint", "list published checkpoints, export to Hugging Face format"),
    ("eval", "eval", "mean loss and perplexity of checkpoints on packed data"),
    ("plan", "plan", "DeepSeek LLM scaling-law hyperparameters for a compute budget"),
    ("scaling", "scaling", "scaling-law sweeps on Ray and their fits: sweep, fit"),
    ("submit", "submit", "run curate / tokenizer / pack / train as a Ray job on a cluster"),
    ("jobs", "jobs_cmd", "follow submitted Ray jobs: list, status, logs, stop"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsllm",
        description="DeepSeek LLM's pretraining recipe: curate Common Crawl, train a BBPE tokenizer, "
                    "pack sequences, train and resume GQA transformers.")
    parser.add_argument("--version", action="version", version="dsllm 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module(f"dsllm.jobs.commands.{module}")
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dsllm.errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = None
    if argv[:1] == ["submit"] and "--" in argv:  # `dsllm submit JOB [opts] -- ARGS...`
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if passthrough is not None:
        args.args = list(args.args or []) + passthrough
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except UserError as exc:
        print(f"dsllm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dsllm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
