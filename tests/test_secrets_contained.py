"""A recognisable AWS key, secret and session token planted in the environment never appear in
what dsllm writes: stdout, stderr (progress, logs, error messages from boto, errors naming a
presigned URL), manifest.json, stats.json, every other object of the run, the HTML report, a
training run's checkpoints (config.json, trainer_state.json, SHA256SUMS), its train_config.json and
metrics, or the logs of its in-process Ray."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from tests.conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent / "trainer"))
from test_train_loop import write_packed  # noqa: E402

PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDH17KEY000",
    "AWS_SECRET_ACCESS_KEY": "plantedH17Secret/Key+zzzzzzzzzzzzzzzzzzzzz",
    "AWS_SESSION_TOKEN": "plantedH17SessionTokenQQQQQQQQQQQQQQQQ",
}


def _leaks(blob: bytes) -> list[str]:
    return [k for k, v in PLANTED.items() if v.encode() in blob]


def test_planted_credentials_never_leave_the_credential_chain(s3_bucket, tmp_path, monkeypatch):
    for k, v in PLANTED.items():
        monkeypatch.setenv(k, v)
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {"RAY_TMPDIR": ray_tmp, "DSLLM_CACHE": str(tmp_path / "cache")}  # an S3 run stages under the cache
    import boto3
    from botocore.config import Config

    # presigned URLs made with the planted credentials (SigV4 and the older SigV2), of objects that
    # are not there: the errors name the URL
    presigned = [
        boto3.client("s3", config=Config(signature_version=v)).generate_presigned_url(
            "get_object", Params={"Bucket": s3_bucket, "Key": f"crawl/missing-{v}.warc.gz"}, ExpiresIn=600
        )
        for v in ("s3v4", "s3")
    ]
    assert PLANTED["AWS_SESSION_TOKEN"] in presigned[0] and PLANTED["AWS_ACCESS_KEY_ID"] in presigned[1]
    data = write_packed(tmp_path / "packed", rows=16, seq_len=16)
    train = [
        "train", "--model", "tiny", "--batch-size", "4", "--quiet", "--data", data, "--max-steps", "2",
        "--set", "precision=fp32", "--set", "micro_batch_size=2", "--set", "eval_every=0",
        "--set", "checkpoint_every_minutes=0", "--set", "checkpoint_every_steps=2",
        "--set", "model.num_hidden_layers=1",
    ]  # fmt: skip
    outputs = [
        run_cli("sample-crawl", f"s3://{s3_bucket}/crawl", "--warcs", "1", "--records", "40", env=env),
        run_cli(
            "curate", f"s3://{s3_bucket}/crawl", "--output", f"s3://{s3_bucket}/out", "--executor", "ray", env=env
        ),  # Ray logs too
        run_cli("stats", f"s3://{s3_bucket}/out", "--html", str(tmp_path / "report.html"), env=env),
        run_cli("stats", f"s3://{s3_bucket}/out", "--json", env=env),
        run_cli("stats", "s3://no-such-bucket-h17/out", env=env),  # a boto error, reported
        run_cli("checkpoint", "list", f"s3://{s3_bucket}/nothing", env=env),
        run_cli("curate", *presigned, "--output", f"s3://{s3_bucket}/presigned", env=env),
        run_cli("stats", presigned[0], env=env),
        run_cli(*train, "--output", f"s3://{s3_bucket}/run", env=env),
        run_cli("eval", "--model", f"s3://{s3_bucket}/run", "--data", data, "--max-rows", "4", env=env),
    ]
    try:
        assert outputs[1].returncode == 0, outputs[1].stderr[-2000:]
        assert outputs[4].returncode == 2 and "no-such-bucket-h17" in outputs[4].stderr
        # the presigned URLs were named in the errors, their credentials redacted
        assert outputs[6].returncode == 1 and "missing-s3v4.warc.gz" in outputs[6].stderr, outputs[6].stderr
        assert "X-Amz-Signature=REDACTED" in outputs[6].stderr and "Signature=REDACTED" in outputs[6].stderr
        assert outputs[7].returncode == 2 and "X-Amz-Credential=REDACTED" in outputs[7].stderr
        assert outputs[8].returncode == 0, outputs[8].stderr[-2000:]
        assert outputs[9].returncode == 0, outputs[9].stderr[-2000:]
        for proc in outputs:
            assert not _leaks((proc.stdout + proc.stderr).encode()), proc.args
        import boto3

        s3 = boto3.client("s3")
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket)
            for o in page.get("Contents", [])
        ]
        assert any(k.endswith("manifest.json") for k in keys) and any(k.endswith("stats.json") for k in keys)
        for name in ("train_config.json", "step-00000002/config.json", "step-00000002/trainer_state.json"):
            assert any(k.endswith(name) for k in keys), name  # the training run's files were read
        for key in keys:
            assert not _leaks(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()), key
        files = [p for p in [*tmp_path.rglob("*"), *Path(ray_tmp).rglob("*")] if p.is_file() and not p.is_symlink()]
        assert any(p.suffix == ".log" or p.suffix in (".out", ".err") for p in files)  # Ray's logs were read
        for p in files:
            assert not _leaks(p.read_bytes()), p
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
