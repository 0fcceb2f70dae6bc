"""Clean exit (issue 20.7): SIGTERM stops `dsllm curate` like Ctrl-C (exit 130, Ray shut down, a rerun
finishes), and no Ray process outlives the command, even after `kill -9`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def big_crawl(tmp_path_factory):
    """Enough pages (8,000) that the per-input phase lasts seconds (on 1,600 pages the forked
    workers finished in under a second): the tests must catch the workers and Ray running."""
    out = tmp_path_factory.mktemp("clean-exit-big") / "crawl"
    proc = run_cli("sample-crawl", str(out), "--warcs", "4", "--records", "2000")
    assert proc.returncode == 0, proc.stderr
    return out


def _start_curate(crawl, out, log, executor="ray"):
    return subprocess.Popen(
        [sys.executable, "-m", "dsllm.jobs.cli", "curate", str(crawl), "--output", str(out), "--executor", executor],
        cwd=str(ROOT),
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )


def _wait_for_ray(proc, log, timeout=120) -> dict[int, float]:
    """The command's descendants once its in-process Ray runs the per-input tasks."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "[curate/inputs] 0/4" in log.read_text():
            time.sleep(1)
            return {k.pid: k.create_time() for k in parent.children(recursive=True)}
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    raise AssertionError("Ray did not start")


def _wait_for_workers(proc, log, timeout=120) -> dict[int, float]:
    """The forked workers of `--executor local`, polled from the moment the per-input phase starts."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "[curate/inputs] 0/4" in log.read_text():
            kids = parent.children(recursive=True)
            if kids:
                time.sleep(0.2)  # a pool forks its workers one after the other
                return {k.pid: k.create_time() for k in parent.children(recursive=True)}
        assert proc.poll() is None, log.read_text()
        time.sleep(0.02)
    raise AssertionError("no worker process was started")


def _names(tracked: dict[int, float]) -> list[str]:
    names = []
    for pid in tracked:
        try:
            names.append(psutil.Process(pid).name())
        except psutil.NoSuchProcess:
            continue
    return names


def _alive(tracked: dict[int, float]) -> list[str]:
    alive = []
    for pid, created in tracked.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid}:{p.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


def _wait_gone(tracked, timeout) -> list[str]:
    deadline = time.monotonic() + timeout
    while _alive(tracked) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _alive(tracked)


@pytest.mark.slow
def test_kill_9_leaves_no_ray_process(big_crawl, tmp_path):
    proc = _start_curate(big_crawl, tmp_path / "out", tmp_path / "log")
    tracked = _wait_for_ray(proc, tmp_path / "log")
    assert {"raylet", "gcs_server", "ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= set(_names(tracked))
    proc.kill()
    proc.wait()
    # without the reaper the dashboard and runtime-env agents linger ~60 s, still listening
    assert _wait_gone(tracked, 20) == []


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_rerun_finishes(big_crawl, tmp_path):
    out = tmp_path / "out"
    proc = _start_curate(big_crawl, out, tmp_path / "log")
    tracked = _wait_for_ray(proc, tmp_path / "log")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = (tmp_path / "log").read_text()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "dsllm curate: interrupted"
    assert _wait_gone(tracked, 20) == []
    again = run_cli("curate", str(big_crawl), "--output", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(i["status"] == "done" for i in manifest["inputs"]), manifest["inputs"]


@pytest.mark.slow
def test_sigterm_stops_the_local_executor_and_leaves_no_worker(big_crawl, tmp_path):
    """`--executor local` (the default on one machine): SIGTERM ends the command with 130, its forked
    workers are gone, finished inputs keep their markers and the rerun finishes."""
    out = tmp_path / "out"
    proc = _start_curate(big_crawl, out, tmp_path / "log", executor="local")
    tracked = _wait_for_workers(proc, tmp_path / "log")
    assert tracked, "no worker process was started"
    listening = []  # no Ray, and nothing of the command listens on any port
    for pid in [proc.pid, *tracked]:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        listening += [(pid, c.laddr) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening == [] and "raylet" not in _names(tracked), listening
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = (tmp_path / "log").read_text()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "dsllm curate: interrupted"
    assert _wait_gone(tracked, 20) == []
    again = run_cli("curate", str(big_crawl), "--output", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(i["status"] == "done" for i in manifest["inputs"]), manifest["inputs"]


@pytest.mark.slow
def test_kill_9_leaves_no_local_worker(big_crawl, tmp_path):
    proc = _start_curate(big_crawl, tmp_path / "out", tmp_path / "log", executor="local")
    tracked = _wait_for_workers(proc, tmp_path / "log")
    assert tracked, "no worker process was started"
    proc.kill()
    proc.wait()
    assert _wait_gone(tracked, 20) == []
