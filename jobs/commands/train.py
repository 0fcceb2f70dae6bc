"""Train the LLaMA-style GQA transformer on packed data.

    dsllm train --model tiny --data PACKED --output RUN [--max-steps N] [--batch-size SEQS]
    dsllm train --model 7b --data s3://b/packed --output RUN --resume-from s3://deepseek-ai/...

--model is a flavor (tiny, 7b, 67b) or a JSON file of Hugging Face LlamaConfig fields; with
--resume-from and no --model, the checkpoint's config is used. The `tiny` flavor takes the data's
vocabulary size (rounded up to a multiple of 64) so a small demo tokenizer gives a small model.
Knobs: configs/train-<flavor>.toml (or --config FILE) and --set key=value (e.g. --set
optim.lr=3e-4, --set precision=fp32, --set model.num_hidden_layers=4). Rerunning with the same
--output resumes from its latest checkpoint. --output may be s3://bucket/run: training then runs
in a local staging directory and uploads every checkpoint (and metrics.jsonl) to it, and a rerun
resumes from the S3 run's latest complete checkpoint (trainer/mirror.py).
"""

from __future__ import annotations

from dsllm.jobs.commands.common import add_config_flags, add_ray_flags


def add_arguments(p) -> None:
    p.add_argument("--model", default=None, metavar="{tiny,7b,67b,FILE}",
                   help="model flavor or a JSON file of LlamaConfig fields")
    p.add_argument("--data", required=True, metavar="PACKED", help="packed data (local or s3://)")
    p.add_argument("--output", required=True, metavar="RUN", help="run directory (metrics, checkpoints): local or s3://")
    p.add_argument("--resume-from", default=None, metavar="SRC",
                   help="run dir, checkpoint dir, or Hugging Face model dir / S3 prefix")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps to train to")
    p.add_argument("--batch-size", type=int, default=None, metavar="SEQS",
                   help="global batch in sequences")
    p.add_argument("--workers", type=int, default=1, help="data-parallel workers (Ray Train)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_ray_flags(p)
    add_config_flags(p)


def _train_config(args):
    from dsllm.config import CONFIG_DIR, apply_overrides, from_dict, load_toml
    from dsllm.trainer.train import TrainConfig

    data = {}
    if args.config:
        data = load_toml(args.config)
    elif args.model in ("tiny", "7b", "67b") and (CONFIG_DIR / f"train-{args.model}.toml").exists():
        data = load_toml(CONFIG_DIR / f"train-{args.model}.toml")
    flags = [f"max_steps={args.max_steps}"] if args.max_steps is not None else []
    flags += [f"batch_size={args.batch_size}", "batch_tokens=0"] if args.batch_size is not None else []
    return from_dict(TrainConfig, apply_overrides(data, list(args.overrides) + flags))


def _model_config(args, cfg):
    from dsllm.errors import UserError
    from dsllm.trainer.config import resolve_model

    if args.model is None:
        if not args.resume_from:
            raise UserError("--model is required (tiny, 7b, 67b or a LlamaConfig JSON) unless --resume-from is given")
        from dsllm.trainer import hf

        base = hf.resolve_checkpoint(args.resume_from).config
        return base.replace(**cfg.model) if cfg.model else base
    model = resolve_model(args.model, cfg.model)
    if args.model == "tiny" and "vocab_size" not in cfg.model:
        from dsllm.trainer.data import PackedDataset

        vocab = (PackedDataset(args.data).manifest.get("tokenizer") or {}).get("vocab_size")
        if vocab:
            model = model.replace(vocab_size=-(-int(vocab) // 64) * 64)
    return model


def run(args) -> int:
    import json
    from pathlib import Path

    from dsllm import storage
    from dsllm.config import config_to_dict
    from dsllm.errors import UserError

    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: must be >= 1")
    if storage.is_http(args.output):
        raise UserError(f"--output {args.output}: a run directory is a local path or s3://")
    cfg = _train_config(args)
    model_cfg = _model_config(args, cfg)
    if args.workers > 1:
        try:
            from dsllm.jobs.train_ray import train_with_ray
        except ImportError:
            raise UserError("--workers > 1 needs the Ray Train launcher (jobs/train_ray.py), not available") from None
        return int(train_with_ray(args, cfg, model_cfg) or 0)

    from dsllm.trainer.train import train

    if not storage.is_s3(args.output):
        Path(args.output).mkdir(parents=True, exist_ok=True)
    storage.write_text(storage.join(args.output, "train_config.json"), json.dumps(
        {"model": model_cfg.to_hf_dict(), "train": config_to_dict(cfg), "data": args.data,
         "resume_from": args.resume_from}, indent=2) + "\n")
    summary = train(model_cfg, cfg, args.data, args.output, args.resume_from, quiet=args.quiet)
    print(f"trained to step {summary['step']} ({summary['tokens']:,} tokens), loss {summary['loss']:.4f}; "
          f"checkpoint {summary['checkpoint']}")
    return 0
