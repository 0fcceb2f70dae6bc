"""Job submission against a real `ray start --head` of the test's own."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.cluster


def test_submit_ships_project_and_hides_secrets(ray_head):
    secret = "sEcReT-dsllm-test-key-123"
    env = {"AWS_SECRET_ACCESS_KEY": secret, "AWS_ACCESS_KEY_ID": "AKIATESTING", "DSLLM_MARKER": "m1"}
    # `plan` is not a job; `train` with no arguments fails inside the job with a usage error:
    # the job must run our code from the shipped working dir and report FAILED.
    res = run_cli("submit", "train", "--address", ray_head["dashboard"], "--wait", "--timeout", "240",
                  "--", "--help", env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().splitlines()[0]
    logs = run_cli("jobs", "logs", job_id, "--address", ray_head["dashboard"])
    assert logs.returncode == 0
    assert "dsllm job: train on the Ray cluster" in logs.stdout
    assert "usage: dsllm train" in logs.stdout  # the train command's own help ran on the cluster
    info = run_cli("jobs", "status", job_id, "--address", ray_head["dashboard"], "--json")
    assert json.loads(info.stdout)["status"] == "SUCCEEDED"
    listing = run_cli("jobs", "list", "--address", ray_head["dashboard"], "--json")
    assert job_id in listing.stdout
    # the secret travels only inside the package: not in the job's visible details or logs
    import requests

    details = requests.get(f"{ray_head['dashboard']}/api/jobs/{job_id}", timeout=10).text
    assert secret not in details and secret not in logs.stdout and secret not in listing.stdout


def test_jobs_errors_are_one_line(ray_head):
    res = run_cli("jobs", "status", "no-such-job", "--address", ray_head["dashboard"])
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "no-such-job" in res.stderr
    res = run_cli("jobs", "list", "--address", "127.0.0.1:1")
    assert res.returncode == 2 and "dashboard URL" in res.stderr
