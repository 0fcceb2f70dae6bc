"""No Ray process outlives the dsllm command that started it.

An in-process Ray (`ray.init()` without an address) starts a GCS, a raylet, workers, and a dashboard
and a runtime-env agent. A normal exit, Ctrl-C or SIGTERM shuts them down (`ray.shutdown()` via the
CLI). After `kill -9` of the command nothing of it runs: the GCS and raylet notice and exit, but the
agents wait about a minute on the dead GCS before they exit, still listening. The reaper is a small
watchdog process that keeps the list of the command's descendants while it lives and, once the command
is gone by any means, terminates those still running (checked by creation time, so a reused PID is
never touched).

    python -m dsllm.jobs.reaper PID      (started by `start_reaper()`)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

POLL_SECONDS = 0.5


def start_reaper(pid: int | None = None) -> subprocess.Popen:
    """Start the watchdog for `pid` (default this process), detached from its signals."""
    return subprocess.Popen(
        [sys.executable, "-m", "dsllm.jobs.reaper", str(pid or os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _descendants(proc) -> dict[int, float]:
    import psutil

    found = {}
    try:
        for child in proc.children(recursive=True):
            try:
                found[child.pid] = child.create_time()
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return found


def _running(proc) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(pid: int) -> None:
    """Record `pid`'s descendants until it exits, then end the ones still alive."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    me = os.getpid()
    seen: dict[int, float] = {}
    while _running(parent):
        seen.update(_descendants(parent))
        # the agents re-parent to init when the raylet dies first: keep what was seen
        time.sleep(POLL_SECONDS)
    victims = []
    for child_pid, created in seen.items():
        if child_pid == me:
            continue
        try:
            proc = psutil.Process(child_pid)
            if abs(proc.create_time() - created) < 1e-3 and proc.is_running():
                victims.append(proc)
        except psutil.Error:
            continue
    for proc in victims:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(victims, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":
    watch(int(sys.argv[1]))
