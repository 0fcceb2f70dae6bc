"""`dsllm eval --tasks`: benchmark scores (and, with --data, loss) for each checkpoint SRC names."""

from __future__ import annotations

import json
from pathlib import Path

from dsllm import console
from dsllm.errors import UserError


def load_tokenizer(tok: str | None, ckpt):
    """tokenizers.Tokenizer from --tokenizer (file or folder) or the checkpoint folder's tokenizer.json."""
    from tokenizers import Tokenizer

    path = Path(tok) if tok else (Path(ckpt.tokenizer) if ckpt.tokenizer else None)
    if path is not None and path.is_dir():
        path = path / "tokenizer.json"
    if path is None or not path.is_file():
        raise UserError(f"{ckpt.source}: no tokenizer.json beside the model; pass --tokenizer TOK")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception type
        raise UserError(f"{path}: not a tokenizers JSON file ({exc})") from None


def run_tasks(args, checkpoints) -> int:
    import torch

    from dsllm.trainer.benchmarks import report
    from dsllm.trainer.benchmarks import tasks as T
    from dsllm.trainer.benchmarks.scoring import ScoreStats
    from dsllm.trainer.checkpoints.hf import build_model
    from dsllm.trainer.evaluate import evaluate_checkpoint

    if args.limit is not None and args.limit <= 0:
        raise UserError("--limit must be positive")
    names = T.expand([t.strip() for t in args.tasks.split(",") if t.strip()])
    if not names:
        raise UserError("--tasks: no task named")
    loaded = [T.load_requests(n, args.shots, args.limit, root=args.tasks_dir) for n in names]
    jobs = [(src, job) for src in args.model for job in checkpoints(src, args)]
    log_file = open(args.log_samples, "w", encoding="utf-8") if args.log_samples else None
    rows = []
    try:
        for k, (src, job) in enumerate(jobs, 1):
            ckpt = job()
            label = src if len(jobs) == 1 or ckpt.step is None else f"{src} @ {ckpt.step}"
            console.note(f"[{k}/{len(jobs)}] evaluating {label}")
            tokenizer = load_tokenizer(args.tokenizer, ckpt)
            model = build_model(ckpt, dtype=getattr(torch, args.dtype))
            log = None
            if log_file is not None:
                log = lambda rec, label=label: log_file.write(json.dumps({"checkpoint": label, **rec}) + "\n")
            stats = ScoreStats()
            scores = report.evaluate_tasks(
                model,
                tokenizer,
                loaded,
                ckpt.config.max_position_embeddings,
                bos_id=ckpt.config.bos_token_id,
                log=log,
                share_contexts=args.share_contexts,
                stats=stats,
            )
            console.note(
                f"  {stats.requests} requests: {stats.tokens_forwarded} tokens forwarded in {stats.forward_passes} "
                f"pass(es) ({stats.tokens_per_request} one request per row)"
            )
            row = {
                "checkpoint": label,
                "step": ckpt.step,
                "trained_tokens": ckpt.tokens,
                "tasks": scores,
                "tokens_forwarded": stats.tokens_forwarded,
                "scoring": stats.to_dict(),
            }
            if args.data is not None:
                row["loss"] = evaluate_checkpoint(
                    ckpt, args.data, args.max_rows, args.batch_size, dtype=getattr(torch, args.dtype), name=label
                ).to_dict()
            rows.append(row)
    finally:
        if log_file is not None:
            log_file.close()
    task_names = [s.name for s, _ in loaded]
    if args.html:
        Path(args.html).write_text(report.html_chart(rows, task_names), encoding="utf-8")
    console.out(json.dumps(rows, indent=2) if args.json else report.format_table(rows, task_names))
    return 0
