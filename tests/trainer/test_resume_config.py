"""`dsllm train --resume-from RUN` continues with that run's own resolved config (issue 20.3): only
what the new command line sets changes, and the first line says what changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_loop import write_packed  # noqa: E402

RUN_FLAGS = [
    "--model",
    "tiny",
    "--batch-size",
    "4",
    "--quiet",
    "--set",
    "precision=fp32",
    "--set",
    "micro_batch_size=2",
    "--set",
    "eval_every=0",
    "--set",
    "checkpoint_every_minutes=0",
    "--set",
    "checkpoint_every_steps=2",
    "--set",
    "model.num_hidden_layers=1",
    "--set",
    "optim.lr=0.005",
    "--set",
    "schedule.warmup_steps=3",
]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume-config")
    data = write_packed(root / "packed", rows=32, seq_len=16)
    run = root / "a"
    proc = run_cli("train", *RUN_FLAGS, "--data", data, "--output", str(run), "--max-steps", "2")
    assert proc.returncode == 0, proc.stderr
    return data, run


@pytest.mark.parametrize("source", ["run", "checkpoint"])
def test_resume_takes_the_runs_own_config(first_run, tmp_path, source):
    data, run = first_run
    src = run if source == "run" else run / "checkpoints" / "step-00000002"
    proc = run_cli(
        "train",
        "--data",
        data,
        "--output",
        str(tmp_path / "b"),
        "--resume-from",
        str(src),
        "--max-steps",
        "4",
        "--set",
        "keep_last=5",
    )
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("resuming with the train config of"), first
    assert "changed: keep_last 3 -> 5, max_steps 2 -> 4" in first, first
    original = json.loads((run / "train_config.json").read_text())
    resumed = json.loads((tmp_path / "b" / "train_config.json").read_text())
    assert resumed["train"] == {**original["train"], "max_steps": 4, "keep_last": 5}
    assert resumed["model"] == original["model"]  # the checkpoint's model config, not the 7B flavor's
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 4]
