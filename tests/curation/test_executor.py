"""The forked executor (`dsllm curate`'s default on one machine) survives a worker that dies, as
Ray does: the unfinished tasks run again in a new pool (up to 3 times), finished results are kept,
a task's own exception is not retried. The workers here are real forked processes killed with a
real SIGKILL; the end-to-end case kills a worker of a running `dsllm curate` and compares its
shards with an undisturbed run's."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dsllm.curation.executor import ProcessExecutor


def _attempts(marker: Path) -> int:
    with marker.open("a") as f:
        f.write(".")
    return len(marker.read_text())


def die_first_time(arg):
    item, marker_dir = arg
    if item == 3 and _attempts(Path(marker_dir) / "3") == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)
    return item * item


def always_die(arg):
    item, marker_dir = arg
    _attempts(Path(marker_dir) / f"die-{item}")
    if item == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return item


def raise_once(arg):
    item, marker_dir = arg
    _attempts(Path(marker_dir) / f"raise-{item}")
    if item == 2:
        raise ValueError("bad item 2")
    return item


def test_a_killed_worker_s_tasks_run_again_and_results_keep_their_order(tmp_path):
    ex = ProcessExecutor(2, quiet=True)
    try:
        got = ex.map(die_first_time, [(i, str(tmp_path)) for i in range(8)])
        assert got == [i * i for i in range(8)]
        assert ex.retries == 1
        assert len((tmp_path / "3").read_text()) == 2  # the killed task ran twice
        assert ex.map(die_first_time, [(i, str(tmp_path)) for i in range(4)]) == [0, 1, 4, 9]  # a new pool works
    finally:
        ex.close()


def test_a_task_that_always_kills_its_worker_fails_after_three_retries(tmp_path):
    ex = ProcessExecutor(2, quiet=True)
    try:
        with pytest.raises(RuntimeError, match="a worker process died 4 times"):
            ex.map(always_die, [(i, str(tmp_path)) for i in range(3)], label="test")
        assert len((tmp_path / "die-1").read_text()) == 4  # the first run and 3 retries
    finally:
        ex.close()


def test_a_task_s_exception_is_not_retried(tmp_path):
    ex = ProcessExecutor(2, quiet=True)
    try:
        with pytest.raises(ValueError, match="bad item 2"):
            ex.map(raise_once, [(i, str(tmp_path)) for i in range(4)])
        assert len((tmp_path / "raise-2").read_text()) == 1
        assert ex.retries == 0
    finally:
        ex.close()


def _shards(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("part-*.parquet"))}


def test_curate_finishes_with_the_same_shards_after_a_worker_is_killed(tmp_path):
    from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl

    crawl = tmp_path / "crawl"
    write_sample_crawl(str(crawl), SampleCrawlConfig(warcs=6, records=120, seed=3))
    cmd = [sys.executable, "-m", "dsllm.jobs.cli", "curate", str(crawl), "--workers", "2", "-o"]
    clean = subprocess.run(cmd + [str(tmp_path / "clean")], capture_output=True, text=True, timeout=600)
    assert clean.returncode == 0, clean.stderr[-2000:]

    proc = subprocess.Popen(cmd + [str(tmp_path / "killed")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and proc.poll() is None and time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children()
        if children:
            killed = children[0].pid
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    out, err = proc.communicate(timeout=600)
    assert killed is not None, "the run ended before a worker could be killed"
    assert proc.returncode == 0, err[-2000:]
    assert "a worker process died" in err and "running the" in err
    assert _shards(tmp_path / "killed") == _shards(tmp_path / "clean") != {}
