"""`torchrun -m dsllm.jobs.cli train --set strategy=fsdp`: two ranks in torchrun's env:// process
group (gloo on CPU) sharding the model with FSDP2 compute the same losses as one process with the
same global batch, and their checkpoint (gathered to full tensors) resumes on one process and on
two to the same losses as the uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.test_train_loop import write_packed

ARGS = [
    "train",
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--batch-size",
    "8",
    "--quiet",
    "--set",
    "precision=fp32",
    "--set",
    "micro_batch_size=2",
    "--set",
    "eval_every=0",
    "--set",
    "model.num_hidden_layers=2",
    "--set",
    "checkpoint_every_steps=2",
    "--set",
    "checkpoint_every_minutes=0",
]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _run(tmp_path: Path, data: str, out: str, steps: int, ranks: int):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    cmd = [sys.executable, "-m", "dsllm.jobs.cli"]
    extra = []
    if ranks > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(ranks),
            "--master-addr",
            "127.0.0.1",
            "--master-port",
            str(port),
            "-m",
            "dsllm.jobs.cli",
        ]
        extra = ["--set", "strategy=fsdp"]
    done = subprocess.run(
        cmd + ARGS + extra + ["--data", data, "--output", str(tmp_path / out), "--max-steps", str(steps)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_fsdp_under_torchrun_matches_one_process_and_resumes_at_another_count(tmp_path):
    data = write_packed(tmp_path / "packed", rows=64, seq_len=32)
    _run(tmp_path, data, "one", 4, 1)  # the uninterrupted reference
    _run(tmp_path, data, "two", 2, 2)  # FSDP2 on 2 ranks, checkpoint at step 2
    shutil.copytree(tmp_path / "two", tmp_path / "two-then-one")
    _run(tmp_path, data, "two", 4, 2)  # 2 → 2
    _run(tmp_path, data, "two-then-one", 4, 1)  # 2 → 1
    want = _losses(tmp_path / "one")
    assert len(want) == 4
    for run in ("two", "two-then-one"):
        got = _losses(tmp_path / run)
        assert len(got) == 4 and all(abs(a - b) < 1e-5 for a, b in zip(got, want)), (run, got, want)
    assert (tmp_path / "two-then-one" / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
