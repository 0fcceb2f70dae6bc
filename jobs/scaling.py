"""Scaling-law sweeps on Ray: every run (and every shared first-stage segment) is a Ray task
with its own resources (`threads` CPUs, one GPU when the cluster has GPUs).

    summary = run_sweep(runs, "SWEEP", "PACKED", cfg, address=None, workers=2)

SWEEP/
  sweep.json                 the planned runs of every invocation (union) and the sweep's config
  data/train, data/heldout   the split (trainer/scaling/data.py); data/heldout.json its bytes
  trunks/KEY/                a shared first stage: checkpoints at every branch step
  runs/RUN_ID/               spec.json, metrics.jsonl, checkpoints/, result.json (last), error.txt
A rerun of the same command skips finished runs (result.json) and retries the others alone,
each from its own latest checkpoint (or its branch point).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from dsllm import console, storage
from dsllm.config import config_to_dict
from dsllm.trainer.scaling.execute import RESULT, run_one, train_trunk
from dsllm.trainer.scaling.plan import RunSpec, SweepConfig, share_groups


def _trunk_task(
    env: dict, runs: list[RunSpec], trunk_dir: str, step: int, data: str, cfg: SweepConfig, after=None
) -> str:
    """`after`: the previous segment's checkpoint (a Ray dependency that orders the segments)."""
    os.environ.update(env)
    return train_trunk(runs, trunk_dir, step, data, cfg)


def _run_task(
    env: dict,
    spec: RunSpec,
    run_dir: str,
    data: str,
    heldout: str,
    info: dict,
    cfg: SweepConfig,
    branch_from: str | None,
) -> dict:
    import ray

    os.environ.update(env)
    resources = ray.get_runtime_context().get_assigned_resources()  # e.g. {"CPU": 1.0, "GPU": 1.0}
    return run_one(spec, run_dir, data, heldout, info, cfg, branch_from, extra={"resources": resources})


def record_plan(sweep: Path, runs: list[RunSpec], cfg: SweepConfig, data: str) -> None:
    """Add this invocation's runs to SWEEP/sweep.json (what `fit` reports as planned)."""
    path = sweep / "sweep.json"
    known = storage.read_json(str(path)) if path.exists() else {"data": data, "runs": {}}
    for r in runs:
        known["runs"][r.run_id] = r.to_dict()
    known["config"] = config_to_dict(cfg)
    storage.write_json(str(path), known)


def _gpus(ray, cfg: SweepConfig) -> int:
    if cfg.gpus_per_run >= 0:
        return cfg.gpus_per_run
    return 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0


def submit(ray, runs: list[RunSpec], sweep: Path, paths: dict, info: dict, cfg: SweepConfig) -> dict:
    """Submit the unfinished runs (and the trunk segments they branch from); {ref: spec}."""
    from dsllm.jobs.runner import task_env

    gpus = _gpus(ray, cfg)
    trunk = ray.remote(num_cpus=cfg.threads, num_gpus=gpus, max_retries=0)(_trunk_task)
    one = ray.remote(num_cpus=cfg.threads, num_gpus=gpus, max_retries=0)(_run_task)
    env = ray.put(task_env())
    refs = {}
    for group in share_groups(runs, cfg.share_first_stage):
        todo = [r for r in group.runs if not (sweep / "runs" / r.run_id / RESULT).exists()]
        segments: dict[int, object] = {}
        if group.shared and todo:
            previous = None
            for step in sorted({r.branch_step() for r in todo}):
                previous = trunk.remote(
                    env, group.runs, str(sweep / "trunks" / group.key), step, paths["train"], cfg, previous
                )
                segments[step] = previous
        for r in todo:
            branch = segments.get(r.branch_step()) if group.shared else None
            refs[
                one.remote(env, r, str(sweep / "runs" / r.run_id), paths["train"], paths["heldout"], info, cfg, branch)
            ] = r
    return refs


def _last_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _record_error(run_dir: Path, exc: Exception, log) -> None:
    """RUN/error.txt (what failed); a run directory that cannot hold it is only logged."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text("".join(traceback.format_exception_only(type(exc), exc)))
    except OSError as err:
        log(f"  (could not write {run_dir}/error.txt: {err})")


def run_sweep(
    runs: list[RunSpec],
    sweep_dir: str,
    info: dict,
    cfg: SweepConfig,
    address: str | None = None,
    workers: int = 1,
    log=None,
) -> dict:
    """Run every unfinished run of the plan; returns {"planned", "skipped", "finished", "failed"}."""
    from dsllm.jobs.runner import init_ray, require_shared_path

    log = log or console.note
    sweep = Path(sweep_dir)
    paths = {"train": str(sweep / "data" / "train"), "heldout": str(sweep / "data" / "heldout")}
    init_ray(address, num_cpus=None if address else workers * cfg.threads)
    import ray

    require_shared_path(str(sweep), "--output")  # every node reads the split and writes its runs there
    skipped = sum((sweep / "runs" / r.run_id / RESULT).exists() for r in runs)
    refs = submit(ray, runs, sweep, paths, info, cfg)
    log(f"{len(runs)} runs planned, {skipped} finished before, {len(refs)} to run")
    finished, failed, start = 0, [], time.time()
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        spec = refs[ready[0]]
        run_dir = sweep / "runs" / spec.run_id
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 - a failed run is recorded and retried by the next run
            failed.append(spec.run_id)
            log(f"  FAILED {spec.run_id}: {_last_line(exc)}")
            _record_error(run_dir, exc, log)
            continue
        (run_dir / "error.txt").unlink(missing_ok=True)
        finished += 1
        log(
            f"  [{finished + len(failed)}/{len(refs)}] {spec.run_id}: held-out {result['heldout_bpb']:.4f} "
            f"bits/byte ({result['train_seconds']:.1f}s, {time.time() - start:.0f}s elapsed)"
        )
    return {"planned": len(runs), "skipped": skipped, "finished": finished, "failed": failed}
