"""One sweep run, or one segment of a shared first stage, end to end with no Ray in sight.

    train_trunk(group_runs, trunk_dir, step, data, cfg)      → the trunk checkpoint at `step`
    run_one(spec, run_dir, data, heldout, info, cfg, branch)  → result.json's content

A run trains with `dsllm.trainer.train.train` (AdamW and the multi-step schedule over the run's own
tokens), then its last checkpoint is evaluated on the held-out split in bits per byte.
`result.json` is written last (atomically): a run with it is finished and a rerun skips it; a run
without it (killed, failed) restarts from its own latest checkpoint, or from its branch point.
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

from dsllm import storage
from dsllm.trainer.scaling.plan import RunSpec, SweepConfig

RESULT = "result.json"


def train_config(spec: RunSpec, schedule_tokens: int, max_steps: int, cfg: SweepConfig, keep_last: int):
    """The TrainConfig of a run (or of a trunk: the schedule of its longest run)."""
    from dsllm.trainer.optim import OptimConfig
    from dsllm.trainer.schedule import ScheduleConfig
    from dsllm.trainer.train import TrainConfig

    return TrainConfig(
        seed=spec.seed,
        batch_size=spec.batch_seqs,
        micro_batch_size=spec.micro_batch,
        max_steps=max_steps,
        precision=spec.precision,
        threads=cfg.threads,
        eval_every=0,
        log_every=max(1, spec.steps // 50),
        checkpoint_every_steps=0,
        checkpoint_every_minutes=cfg.checkpoint_every_minutes,
        keep_last=keep_last,
        optim=OptimConfig(lr=spec.lr),
        schedule=ScheduleConfig(warmup_steps=spec.warmup_steps, total_tokens=schedule_tokens),
    )


def checkpoint_at(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def train_trunk(runs: list[RunSpec], trunk_dir: str, step: int, data: str, cfg: SweepConfig) -> str:
    """Train the group's shared first stage up to `step` (resuming where it stopped); keep every
    checkpoint, since each is some run's branch point. Returns the checkpoint at `step`."""
    from dsllm.trainer.train import train

    target = checkpoint_at(trunk_dir, step)
    if target.exists():
        return str(target)
    longest = max(runs, key=lambda r: r.steps)
    Path(trunk_dir).mkdir(parents=True, exist_ok=True)
    storage.write_json(
        str(Path(trunk_dir) / "trunk.json"),
        {
            "runs": [r.run_id for r in runs],
            "spec": longest.to_dict(),
            "branch_steps": sorted({r.branch_step() for r in runs}),
        },
    )
    train(
        longest.model_config(),
        train_config(longest, longest.tokens, step, cfg, keep_last=0),
        data,
        trunk_dir,
        quiet=True,
    )
    if not target.exists():
        raise RuntimeError(f"{trunk_dir}: trained to step {step} but {target.name} is missing")
    _prune_trunk(trunk_dir, {r.branch_step() for r in runs} | {step})
    return str(target)


def _prune_trunk(trunk_dir: str, keep: set[int]) -> None:
    """Drop the trunk's periodic (time-based) checkpoints: only branch points are worth keeping."""
    import shutil

    for ckpt in _checkpoints(trunk_dir):
        if int(ckpt.name.split("-")[-1]) not in keep:
            shutil.rmtree(ckpt)


def run_one(
    spec: RunSpec,
    run_dir: str,
    data: str,
    heldout: str,
    info: dict,
    cfg: SweepConfig,
    branch_from: str | None = None,
    extra: dict | None = None,
) -> dict:
    """Train one run (from its branch checkpoint when it shares a first stage), evaluate it on the
    held-out split, write result.json (with `extra`, e.g. the resources the run was given).
    Skips a finished run."""
    from dsllm.trainer.train import train

    run = Path(run_dir)
    if (run / RESULT).exists():
        return json.loads((run / RESULT).read_text())
    run.mkdir(parents=True, exist_ok=True)
    storage.write_json(str(run / "spec.json"), spec.to_dict())
    start = time.perf_counter()
    resume = None if _checkpoints(run) else branch_from  # its own progress first
    summary = train(
        spec.model_config(),
        train_config(spec, spec.tokens, spec.steps, cfg, keep_last=1),
        data,
        str(run),
        resume_from=resume,
        quiet=True,
    )
    train_seconds = time.perf_counter() - start
    loss_sum, count = evaluate_heldout(spec, str(_checkpoints(run)[-1]), heldout)
    if count != info["heldout_tokens"]:
        raise RuntimeError(f"{heldout}: evaluated {count} positions, the split holds {info['heldout_tokens']}")
    from dsllm.trainer.scaling.data import bits_per_byte

    result = {
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "role": spec.role,
        "budget": spec.budget,
        "flops_per_token": spec.flops_per_token,
        "tokens": spec.tokens,
        "compute": spec.compute,
        "lr": spec.lr,
        "batch_tokens": spec.batch_seqs * spec.seq_len,
        "steps": spec.steps,
        "train_loss": summary["loss"],
        "heldout_loss": loss_sum / count,
        "heldout_bpb": bits_per_byte(loss_sum, info["heldout_bytes"]),
        "branched_from": branch_from,
        "train_seconds": round(train_seconds, 3),
        "host": platform.node(),
        **(extra or {}),
    }
    if not all(math.isfinite(result[k]) for k in ("train_loss", "heldout_loss")):
        raise RuntimeError(f"{spec.run_id}: non-finite loss {result['train_loss']} / {result['heldout_loss']}")
    storage.write_json(str(run / RESULT), result)
    return result


def _checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's complete checkpoints, oldest first (`step-N` is published only once complete)."""
    root = Path(run_dir) / "checkpoints"
    found = [p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[5:]))


def evaluate_heldout(spec: RunSpec, checkpoint: str, heldout: str) -> tuple[float, int]:
    """(sum of next-token losses in nats, predicted positions) of a run's checkpoint on the held-out
    split, in fp32 (the weights are saved under transformers' names, the model's own)."""
    import torch
    from safetensors.torch import load_file

    from dsllm.trainer.evaluate import evaluate_model
    from dsllm.trainer.model import Transformer

    model = Transformer(spec.model_config())
    state = load_file(str(Path(checkpoint) / "model.safetensors"))
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    total, count, _ = evaluate_model(model.float(), heldout, batch_size=16)
    return total, count
