"""Ray job submission: ship the project as the job's runtime environment and follow jobs.

The job runs `python -m jobs.entrypoint JOB ARGS...` on the cluster, which calls the same CLI with
`--ray-address auto` so curate and pack spread over the whole cluster.

Secrets: S3 endpoint and credentials the user has in their environment travel inside the uploaded
working-dir package (a file the entrypoint reads and deletes before anything is logged), never in
`runtime_env.env_vars`, the entrypoint string or job metadata, which the dashboard and
`ray job list` display.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from dsllm.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
JOBS = ("curate", "tokenizer", "pack", "mix", "train")
# Environment forwarded to the job (values are never printed).
FORWARDED_ENV_PREFIXES = ("AWS_", "DSLLM_", "HF_", "RAY_AUTH_MODE")
SECRET_FILE = ".dsllm_job_env.json"
EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    ".pytest_cache",
    ".hypothesis",
    "demo-run",
    "*.parquet",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.warc.gz",
    "bench/results",
    "build",
    "dist",
)


def client(address: str):
    """A JobSubmissionClient for a dashboard URL, with a clear error when nothing answers."""
    if not address.startswith(("http://", "https://")):
        raise UserError(f"--address {address}: expected the dashboard URL, e.g. http://HOST:8265")
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001 - connection failures of many kinds
        raise UserError(f"--address {address}: cannot reach the Ray dashboard ({type(exc).__name__})") from None


def _stage_working_dir(secrets: dict[str, str]) -> str:
    """Copy the project (without excludes) into a temp dir and add the secret env file."""
    stage = tempfile.mkdtemp(prefix="dsllm-job-")
    for name in ("dsllm", "curation", "tokenizer", "trainer", "jobs", "configs", "pyproject.toml"):
        src = PROJECT_ROOT / name
        if src.is_dir():
            shutil.copytree(src, os.path.join(stage, name), ignore=shutil.ignore_patterns(*EXCLUDES))
        elif src.exists():
            shutil.copy2(src, stage)
    with open(os.path.join(stage, SECRET_FILE), "w") as f:
        json.dump(secrets, f)
    os.chmod(os.path.join(stage, SECRET_FILE), 0o600)
    return stage


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}


def submit(
    job: str,
    args: list[str],
    address: str,
    pip: list[str] | None = None,
    num_cpus: float | None = None,
    submission_id: str | None = None,
) -> str:
    """Submit `dsllm JOB ARGS` to the cluster; returns the submission id."""
    if job not in JOBS:
        raise UserError(f"unknown job {job!r}; choose one of {', '.join(JOBS)}")
    cli = client(address)
    stage = _stage_working_dir(forwarded_env())
    runtime_env: dict = {"working_dir": stage}
    if pip:
        runtime_env["pip"] = list(pip)
    entrypoint = " ".join(["python", "-m", "dsllm.jobs.entrypoint", job, *map(_quote, args)])
    deadline = time.time() + 120
    try:
        while True:
            try:
                return cli.submit_job(
                    entrypoint=entrypoint,
                    runtime_env=runtime_env,
                    submission_id=submission_id,
                    entrypoint_num_cpus=num_cpus,
                    metadata={"dsllm_job": job},
                )
            except Exception as exc:  # noqa: BLE001
                # a freshly started head answers 500 until its dashboard agent is up
                if "No available agent" in str(exc) and time.time() < deadline:
                    time.sleep(2)
                    continue
                raise UserError(f"submitting {job} to {address} failed: {exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def wait(address: str, job_id: str, follow: bool = False, timeout: float | None = None, out=None) -> str:
    """Wait for a job to finish (optionally streaming its logs); returns the final status."""
    import sys

    out = out or sys.stdout
    cli = client(address)
    start = time.time()
    printed = 0
    while True:
        status = str(cli.get_job_status(job_id)).split(".")[-1]
        if follow:
            logs = cli.get_job_logs(job_id)
            if len(logs) > printed:
                out.write(logs[printed:])
                out.flush()
                printed = len(logs)
        if status in TERMINAL:
            return status
        if timeout is not None and time.time() - start > timeout:
            raise UserError(f"job {job_id} still {status} after {timeout:.0f}s")
        time.sleep(1.0)


def list_jobs(address: str) -> list[dict]:
    rows = []
    for info in client(address).list_jobs():
        rows.append(
            {
                "submission_id": info.submission_id,
                "status": str(info.status).split(".")[-1],
                "entrypoint": info.entrypoint,
                "start_time": info.start_time,
                "end_time": info.end_time,
                "message": info.message,
            }
        )
    return sorted(rows, key=lambda r: r["start_time"] or 0)


def status(address: str, job_id: str) -> dict:
    try:
        info = client(address).get_job_info(job_id)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"job {job_id}: not found on {address} ({type(exc).__name__})") from None
    return {
        "submission_id": info.submission_id,
        "status": str(info.status).split(".")[-1],
        "entrypoint": info.entrypoint,
        "message": info.message,
        "start_time": info.start_time,
        "end_time": info.end_time,
    }


def logs(address: str, job_id: str) -> str:
    try:
        return client(address).get_job_logs(job_id)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"job {job_id}: no logs on {address} ({type(exc).__name__})") from None


def stop(address: str, job_id: str) -> bool:
    try:
        return bool(client(address).stop_job(job_id))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"job {job_id}: cannot stop ({type(exc).__name__})") from None
