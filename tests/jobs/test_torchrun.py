"""`torchrun -m dsllm.jobs.cli train --set strategy=fsdp`: two ranks in torchrun's env:// process
group (gloo on CPU) sharding the model with FSDP2 compute the same losses as one process with the
same global batch; their sharded checkpoint (torch.distributed.checkpoint, written in the
background with `async_checkpoint`) resumes on one process and on two to the same losses as the
uninterrupted run, one process's native checkpoint resumes on two FSDP2 ranks, and `dsllm checkpoint export` turns it into one safetensors model that
`transformers` loads with the weights torch's own DCP converter reads."""

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


def _run(tmp_path: Path, data: str, out: str, steps: int, ranks: int, *more: str):
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
        cmd + ARGS + extra + list(more) + ["--data", data, "--output", str(tmp_path / out), "--max-steps", str(steps)],
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
    _run(tmp_path, data, "two", 2, 2, "--set", "async_checkpoint=true")  # FSDP2 on 2 ranks, checkpoint at step 2
    step2 = tmp_path / "two" / "checkpoints" / "step-00000002"
    assert sorted(p.name for p in (step2 / "sharded").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (step2 / "model.safetensors").exists()  # no rank gathered the full model
    shutil.copytree(tmp_path / "two", tmp_path / "two-then-one")
    _run(tmp_path, data, "two", 4, 2)  # 2 → 2
    _run(tmp_path, data, "two-then-one", 4, 1)  # 2 → 1
    # 1 → 2: one process's native checkpoint into FSDP2 shards (each rank reads its rows); this run
    # asks for native checkpoints, gathered to full tensors on rank 0
    one_step2 = str(tmp_path / "one" / "checkpoints" / "step-00000002")
    _run(tmp_path, data, "one-then-two", 4, 2, "--resume-from", one_step2, "--set", "checkpoint_format=native")
    want = _losses(tmp_path / "one")
    assert len(want) == 4
    for run in ("two", "two-then-one"):
        got = _losses(tmp_path / run)
        assert len(got) == 4 and all(abs(a - b) < 1e-5 for a, b in zip(got, want)), (run, got, want)
    got = _losses(tmp_path / "one-then-two")
    assert len(got) == 2 and all(abs(a - b) < 1e-5 for a, b in zip(got, want[2:])), (got, want)
    assert (tmp_path / "one-then-two" / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
    assert (tmp_path / "two-then-one" / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
    _export_matches_torch_dcp_reader(tmp_path, tmp_path / "two" / "checkpoints" / "step-00000004")


def _export_matches_torch_dcp_reader(tmp_path: Path, step_dir: Path) -> None:
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import LlamaForCausalLM

    from tests.conftest import run_cli

    done = run_cli("checkpoint", "export", str(step_dir), "--output", str(tmp_path / "hf"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    model = LlamaForCausalLM.from_pretrained(tmp_path / "hf")
    dcp_to_torch_save(step_dir / "sharded", tmp_path / "full.pt")  # torch's reader, an independent one
    full = torch.load(tmp_path / "full.pt", weights_only=True)["model"]
    got = model.state_dict()
    assert set(full) == {n for n in got if "rotary" not in n}
    for name, want in full.items():
        assert torch.equal(got[name], want), name
