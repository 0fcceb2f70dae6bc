"""`dsllm train --workers 2`: Ray Train on CPU workers (gloo), DDP or FSDP2 (`--set strategy=fsdp`),
gives the same losses as one worker with the same global batch, and the two workers' checkpoints
(native for DDP, sharded DCP for FSDP2) resume on one worker to the uninterrupted losses. Run as a
user has it, every process of the command (Ray, Ray Train's workers and their torch.distributed
rendezvous and gloo transport) listens on loopback only, and AWS credentials planted in the
environment appear nowhere it writes: the run folder, Ray's logs and its export events."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.listeners import run_watched, user_env

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "trainer"))
from test_train_loop import write_packed  # noqa: E402  (the trainer tests' PACKED builder)

COMMON = [
    "--model",
    "tiny",
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
    "checkpoint_every_minutes=0",
    "--set",
    "checkpoint_every_steps=2",
    "--set",
    "model.num_hidden_layers=2",
]

PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDH17TRAIN0",
    "AWS_SECRET_ACCESS_KEY": "plantedH17TrainSecret/Key+yyyyyyyyyyyyyyyyy",
    "AWS_SESSION_TOKEN": "plantedH17TrainSessionTokenWWWWWWWWWWWWW",
}


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_workers_match_one_and_resume_with_another_count(tmp_path):
    data = write_packed(tmp_path / "packed", rows=64, seq_len=32)
    one = run_cli("train", *COMMON, "--data", data, "--output", str(tmp_path / "r1"), "--max-steps", "4")
    assert one.returncode == 0, one.stderr
    env = user_env(tmp_path / "home", RAY_enable_export_api_write="1", **PLANTED)
    two = run_watched(
        ["train", *COMMON, "--data", data, "--output", str(tmp_path / "r2"), "--max-steps", "2", "--workers", "2"], env
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "with 2 workers" in two.stdout and "reported to Ray Train" in two.stdout
    # loopback only; not vacuous: the Ray Train workers were seen listening (rendezvous, gloo)
    assert any(name.startswith("ray::RayTrainWorker") for name in two.listening), two.listening
    assert not two.exposed(), two.exposed()
    # the planted credentials reached the workers' environment only
    ray_tmp = Path(env["RAY_TMPDIR"])
    assert list(ray_tmp.rglob("event_EXPORT_*.log"))  # Ray's export events (tasks, actors) are scanned too
    files = [p for p in [*(tmp_path / "r2").rglob("*"), *ray_tmp.rglob("*")] if p.is_file() and not p.is_symlink()]
    for p in files:
        blob = p.read_bytes()
        assert not [k for k, v in PLANTED.items() if v.encode() in blob], p
    assert not [k for k, v in PLANTED.items() if v in two.stdout + two.stderr]
    assert (tmp_path / "r2" / "checkpoints" / "step-00000002" / "model.safetensors").exists()
    # resume the 2-worker run with 1 worker: the remaining global batches are the same
    more = run_cli("train", *COMMON, "--data", data, "--output", str(tmp_path / "r2"), "--max-steps", "4")
    assert more.returncode == 0, more.stderr
    l1, l2 = _losses(tmp_path / "r1"), _losses(tmp_path / "r2")
    assert len(l1) == len(l2) == 4
    assert l1 == pytest.approx(l2, rel=1e-5, abs=1e-6)
    assert l1[-1] < l1[0]

    # FSDP2 on the two Ray workers: built on meta, sharded, sharded checkpoints at steps 2 and 4
    fsdp = run_cli(
        "train",
        *COMMON,
        "--data",
        data,
        "--output",
        str(tmp_path / "f2"),
        "--max-steps",
        "4",
        "--workers",
        "2",
        "--set",
        "strategy=fsdp",
    )
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    step2 = tmp_path / "f2" / "checkpoints" / "step-00000002"
    assert (step2 / "sharded" / "__1_0.distcp").is_file() and not (step2 / "model.safetensors").exists()
    assert _losses(tmp_path / "f2") == pytest.approx(l1, rel=1e-5, abs=1e-6)
    # the two workers' sharded step-2 checkpoint resumes on one worker
    one_more = run_cli(
        "train",
        *COMMON,
        "--data",
        data,
        "--output",
        str(tmp_path / "f1"),
        "--max-steps",
        "4",
        "--resume-from",
        str(step2),
    )
    assert one_more.returncode == 0, one_more.stderr[-3000:]
    resumed = _losses(tmp_path / "f1")
    assert len(resumed) == 2 and resumed == pytest.approx(l1[2:], rel=1e-5, abs=1e-6)
