"""Train the LLaMA-style GQA transformer on packed data.

    dsllm train --model tiny --data PACKED --output RUN [--max-steps N] [--batch-size SEQS]
    dsllm train --model 7b --data s3://b/packed --output RUN --resume-from s3://deepseek-ai/...

--device auto|cpu|cuda picks where to train (auto: CUDA when present); under torchrun the ranks join
its env:// process group (docs/gpu.md). --model is a flavor (tiny, 7b, 67b) or a JSON file of Hugging Face LlamaConfig fields; with
--resume-from and no --model, the checkpoint's config is used. --resume-from one of our runs (or a
checkpoint inside one) takes that run's resolved train config: only what this command line sets
(--config, --set, --max-steps, --batch-size) changes, and the first line says what changed. The `tiny` flavor takes the data's
vocabulary size (rounded up to a multiple of 64) so a small demo tokenizer gives a small model.
Knobs: configs/train-<flavor>.toml (or --config FILE) and --set key=value (e.g. --set
optim.lr=3e-4, --set precision=fp32, --set model.num_hidden_layers=4). Rerunning with the same
--output resumes from its latest checkpoint. --output may be s3://bucket/run: training then runs
in a local staging directory and uploads every checkpoint (and metrics.jsonl) to it, and a rerun
resumes from the S3 run's latest complete checkpoint (trainer/checkpoints/mirror.py).
"""

from __future__ import annotations

from dsllm import console
from dsllm.jobs.commands.common import add_config_flags, add_ray_flags


def add_arguments(p) -> None:
    p.add_argument(
        "--model", default=None, metavar="{tiny,7b,67b,FILE}", help="model flavor or a JSON file of LlamaConfig fields"
    )
    p.add_argument("--data", required=True, metavar="PACKED", help="packed data (local or s3://)")
    p.add_argument(
        "--output", required=True, metavar="RUN", help="run directory (metrics, checkpoints): local or s3://"
    )
    p.add_argument(
        "--resume-from",
        default=None,
        metavar="SRC",
        help="run dir, checkpoint dir, or Hugging Face model dir / S3 prefix",
    )
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps to train to")
    p.add_argument("--batch-size", type=int, default=None, metavar="SEQS", help="global batch in sequences")
    p.add_argument("--workers", type=int, default=1, help="data-parallel workers (Ray Train)")
    p.add_argument(
        "--device",
        default=None,
        choices=("auto", "cpu", "cuda"),
        help="where to train: auto (CUDA when present, the default), cpu or cuda",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_ray_flags(p)
    add_config_flags(p)


def _run_config_of(src: str | None) -> tuple[str, dict] | None:
    """(run, resolved train config) of the dsllm run that `src` names: a run directory, or a
    checkpoint directory RUN/checkpoints/step-N inside one. None for other sources (a Hugging Face
    directory, DeepSeek's published checkpoints), which carry no train config."""
    from pathlib import Path

    from dsllm import storage

    if not src:
        return None
    src = str(src).rstrip("/")
    if storage.is_remote(src):
        parts = src.split("/")
        runs = [src] + (["/".join(parts[:-2])] if len(parts) > 5 and parts[-2] == "checkpoints" else [])
    else:
        here = Path(src).resolve()
        runs = [str(here)] + ([str(here.parent.parent)] if here.parent.name == "checkpoints" else [])
    for run in runs:
        uri = storage.join(run, "train_config.json")
        if storage.exists(uri):
            record = storage.read_json(uri)
            if isinstance(record, dict) and isinstance(record.get("train"), dict):
                return run, record["train"]
    return None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _train_config(args):
    """The resolved TrainConfig. With --resume-from one of our runs (or a checkpoint in one), that
    run's own resolved config is the base and only what this command line sets changes (a note says
    what); otherwise the flavor's configs/train-<flavor>.toml (or --config FILE)."""
    from dsllm.config import CONFIG_DIR, apply_overrides, config_to_dict, from_dict, load_toml
    from dsllm.trainer.train import TrainConfig

    data: dict = {}
    run = _run_config_of(args.resume_from)
    if run is not None:
        data = run[1]
    if args.config:
        data = (
            {**data, **load_toml(args.config)}
            if run is None
            else apply_overrides(data, [f"{k}={_literal(v)}" for k, v in _flatten(load_toml(args.config)).items()])
        )
    elif run is None and args.model in ("tiny", "7b", "67b") and (CONFIG_DIR / f"train-{args.model}.toml").exists():
        data = load_toml(CONFIG_DIR / f"train-{args.model}.toml")
    flags = [f"max_steps={args.max_steps}"] if args.max_steps is not None else []
    flags += [f"device={args.device}"] if getattr(args, "device", None) else []
    flags += [f"batch_size={args.batch_size}", "batch_tokens=0"] if args.batch_size is not None else []
    cfg = from_dict(TrainConfig, apply_overrides(data, list(args.overrides) + flags))
    if run is not None and not getattr(args, "quiet", False):
        before, after = _flatten(run[1]), _flatten(config_to_dict(cfg))
        changed = [f"{k} {before.get(k)!r} -> {after[k]!r}" for k in sorted(after) if before.get(k) != after[k]]
        console.out(
            f"resuming with the train config of {run[0]}; "
            + (f"changed: {', '.join(changed)}" if changed else "nothing changed")
        )
    return cfg


def _literal(value) -> str:
    """A TOML literal for an override value (what `--set` parses)."""
    import json

    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def _model_config(args, cfg):
    from dsllm.errors import UserError
    from dsllm.trainer.config import resolve_model

    if args.model is None:
        if not args.resume_from:
            raise UserError("--model is required (tiny, 7b, 67b or a LlamaConfig JSON) unless --resume-from is given")
        from dsllm.trainer.checkpoints import hf

        base = hf.resolve_checkpoint(args.resume_from).config
        return base.replace(**cfg.model) if cfg.model else base
    model = resolve_model(args.model, cfg.model)
    if args.model == "tiny" and "vocab_size" not in cfg.model:
        from dsllm.trainer.mixture_data import open_dataset

        vocab = (open_dataset(args.data).manifest.get("tokenizer") or {}).get("vocab_size")
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
    if cfg.device == "cuda":  # fail before reading anything
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: CUDA is not available on this machine (no GPU, or a CPU-only torch)")
    _torchrun_process_group(cfg)
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
    storage.write_text(
        storage.join(args.output, "train_config.json"),
        json.dumps(
            {
                "model": model_cfg.to_hf_dict(),
                "train": config_to_dict(cfg),
                "data": args.data,
                "resume_from": args.resume_from,
            },
            indent=2,
        )
        + "\n",
    )
    summary = train(model_cfg, cfg, args.data, args.output, args.resume_from, quiet=args.quiet)
    console.out(
        f"trained to step {summary['step']} ({summary['tokens']:,} tokens), loss {summary['loss']:.4f}; "
        f"checkpoint {summary['checkpoint']}"
    )
    return 0


def _torchrun_process_group(cfg) -> None:
    """Under torchrun (WORLD_SIZE > 1 in the environment): join its env:// process group, NCCL on
    GPUs, gloo on CPUs, so `train()` runs data-parallel without Ray."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        dist.init_process_group("nccl" if gpu else "gloo", init_method="env://")
