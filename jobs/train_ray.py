"""`dsllm train --workers N`: data-parallel training with Ray Train's TorchTrainer.

Ray Train starts N workers and their torch.distributed process group (gloo on CPUs, NCCL on GPUs:
with `--device auto` (the default) or `cuda` and GPUs in the cluster, each worker takes one GPU; on
the in-process Ray of one machine the group listens on 127.0.0.1 only, jobs/loopback_pg.py);
each worker runs the same `trainer.train.train` loop, which asks `trainer.parallelize` for DDP (or
FSDP2 with `--set strategy=fsdp`) and reads its own slice of every global batch, so N workers see
the same global batches as one (the data order of trainer/data.py). Checkpoints are written by rank
0 into RUN/checkpoints and reported to Ray Train as they are published; with `FailureConfig`, a
worker failure restarts the group, which resumes from the latest checkpoint in RUN.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dsllm import console
from dsllm.errors import UserError


def _worker_loop(config: dict) -> None:
    """Runs on every Ray Train worker."""
    import ray
    import ray.train
    import torch

    from dsllm.config import from_dict
    from dsllm.trainer.config import ModelConfig
    from dsllm.trainer.train import TrainConfig, train

    os.environ.update(ray.get(config["env"]))  # S3 endpoint and credentials, from the object store
    torch.set_num_threads(max(1, config["threads_per_worker"]))
    model_cfg = ModelConfig.from_hf_dict(config["model"])
    cfg = from_dict(TrainConfig, config["train"])
    rank = ray.train.get_context().get_world_rank()

    summary = train(
        model_cfg, cfg, config["data"], config["run_dir"], config["resume_from"], quiet=config["quiet"] or rank != 0
    )
    # ray.train.report is a collective in Ray Train 2: every rank calls it the same number of times,
    # so the run's final checkpoint is reported once at the end (rank 0 attaches it). Checkpoints
    # written during the run stay in RUN/checkpoints, where a restarted group resumes from.
    metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    ckpt = summary.get("checkpoint") if rank == 0 else None
    ckpt = ckpt if ckpt and os.path.isdir(ckpt) else None  # an s3:// run's checkpoints live on S3
    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(ckpt) if ckpt else None)


def train_with_ray(args, cfg, model_cfg) -> int:
    """Launch `--workers N` training on the in-process Ray or the cluster at --ray-address."""
    from dsllm.config import config_to_dict
    from dsllm.jobs.runner import RayExecutor, require_shared_path, task_env

    address = getattr(args, "ray_address", None) or os.environ.get("DSLLM_RAY_ADDRESS")
    RayExecutor.start(address, quiet=True)
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    require_shared_path(args.output, "--output")
    require_shared_path(args.data, "--data")
    cpus = int(ray.cluster_resources().get("CPU", 1))
    use_gpu = bool(ray.cluster_resources().get("GPU", 0)) and cfg.device != "cpu"  # one GPU per worker
    if cfg.device == "cuda" and not use_gpu:
        raise UserError(f"--device cuda: the Ray cluster has no GPUs for --workers {args.workers}")
    if not use_gpu and args.workers > cpus:
        raise UserError(f"--workers {args.workers}: the Ray cluster has only {cpus} CPUs")
    from dsllm import storage

    # an s3:// run is staged locally by each rank and mirrored to S3 (trainer/checkpoints/mirror.py)
    run_dir = args.output if storage.is_remote(args.output) else str(Path(args.output).resolve())
    ray_dir = (
        (
            Path(os.environ.get("DSLLM_CACHE", Path.home() / ".cache" / "dsllm"))
            / "ray-train"
            / hashlib.sha1(run_dir.encode()).hexdigest()[:16]
        )
        if storage.is_remote(run_dir)
        else Path(run_dir) / "ray"
    )
    storage.write_json(
        storage.join(run_dir, "train_config.json"),
        {
            "model": model_cfg.to_hf_dict(),
            "train": config_to_dict(cfg),
            "data": args.data,
            "resume_from": args.resume_from,
            "workers": args.workers,
        },
    )
    loop_config = {
        "model": model_cfg.to_hf_dict(),
        "train": config_to_dict(cfg),
        "data": args.data,
        "run_dir": run_dir,
        "resume_from": args.resume_from,
        "quiet": bool(args.quiet),
        # through the object store: Ray Train records train_loop_config in its run state (the
        # dashboard's train runs, export events), which must not carry credentials
        "env": ray.put(task_env()),
        "threads_per_worker": max(1, cpus // args.workers) if not use_gpu else 4,
    }
    backend = "nccl" if use_gpu else "gloo"
    if address:  # a cluster: ranks on other nodes reach rank 0 over the network (Ray Train's set-up)
        torch_config = TorchConfig(backend=backend)
    else:  # the in-process Ray on this machine: the process group listens on 127.0.0.1 only
        from dsllm.jobs.loopback_pg import LoopbackTorchConfig

        torch_config = LoopbackTorchConfig(backend=backend)
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=loop_config,
        torch_config=torch_config,
        scaling_config=ScalingConfig(
            num_workers=args.workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": max(1, cpus // args.workers)} if not use_gpu else None,
        ),
        run_config=RunConfig(
            name="ray-train",
            storage_path=str(ray_dir),
            failure_config=FailureConfig(max_failures=int(os.environ.get("DSLLM_MAX_FAILURES", "2"))),
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:  # noqa: BLE001 - surface the worker's own user error as one line
        msg = str(exc)
        for line in msg.splitlines()[::-1]:
            if "UserError" in line:
                raise UserError(line.split("UserError:", 1)[-1].strip()) from None
        raise
    if result.error is not None:
        raise result.error
    metrics_uri = storage.join(run_dir, "metrics.jsonl")
    lines = storage.read_text(metrics_uri).splitlines() if storage.exists(metrics_uri) else []
    last = json.loads(lines[-1]) if lines else {}
    console.out(
        f"trained to step {last.get('step')} ({int(last.get('tokens', 0)):,} tokens) with {args.workers} "
        f"workers, loss {last.get('loss', float('nan')):.4f}; checkpoints in {storage.join(run_dir, 'checkpoints')}"
        + (f"; reported to Ray Train: {result.checkpoint.path}" if result.checkpoint else "")
    )
    return 0
