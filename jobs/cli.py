"""`dsllm`: argument parsing only; each command lives in `jobs/commands/<name>.py` and defines
`add_arguments(parser)` and `run(args) -> int`. Command modules import heavy libraries inside
`run`, so `dsllm --help` stays fast. Output goes through `dsllm.console` (results on stdout, messages
on stderr); `--log-level` / `-v`, before or after the command, choose which `dsllm.*` log records show.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dsllm import console

# (command, module, one-line help) in the order of SPEC.md
COMMANDS = [
    ("demo", "demo", "the whole pipeline on a generated sample crawl, end to end, in minutes"),
    ("sample-crawl", "sample_crawl", "write a synthetic bilingual crawl in Common Crawl layout"),
    ("curate", "curate", "WARC → filtered, deduplicated, domain-labelled Parquet shards"),
    ("stats", "stats", "statistics of curated or packed output (local or S3)"),
    ("quality", "quality", "fastText quality classifier (quality train)"),
    ("tokenizer", "tokenizer", "byte-level BPE tokenizer: train, from-gguf, eval"),
    ("pack", "pack", "tokenize curated shards and pack fixed-length sequences"),
    ("mix", "mix", "mix packed datasets by domain for training (order + plan, no tokens copied)"),
    ("train", "train", "train the GQA transformer on packed data"),
    ("checkpoint", "checkpoint", "list published checkpoints, export to Hugging Face format"),
    ("eval", "eval", "loss/perplexity on packed data; benchmark scores (DeepSeek's method), offline"),
    ("decontam", "decontam", "n-gram index of benchmark test data for curate's decontaminate stage"),
    ("plan", "plan", "DeepSeek LLM scaling-law hyperparameters for a compute budget"),
    ("scaling", "scaling", "scaling-law sweeps on Ray and their fits: sweep, fit"),
    ("submit", "submit", "run curate / tokenizer / pack / train as a Ray job on a cluster"),
    ("jobs", "jobs_cmd", "follow submitted Ray jobs: list, status, logs, stop"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsllm",
        description="DeepSeek LLM's pretraining recipe: curate Common Crawl, train a BBPE tokenizer, "
        "pack sequences, train and resume GQA transformers.",
    )
    parser.add_argument("--version", action="version", version="dsllm 0.1.0")
    console.add_logging_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module, help_text in COMMANDS:
        mod = importlib.import_module(f"dsllm.jobs.commands.{module}")
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip())
        mod.add_arguments(p)
        console.add_logging_arguments(p, suppress_defaults=True)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dsllm.errors import UserError

    entry_argv = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = None
    if argv[:1] == ["submit"] and "--" in argv:  # `dsllm submit JOB [opts] -- ARGS...`
        cut = argv.index("--")
        argv, passthrough = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if passthrough is not None:
        args.args = list(args.args or []) + passthrough
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    console.setup_logging(console.level_from_args(args))
    entry = entry_argv is None  # the process's own command (console script), not an in-process call (demo)
    if entry:
        from dsllm import interrupt
        from dsllm.redact import install_excepthook

        interrupt.install()
        install_excepthook()  # an unexpected error's traceback is printed without credentials
    try:
        return int(args._module.run(args) or 0)
    except UserError as exc:
        console.error(args.command, exc)
        return 2
    except KeyboardInterrupt:
        console.note(f"dsllm {args.command}: interrupted")
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if entry:
            _shutdown_ray()


def _shutdown_ray() -> None:
    """Shut down an in-process Ray this command started (a no-op when Ray was never imported)."""
    ray = sys.modules.get("ray")
    if ray is not None and getattr(ray, "is_initialized", lambda: False)():
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001 - best effort on the way out; the reaper covers the rest
            pass


if __name__ == "__main__":
    sys.exit(main())
