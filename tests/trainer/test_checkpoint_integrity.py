"""Bit-flipped checkpoint files are caught (issue 17.3).

Our own checkpoints (native step folders and exports) carry a `SHA256SUMS` that coreutils'
`sha256sum -c` accepts (the independent oracle); one flipped bit inside the tensor data of a saved
checkpoint makes `dsllm train --resume-from` and `dsllm eval` stop with one line naming the file
(exit 2) instead of loading wrong weights silently, which is what happens without the checksums.
On S3, an object whose stored bytes rot after upload is refused against S3's own checksum (the
MD5 ETag, or `x-amz-checksum-sha256` when the uploader asked for one), streamed or cached."""

from __future__ import annotations

import shutil
import subprocess
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
]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(packed data, native step folder, its export) of a 2-step tiny run."""
    root = tmp_path_factory.mktemp("integrity")
    data = write_packed(root / "packed", rows=32, seq_len=16)
    proc = run_cli("train", *RUN_FLAGS, "--data", data, "--output", str(root / "run"), "--max-steps", "2")
    assert proc.returncode == 0, proc.stderr
    step = root / "run" / "checkpoints" / "step-00000002"
    exp = run_cli("checkpoint", "export", str(step), "--output", str(root / "export"))
    assert exp.returncode == 0, exp.stderr
    return data, step, root / "export"


def _sha256sum_check(folder: Path) -> list[str]:
    """coreutils' verdict on the folder's SHA256SUMS: the names it checked OK."""
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sorted(line.rsplit(":", 1)[0] for line in proc.stdout.splitlines() if line.endswith(": OK"))


def _flip_tensor_bit(path: Path) -> None:
    """Flip one bit in the middle of the tensor data (after the safetensors header)."""
    blob = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(blob[:8], "little")
    pos = header + (len(blob) - header) // 2
    blob[pos] ^= 0x10
    path.write_bytes(bytes(blob))


def _copy(folder: Path, dst: Path) -> Path:
    shutil.copytree(folder, dst)
    return dst


def _one_error(proc, cmd: str) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"dsllm {cmd}: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


def test_native_and_exported_checkpoints_record_sha256_of_every_file(saved):
    _, step, export = saved
    assert _sha256sum_check(step) == ["config.json", "model.safetensors", "optimizer.pt", "trainer_state.json"]
    checked = _sha256sum_check(export)
    assert "model.safetensors" in checked and "config.json" in checked
    assert set(checked) == {p.name for p in export.iterdir() if p.is_file() and p.name != "SHA256SUMS"}


def test_flipped_bit_in_weights_is_refused_by_resume_and_eval(saved, tmp_path):
    data, step, _ = saved
    bad = _copy(step, tmp_path / "step-00000002")
    _flip_tensor_bit(bad / "model.safetensors")
    resumed = run_cli(
        "train", *RUN_FLAGS, "--data", data, "--output", str(tmp_path / "r"), "--max-steps", "3",
        "--resume-from", str(bad),
    )  # fmt: skip
    line = _one_error(resumed, "train")
    assert "model.safetensors is corrupt" in line and str(bad) in line and "SHA256SUMS" in line
    assert not (tmp_path / "r" / "checkpoints").exists()
    evaluated = run_cli("eval", "--model", str(bad), "--data", data, "--max-rows", "8")
    assert "model.safetensors is corrupt" in _one_error(evaluated, "eval")
    # the oracle agrees the file changed, and without the checksums the same flip loads silently
    blind = _copy(bad, tmp_path / "blind")
    (blind / "SHA256SUMS").unlink()
    assert run_cli("eval", "--model", str(blind), "--data", data, "--max-rows", "8").returncode == 0


def test_flipped_bit_in_optimizer_state_is_refused(saved, tmp_path):
    data, step, _ = saved
    bad = _copy(step, tmp_path / "step-00000002")
    blob = bytearray((bad / "optimizer.pt").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (bad / "optimizer.pt").write_bytes(bytes(blob))
    proc = run_cli(
        "train", *RUN_FLAGS, "--data", data, "--output", str(tmp_path / "r"), "--max-steps", "3",
        "--resume-from", str(bad),
    )  # fmt: skip
    assert "optimizer.pt is corrupt" in _one_error(proc, "train")


def test_flipped_bit_in_an_export_is_refused(saved, tmp_path):
    data, _, export = saved
    bad = _copy(export, tmp_path / "export")
    _flip_tensor_bit(bad / "model.safetensors")
    proc = run_cli("eval", "--model", str(bad), "--data", data, "--max-rows", "8")
    assert "model.safetensors is corrupt" in _one_error(proc, "eval")
    again = run_cli("checkpoint", "export", str(bad), "--output", str(tmp_path / "again"))
    assert "model.safetensors is corrupt" in _one_error(again, "checkpoint")


def _rot_at_rest(bucket: str, key: str) -> None:
    """Flip one bit of an object's bytes inside the in-process moto server, after upload: its
    stored ETag and checksum stay those of the original bytes (bit rot, not a new version)."""
    from moto.s3.models import s3_backends

    for regions in s3_backends.values():
        for backend in regions.values():
            if bucket in backend.buckets:
                obj = backend.buckets[bucket].keys[key]
                _ = obj.etag  # computed from the original bytes (already cached after the PUT)
                buf = obj._value_buffer
                buf.seek(0)
                blob = bytearray(buf.read())
                header = 8 + int.from_bytes(blob[:8], "little")
                blob[header + (len(blob) - header) // 2] ^= 0x10
                buf.seek(0)
                buf.write(bytes(blob))
                return
    raise AssertionError(f"s3://{bucket}/{key} not found in moto")


@pytest.mark.parametrize("checksum", ["etag-md5", "sha256"])
def test_object_rotting_on_s3_after_upload_is_refused(saved, s3_bucket, tmp_path, checksum):
    import boto3

    data, _, export = saved
    s3 = boto3.client("s3")
    extra = {"ChecksumAlgorithm": "SHA256"} if checksum == "sha256" else {}
    for p in export.iterdir():
        if p.name != "SHA256SUMS":  # S3's own checksum is what is checked here
            s3.put_object(Bucket=s3_bucket, Key=f"m/{p.name}", Body=p.read_bytes(), **extra)
    _rot_at_rest(s3_bucket, "m/model.safetensors")
    want = "SHA-256 checksum mismatch" if checksum == "sha256" else "MD5 checksum mismatch"
    env = {"DSLLM_CACHE": str(tmp_path / "cache")}
    for mode in ([], ["--no-stream"]):
        proc = run_cli("eval", "--model", f"s3://{s3_bucket}/m", "--data", data, "--max-rows", "8", *mode, env=env)
        line = _one_error(proc, "eval")
        assert want in line and "model.safetensors" in line, (mode, line)
    assert not list((tmp_path / "cache").rglob("model.safetensors"))  # nothing unverified in the cache
