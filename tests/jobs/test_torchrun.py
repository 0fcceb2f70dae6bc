"""`torchrun -m dsllm.jobs.cli train`: two ranks in torchrun's env:// process group (gloo on CPU)
compute the same losses as one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.test_train_loop import write_packed

ARGS = ["train", "--model", "tiny", "--device", "cpu", "--max-steps", "2", "--batch-size", "8", "--quiet",
        "--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "eval_every=0",
        "--set", "model.num_hidden_layers=2"]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path):
    data = write_packed(tmp_path / "packed", rows=64, seq_len=32)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "dsllm.jobs.cli"]
    two = subprocess.run(torchrun + ARGS + ["--data", data, "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "dsllm.jobs.cli"] + ARGS + ["--data", data, "--output",
                         str(tmp_path / "one")], capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == 2 and all(abs(x - y) < 1e-5 for x, y in zip(a, b)), (a, b)
