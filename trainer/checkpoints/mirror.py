"""Runs whose home is on S3 (`dsllm train --output s3://bucket/run`).

Training writes into a local staging directory (under `$DSLLM_CACHE`, default `~/.cache/dsllm`,
keyed by the URI and the worker's rank); every checkpoint the trainer publishes there is uploaded
to `s3://bucket/run/checkpoints/step-N/` file by file, `trainer_state.json` last, so a step folder
on S3 counts as complete only once that file is there; `metrics.jsonl` follows each checkpoint.
The S3 run is the source of truth: before training, the staging directory is reset to the S3
run's latest complete checkpoint (downloaded unless already staged) and its `metrics.jsonl`, so a
rerun on any machine resumes where the S3 run stopped. Older checkpoints on S3 are pruned to the
run's keep-last-K, as locally.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from dsllm import storage
from dsllm.trainer.checkpoints.native import STEP_DIR, list_checkpoints, step_dir_name

FILES = ("config.json", "model.safetensors", "optimizer.pt", "trainer_state.json")  # a complete step
OPTIONAL = ("SHA256SUMS",)  # uploaded when present (checkpoints written before it have none)
UPLOAD_ORDER = ("config.json", "model.safetensors", "optimizer.pt", "SHA256SUMS", "trainer_state.json")
MARKER = "trainer_state.json"


def staging_dir(uri: str, rank: int = 0) -> Path:
    """The local directory a run at `uri` trains in."""
    root = Path(os.environ.get("DSLLM_CACHE", Path.home() / ".cache" / "dsllm"))
    key = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    return root / "train-staging" / f"{key}-rank{rank}"


class RunMirror:
    """Keeps the S3 run at `uri` in step with the local staging run directory `local`."""

    def __init__(self, uri: str, local: str | Path, keep_last: int):
        self.uri, self.local, self.keep_last = uri.rstrip("/"), Path(local), keep_last

    def remote_steps(self) -> dict[int, set[str]]:
        """step → the file names present in the S3 run's `checkpoints/step-N/`."""
        steps: dict[int, set[str]] = {}
        base = storage.join(self.uri, "checkpoints") + "/"
        for f in storage.list_files(storage.join(self.uri, "checkpoints")):
            parts = f.uri[len(base) :].split("/")
            if len(parts) == 2 and (m := STEP_DIR.match(parts[0])):
                steps.setdefault(int(m.group(1)), set()).add(parts[1])
        return steps

    def complete_steps(self) -> list[int]:
        return sorted(s for s, names in self.remote_steps().items() if set(FILES) <= names)

    def pull(self) -> int | None:
        """Reset the staging run to the S3 run's latest complete checkpoint and metrics; its step."""
        complete = self.complete_steps()
        latest = complete[-1] if complete else None
        for path in list_checkpoints(self.local):
            if latest is None or path.name != step_dir_name(latest):
                shutil.rmtree(path)
        ckdir = self.local / "checkpoints"
        if latest is not None and not (ckdir / step_dir_name(latest) / MARKER).is_file():
            tmp = ckdir / f".tmp-{step_dir_name(latest)}-pull-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            present = self.remote_steps().get(latest, set())
            for name in FILES + tuple(n for n in OPTIONAL if n in present):
                storage.download(self._remote(latest, name), str(tmp / name))
            os.replace(tmp, ckdir / step_dir_name(latest))
        metrics = self.local / "metrics.jsonl"
        remote_metrics = storage.join(self.uri, "metrics.jsonl")
        if latest is not None and storage.exists(remote_metrics):
            storage.download(remote_metrics, str(metrics))
        elif metrics.exists():
            metrics.unlink()
        return latest

    def push(self, step: int, path: str | Path) -> None:
        """Upload a published local checkpoint (marker last), then metrics.jsonl; prune old steps."""
        path = Path(path)
        marker = self._remote(step, MARKER)
        if storage.exists(marker):  # a rerun re-publishing this step: incomplete while replaced
            storage.remove(marker)
        for name in UPLOAD_ORDER:
            if name in FILES or (path / name).is_file():
                storage.upload_file(str(path / name), self._remote(step, name))
        self.push_file("metrics.jsonl")
        self._prune(step)

    def push_file(self, name: str) -> None:
        """Upload one file of the run directory (metrics.jsonl, train_config.json) if present."""
        src = self.local / name
        if src.is_file():
            storage.write_bytes(storage.join(self.uri, name), src.read_bytes())

    def _remote(self, step: int, name: str) -> str:
        return storage.join(self.uri, "checkpoints", step_dir_name(step), name)

    def _prune(self, newest: int) -> None:
        steps = self.remote_steps()
        complete = sorted(s for s, names in steps.items() if set(FILES) <= names)
        keep = set(complete[-self.keep_last :]) if self.keep_last > 0 else set(complete)
        for step, names in steps.items():
            if step in keep or step > newest:
                continue
            for name in sorted(names, key=lambda n: n != MARKER):  # marker first: incomplete at once
                storage.remove(self._remote(step, name))
