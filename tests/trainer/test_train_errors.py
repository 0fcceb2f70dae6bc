"""`dsllm train` end to end, and bad input as one clear line (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_train_loop import MODEL, cfg, write_packed  # noqa: E402  (tests/trainer is on sys.path)

from dsllm.errors import UserError
from dsllm.trainer.config import ModelConfig
from dsllm.trainer.train import train


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    return write_packed(tmp_path_factory.mktemp("packed") / "data", rows=32)


def model_file(tmp_path: Path, **changes) -> str:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(MODEL.replace(**changes).to_hf_dict()))
    return str(path)


def one_line_error(out) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsllm train: error: "), out.stderr
    return lines[0]


def test_cli_trains_and_resumes(cli, packed, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "--model",
        model_file(tmp_path),
        "--data",
        packed,
        "--output",
        str(run),
        "--batch-size",
        "4",
        "--set",
        "micro_batch_size=2",
        "--set",
        "precision=fp32",
        "--set",
        "checkpoint_every_steps=2",
    ]
    out = cli(*args, "--max-steps", "2")
    assert out.returncode == 0, out.stderr
    assert "step      2/2" in out.stderr and "tok/s" in out.stderr  # progress in the terminal
    out = cli(*args, "--max-steps", "3")  # rerun with a larger budget continues from step 2
    assert out.returncode == 0, out.stderr
    assert "resuming from" in out.stdout
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert (run / "checkpoints" / "step-00000003" / "model.safetensors").exists()
    assert json.loads((run / "train_config.json").read_text())["train"]["batch_size"] == 4


def test_cli_bad_inputs(cli, packed, tmp_path):
    base = ["--output", str(tmp_path / "r"), "--max-steps", "1"]
    msg = one_line_error(cli("train", "--model", "tiny", "--data", str(tmp_path / "nope"), *base))
    assert "nope" in msg and "manifest" in msg
    msg = one_line_error(cli("train", "--model", model_file(tmp_path, vocab_size=64), "--data", packed, *base))
    assert "vocab" in msg and "90" in msg  # the data's tokenizer has 90 ids, the model 64
    msg = one_line_error(
        cli("train", "--model", model_file(tmp_path, max_position_embeddings=16), "--data", packed, *base)
    )
    assert "sequence length 32" in msg
    msg = one_line_error(
        cli(
            "train",
            "--model",
            model_file(tmp_path),
            "--data",
            packed,
            *base,
            "--batch-size",
            "6",
            "--set",
            "micro_batch_size=4",
        )
    )
    assert "does not divide" in msg
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hidden_size": 100, "num_attention_heads": 3, "num_key_value_heads": 3}))
    msg = one_line_error(cli("train", "--model", str(bad), "--data", packed, *base))
    assert "not divisible" in msg


def test_token_ids_beyond_the_vocabulary(packed, tmp_path):
    # a manifest that under-reports its vocabulary: caught on the first batch
    lying = tmp_path / "lying"
    shutil.copytree(packed, lying)
    manifest = json.loads((lying / "manifest.json").read_text())
    manifest["tokenizer"]["vocab_size"] = 50
    (lying / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="outside the model's vocabulary"):
        train(MODEL.replace(vocab_size=64), cfg(max_steps=1), str(lying), str(tmp_path / "run"), quiet=True)


def test_nan_loss_names_the_last_good_checkpoint(packed, tmp_path):
    run = tmp_path / "run"
    train(MODEL, cfg(max_steps=2, checkpoint_every_steps=2), packed, str(run), quiet=True)
    # an absurd learning rate overflows the weights within a few steps
    with pytest.raises(UserError) as err:
        train(
            MODEL,
            cfg(max_steps=12, optim={"lr": 1e20, "grad_clip": 0.0}, checkpoint_every_steps=100),
            packed,
            str(run),
            quiet=True,
        )
    message = str(err.value)
    assert "non-finite loss or gradient at step" in message and "nan" in message
    assert str(run / "checkpoints" / "step-00000002") in message and "\n" not in message


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a tiny tmpfs")
def test_full_disk_at_checkpoint(packed, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(UserError) as err:
            train(MODEL, cfg(max_steps=1, eval_every=0), packed, str(small / "run"), quiet=True)
        assert "no space left on device" in str(err.value)
        assert not list((small / "run" / "checkpoints").glob("step-*"))  # nothing half-written published
        assert not list((small / "run" / "checkpoints").glob(".tmp-*"))
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_model_config_mismatch_on_resume(packed, tmp_path):
    run = tmp_path / "run"
    train(MODEL, cfg(max_steps=1), packed, str(run), quiet=True)
    other: ModelConfig = MODEL.replace(num_hidden_layers=3)
    with pytest.raises(UserError, match="differs from the model"):
        train(other, cfg(max_steps=2), packed, str(run), quiet=True)
