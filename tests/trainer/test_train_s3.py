"""Runs whose home is s3:// (moto server over HTTP): upload order, pruning, resume on another machine."""

from __future__ import annotations

import json
import shutil

import pytest
from test_train_loop import MODEL, cfg, losses, write_packed  # noqa: E402  (tests/trainer is on sys.path)

from dsllm import storage
from dsllm.trainer.checkpoints import mirror as mirror_mod
from dsllm.trainer.train import train


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("packed") / "data", rows=40)


def keys(bucket: str, prefix: str = "run/") -> list[str]:
    return [f.uri.split(f"s3://{bucket}/", 1)[1] for f in storage.list_files(f"s3://{bucket}/{prefix}")]


def remote_losses(uri: str) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, storage.read_text(f"{uri}/metrics.jsonl").splitlines())]


def test_s3_run_uploads_checkpoints_and_resumes_elsewhere(packed, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("DSLLM_CACHE", str(tmp_path / "cache"))
    uploads = []
    real_upload = storage.upload_file

    def recording_upload(local, uri, *a, **kw):  # records the order, then really uploads
        uploads.append(uri.rsplit("/", 2)[-2:])
        return real_upload(local, uri, *a, **kw)

    monkeypatch.setattr(storage, "upload_file", recording_upload)
    uri = f"s3://{s3_bucket}/run"
    sched = {"warmup_steps": 2, "total_tokens": 5 * 8 * 32}
    summary = train(MODEL, cfg(max_steps=3, checkpoint_every_steps=2, schedule=sched), packed, uri, quiet=True)
    assert summary["checkpoint"] == f"{uri}/checkpoints/step-00000003"
    assert [name for step, name in uploads if step == "step-00000002"] == [
        "config.json",
        "model.safetensors",
        "optimizer.pt",
        "SHA256SUMS",
        "trainer_state.json",
    ]  # the marker last
    files = keys(s3_bucket)
    assert "run/checkpoints/step-00000003/trainer_state.json" in files
    assert "run/checkpoints/step-00000002/model.safetensors" in files  # keep_last=2
    assert [s for s, _ in remote_losses(uri)] == [1, 2, 3]

    # a crashed upload left step 4 without its marker: not a checkpoint to resume from
    storage.write_bytes(f"{uri}/checkpoints/step-00000004/model.safetensors", b"partial")
    # "another machine": no staging directory; the rerun resumes from S3's step 3
    shutil.rmtree(tmp_path / "cache")
    train(MODEL, cfg(max_steps=5, checkpoint_every_steps=2, schedule=sched), packed, uri, quiet=True)
    files = keys(s3_bucket)
    steps = sorted({k.split("/")[2] for k in files if k.startswith("run/checkpoints/")})
    assert steps == ["step-00000004", "step-00000005"]  # pruned to 2; step 4 re-published complete
    assert "run/checkpoints/step-00000004/trainer_state.json" in files
    state = json.loads(storage.read_text(f"{uri}/checkpoints/step-00000005/trainer_state.json"))
    assert state["step"] == 5 and state["data"]["sequences_consumed"] == 40

    # the same losses as an uninterrupted local run
    whole = tmp_path / "whole"
    train(MODEL, cfg(max_steps=5, checkpoint_every_steps=2, schedule=sched), packed, str(whole), quiet=True)
    assert remote_losses(uri) == losses(whole)
    assert (
        storage.read_bytes(f"{uri}/checkpoints/step-00000005/model.safetensors")
        == (whole / "checkpoints/step-00000005/model.safetensors").read_bytes()
    )


def test_cli_trains_to_s3(cli, packed, s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/clirun"
    model = tmp_path / "model.json"
    model.write_text(json.dumps(MODEL.to_hf_dict()))
    out = cli(
        "train",
        "--model",
        str(model),
        "--data",
        packed,
        "--output",
        uri,
        "--max-steps",
        "1",
        "--batch-size",
        "4",
        "--set",
        "micro_batch_size=4",
        "--set",
        "precision=fp32",
        "--quiet",
        env={"DSLLM_CACHE": str(tmp_path / "cache")},
    )
    assert out.returncode == 0, out.stderr
    assert f"{uri}/checkpoints/step-00000001" in out.stdout
    assert json.loads(storage.read_text(f"{uri}/train_config.json"))["train"]["batch_size"] == 4
    assert set(keys(s3_bucket, "clirun/checkpoints/")) == {
        f"clirun/checkpoints/step-00000001/{n}" for n in mirror_mod.UPLOAD_ORDER
    }
