"""Published and local checkpoints: list what is under a local folder or S3 prefix (steps, token
counts, files, sizes, formats), fetch one into the local cache (parallel, verified, resumable),
export one to Hugging Face format. Requester pays is on by default for S3 checkpoint sources.

  dsllm checkpoint list s3://deepseek-ai/DeepSeek-LLM/DeepSeek-LLM-7B-Base
  dsllm checkpoint fetch s3://.../DeepSeek-LLM-7B-Base --step 1000
  dsllm checkpoint export RUN --output hf-model/
"""

from __future__ import annotations

import json
import sys

from dsllm import console
from dsllm.jobs.commands.common import add_requester_pays


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the examples' lines
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="checkpoints under a local folder or S3 prefix")
    ls.add_argument("src", metavar="SRC", help="local folder or s3://bucket/prefix")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--summary", action="store_true", help="one line per checkpoint, no file list")
    add_requester_pays(ls, default=True)
    fe = sub.add_parser("fetch", help="download a checkpoint into the local cache and print its folder")
    fe.add_argument("src", metavar="SRC", help="s3:// prefix (or a local folder: printed as is)")
    _common(fe)
    ex = sub.add_parser("export", help="write a checkpoint as a Hugging Face model folder")
    ex.add_argument("ckpt", metavar="CKPT", help="run dir, step dir, HF folder or s3:// prefix")
    ex.add_argument("--output", required=True, metavar="DIR", help="output folder (local or s3://)")
    ex.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="convert weights (default: keep the stored dtype, byte for byte)",
    )
    ex.add_argument(
        "--max-shard-size",
        type=float,
        default=5.0,
        metavar="GB",
        help="split into shards of at most this many GB (default 5)",
    )
    ex.add_argument("--overwrite", action="store_true", help="replace a previous export in DIR")
    ex.add_argument(
        "--tokenizer",
        metavar="TOK",
        default=None,
        help="tokenizer folder or tokenizer.json to ship with the model (default: the one "
        "the run trained with, found through its data's manifest)",
    )
    _common(ex)


def _common(p) -> None:
    p.add_argument("--step", type=int, default=None, help="which step (default: the latest)")
    p.add_argument("--cache", metavar="DIR", default=None, help="cache folder (default $DSLLM_CACHE or ~/.cache/dsllm)")
    p.add_argument("--workers", type=int, default=8, help="parallel ranged downloads (default 8)")
    add_requester_pays(p, default=True)


def run(args) -> int:
    return {"list": _list, "fetch": _fetch, "export": _export}[args.action](args)


def _size(n: int) -> str:
    for unit, s in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= s:
            return f"{n / s:.1f} {unit}"
    return f"{n} B"


def _list(args) -> int:
    from dsllm.trainer.checkpoints.remote import list_checkpoints

    infos = list_checkpoints(args.src, requester_pays=args.requester_pays)
    if args.json:
        out = [
            {
                "name": i.name,
                "uri": i.uri,
                "step": i.step,
                "tokens": i.tokens,
                "format": i.format,
                "bytes": i.size,
                "files": [{"name": n, "bytes": f.size, "etag": f.etag} for n, f in zip(i.names(), i.files)],
            }
            for i in infos
        ]
        console.out(json.dumps(out, indent=2))
        return 0
    console.out(f"{len(infos)} checkpoint(s) under {args.src}")
    console.out(f"{'checkpoint':<44} {'step':>10} {'tokens':>14} {'files':>5} {'size':>10}  format")
    for i in infos:
        step = "-" if i.step is None else str(i.step)
        tokens = "-" if i.tokens is None else f"{i.tokens:,}"
        console.out(f"{i.name:<44} {step:>10} {tokens:>14} {len(i.files):>5} {_size(i.size):>10}  {i.format}")
        if not args.summary:
            for n, f in zip(i.names(), i.files):
                console.out(f"    {n:<50} {_size(f.size):>10}")
    return 0


class _Progress:
    """Fetch progress on stderr: a live line on a terminal, else a line every 10 s (job logs)."""

    def __init__(self):
        import time

        self.tty, self.clock, self.last = sys.stderr.isatty(), time.monotonic, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not total:
            return
        msg = f"fetched {_size(done)} of {_size(total)} ({100 * done / total:.0f}%)"
        if self.tty:
            console.raw(f"\r{msg}" + ("\n" if done >= total else ""), err=True)
        elif self.clock() - self.last >= 10 or done >= total:
            self.last = self.clock()
            console.note(msg)


def _resolve(args, with_optimizer: bool = True):
    from pathlib import Path

    from dsllm.trainer.checkpoints.hf import resolve_checkpoint

    return resolve_checkpoint(
        args.ckpt if hasattr(args, "ckpt") else args.src,
        step=args.step,
        requester_pays=args.requester_pays,
        with_optimizer=with_optimizer,
        cache=Path(args.cache) if args.cache else None,
        progress=_Progress(),
        stream=False,
    )  # export copies tensors from local files


def _fetch(args) -> int:
    from pathlib import Path

    from dsllm.trainer.checkpoints import remote
    from dsllm.trainer.checkpoints.hf import pick_checkpoint

    info = pick_checkpoint(remote.list_checkpoints(args.src, requester_pays=args.requester_pays), args.src, args.step)
    folder = remote.fetch_checkpoint(
        info,
        requester_pays=args.requester_pays,
        workers=args.workers,
        cache=Path(args.cache) if args.cache else None,
        progress=_Progress(),
    )
    console.out(folder)
    return 0


def _export(args) -> int:
    from dsllm.trainer.checkpoints.export import export_hf

    ckpt = _resolve(args, with_optimizer=False)
    for note in ckpt.notes:
        console.note(f"note: {note}")
    written = export_hf(
        ckpt,
        args.output,
        dtype=args.dtype,
        max_shard_bytes=int(args.max_shard_size * (1 << 30)),
        overwrite=args.overwrite,
        tokenizer=args.tokenizer,
    )
    step = f" (step {ckpt.step})" if ckpt.step is not None else ""
    console.out(f"exported {ckpt.source}{step} to {args.output}: {', '.join(written)}")
    if "tokenizer.json" not in written:
        console.warn(
            "no tokenizer exported (none in the checkpoint, and its run's data names none that "
            "still exists unchanged); pass --tokenizer TOK so AutoTokenizer can load the folder"
        )
    return 0
