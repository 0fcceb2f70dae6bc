"""A recognisable AWS key, secret and session token planted in the environment never appear in
what dsllm writes: stdout, stderr (progress, logs, error messages from boto), manifest.json,
stats.json, every other object of the run, the HTML report, or the logs of its in-process Ray."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.conftest import run_cli

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
    env = {"RAY_TMPDIR": ray_tmp}
    outputs = [
        run_cli("sample-crawl", f"s3://{s3_bucket}/crawl", "--warcs", "1", "--records", "40", env=env),
        run_cli("curate", f"s3://{s3_bucket}/crawl", "--output", f"s3://{s3_bucket}/out", env=env),
        run_cli("stats", f"s3://{s3_bucket}/out", "--html", str(tmp_path / "report.html"), env=env),
        run_cli("stats", f"s3://{s3_bucket}/out", "--json", env=env),
        run_cli("stats", "s3://no-such-bucket-h17/out", env=env),  # a boto error, reported
        run_cli("checkpoint", "list", f"s3://{s3_bucket}/nothing", env=env),
    ]
    try:
        assert outputs[1].returncode == 0, outputs[1].stderr[-2000:]
        assert outputs[4].returncode == 2 and "no-such-bucket-h17" in outputs[4].stderr
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
        for key in keys:
            assert not _leaks(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()), key
        files = [p for p in [*tmp_path.rglob("*"), *Path(ray_tmp).rglob("*")] if p.is_file() and not p.is_symlink()]
        assert any(p.suffix == ".log" or p.suffix in (".out", ".err") for p in files)  # Ray's logs were read
        for p in files:
            assert not _leaks(p.read_bytes()), p
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
