"""`dsllm scaling sweep` / `fit` end to end on real prose, on an in-process Ray with 2 CPUs:
a sweep of tiny budgets is killed mid-way, resumed (finished runs are not trained again), fitted,
and the fit's prediction for a larger budget is printed beside the loss measured there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

SETTINGS = [
    "--set",
    'precision="fp32"',
    "--set",
    "shape.head_dim=8",
    "--set",
    "shape.aspect=16",
    "--set",
    "min_steps=4",
    "--set",
    "checkpoint_every_minutes=0.02",
]


@pytest.fixture(scope="module")
def prose(tmp_path_factory) -> Path:
    from tests.scaling_data import build_prose_packed

    return build_prose_packed(tmp_path_factory.mktemp("sweep-data"), speeches=30)


def _tagged(tag: str) -> list[int]:
    """Processes (this user's) whose environment carries DSLLM_TEST_TAG=tag: the killed sweep's
    driver and every Ray process it started (Ray's workers run in process groups of their own)."""
    out = []
    for env in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"DSLLM_TEST_TAG={tag}".encode() in env.read_bytes().split(b"\0"):
                out.append(int(env.parent.name))
        except OSError:
            continue
    return out


def _kill_all(proc: subprocess.Popen, tag: str) -> None:
    """SIGKILL the sweep's process group, then whatever of its Ray processes outlived it, by id."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while _tagged(tag) and time.time() < deadline:
        time.sleep(0.2)
    for pid in _tagged(tag):
        os.kill(pid, signal.SIGKILL)


def _results(sweep: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sweep.glob("runs/*/result.json")}


def test_sweep_resumes_after_a_kill_then_fits_and_predicts(prose, tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "scaling",
        "sweep",
        "--data",
        str(prose / "packed"),
        "--output",
        str(sweep),
        "--budgets",
        "3e9,1e10",
        "--points",
        "4",
        "--validate",
        "3e10",
        "--workers",
        "2",
        *SETTINGS,
    ]
    planned = run_cli(*args, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    lines = [line for line in planned.stdout.splitlines() if not line.startswith("#")]
    n_runs = len(lines)
    (validate,) = [line.split()[0] for line in lines if line.startswith("validate-")]
    assert any("shared" in line for line in lines) and f"# {n_runs} runs" in planned.stdout
    assert n_runs >= 7
    # a run that cannot start: a file stands where its directory goes (a real failure, kept as it is)
    (sweep / "runs").mkdir(parents=True)
    (sweep / "runs" / validate).write_text("in the way")

    # first attempt: killed (the whole process group, Ray's processes too) once some runs finished
    tag = f"sweep-{os.getpid()}-{time.time_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsllm.jobs.cli", *args],
        cwd=str(ROOT),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, DSLLM_TEST_TAG=tag),
    )
    deadline = time.time() + 240
    while len(_results(sweep)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    _kill_all(proc, tag)
    before = _results(sweep)
    assert 2 <= len(before) < n_runs, "the kill should land mid-sweep"

    resumed = run_cli(*args)
    assert resumed.returncode == 1 and f"FAILED {validate}" in resumed.stderr, resumed.stderr
    assert f"{len(before)} already finished, {n_runs - 1 - len(before)} finished now, 1 failed" in resumed.stdout
    assert all(_results(sweep)[k] == v for k, v in before.items())  # finished runs were not trained again
    (sweep / "runs" / validate).unlink()
    retried = run_cli(*args)
    assert retried.returncode == 0, retried.stderr
    assert f"{n_runs - 1} already finished, 1 finished now, 0 failed" in retried.stdout  # the failed one alone
    after = _results(sweep)
    assert len(after) == n_runs and all(after[k] == v for k, v in before.items())  # not trained again
    sharing = [json.loads(v)["branched_from"] for v in after.values()]
    assert any(sharing)  # some runs branched off a shared first stage
    for trunk in sweep.glob("trunks/*"):  # periodic checkpoints pruned: branch points remain
        kept = {int(p.name.split("-")[-1]) for p in (trunk / "checkpoints").iterdir() if p.name.startswith("step-")}
        assert kept == set(json.loads((trunk / "trunk.json").read_text())["branch_steps"])

    fit = run_cli("scaling", "fit", str(sweep), "--predict", "3e10", "--json", "--html", str(tmp_path / "fit.html"))
    assert fit.returncode == 0, fit.stderr
    doc = json.loads(fit.stdout)
    law = doc["laws"]["M_opt"]
    assert law["coefficient"] > 0 and len(law["ci"]) == 2
    assert all(b["M_opt"] for b in doc["isoflop"]), doc["isoflop"]
    pred = doc["prediction"]
    (measured,) = pred["measured"]
    assert measured["role"] == "validate" and not pred["in_fit"]
    lo, hi = pred["loss"]["ci"]
    print(
        f"\npredicted held-out loss at 3e10: {pred['loss']['value']:.4f} [{lo:.4f}, {hi:.4f}] bits/byte; "
        f"measured {measured['heldout_bpb']:.4f}"
    )
    assert 0 < lo <= pred["loss"]["value"] <= hi
    table = run_cli("scaling", "fit", str(sweep), "--predict", "3e10", "--bootstrap", "100")
    assert "measured:" in table.stdout and "M_opt" in table.stdout
    assert "<svg" in (tmp_path / "fit.html").read_text()


@pytest.mark.parametrize(
    "argv,flags",
    [
        (
            ["scaling", "sweep"],
            [
                "--data",
                "--output",
                "--budgets",
                "--points",
                "--mode",
                "--workers",
                "--ray-address",
                "--validate",
                "--laws",
                "--set",
            ],
        ),
        (["scaling", "fit"], ["SWEEP", "--predict", "--json", "--html", "--bootstrap"]),
    ],
)
def test_help_names_the_flags(argv, flags, capsys):
    from dsllm.jobs.cli import main

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    text = capsys.readouterr().out
    assert exc.value.code == 0 and not [f for f in flags if f not in text]


def test_user_errors_are_one_line(prose, tmp_path):
    cases = [
        ["--budgets", "1e9,abc"],
        ["--budgets", "-3"],
        ["--budgets", "1e9", "--points", "2"],
        ["--budgets", "1e9", "--set", "span=0.5"],
    ]
    for extra in cases:
        out = run_cli("scaling", "sweep", "--data", str(prose / "packed"), "--output", str(tmp_path / "s"), *extra)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and "error:" in out.stderr, (extra, out.stderr)
    remote = run_cli(
        "scaling", "sweep", "--data", str(prose / "packed"), "--output", "s3://bucket/sweep", "--budgets", "1e9"
    )
    assert remote.returncode == 2 and "--output s3://bucket/sweep" in remote.stderr
    missing = run_cli("scaling", "fit", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "not a sweep directory" in missing.stderr


GPU_SWEEP = """
import json, sys
import ray
ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)  # a declared GPU
from dsllm.jobs.scaling import run_sweep
from dsllm.trainer.scaling.data import split_packed
from dsllm.trainer.scaling.laws import PAPER
from dsllm.trainer.scaling.plan import Planner, ShapeRule, SweepConfig
packed, sweep = sys.argv[1], sys.argv[2]
cfg = SweepConfig(precision="fp32", min_steps=4, shape=ShapeRule(aspect=16, head_dim=8))
info = split_packed(packed, sweep + "/data")
runs = Planner.for_data(PAPER, cfg, sweep + "/data/train").plan([2e9], "isoflop", 3)
print(json.dumps(run_sweep(runs, sweep, info, cfg, log=lambda m: None)))
"""


def test_a_cluster_with_gpus_gets_one_run_per_gpu(prose, tmp_path):
    """Ray schedules each run with num_gpus=1 when the cluster has GPUs (here one declared GPU on a
    CPU machine: runs take turns on it, and torch, finding no CUDA device, trains on the CPU)."""
    out = subprocess.run(
        [sys.executable, "-c", GPU_SWEEP, str(prose / "packed"), str(tmp_path / "s")],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["failed"] == [] and summary["finished"] == summary["planned"] >= 2
    for result in _results(tmp_path / "s").values():
        assert json.loads(result)["resources"] == {"CPU": 1.0, "GPU": 1.0}
