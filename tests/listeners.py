"""Watch which sockets a dsllm command's process tree listens on while it runs (psutil).

env = user_env(tmp_path / "home")       # as a user has it: no RAY_AUTH_MODE, no Ray network flags
run = run_watched(["curate", CRAWL, "--output", OUT], env)
assert run.returncode == 0 and not exposed(run.listening)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tests.conftest import ROOT


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def user_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The test's environment without the Ray settings the test suite adds (auth off, loopback
    flag), with a short RAY_TMPDIR of its own (socket path limit) and, when given, its own HOME
    (where Ray keeps its token file)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")
    }
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rl", dir="/tmp")
    env.update(extra)
    return env


@dataclasses.dataclass
class Watched:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    listening: dict[str, set]  # process name (cmdline head for Ray workers) -> {(ip, port)}
    auth: dict[str, str]  # process name -> RAY_AUTH_MODE in its environment

    def exposed(self) -> dict[str, list]:
        """Every listening address that is not loopback, by process."""
        found = {n: sorted(a for a in addrs if not is_loopback(a[0])) for n, addrs in self.listening.items()}
        return {n: a for n, a in found.items() if a}


def _name(p: psutil.Process) -> str:
    name = p.name()
    if name.startswith("ray::") or name in ("python", "python3"):
        cmd = p.cmdline()
        if cmd and cmd[0].startswith("ray::"):  # Ray workers rename themselves (ray::RayTrainWorker...)
            return cmd[0].split()[0]
    return name


def run_watched(argv: list[str], env: dict[str, str], timeout: int = 900) -> Watched:
    """Run `dsllm ARGV`, polling its whole process tree every 0.1 s until it exits."""
    args = [sys.executable, "-m", "dsllm.jobs.cli", *argv]
    proc = subprocess.Popen(args, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listening: dict[str, set] = {}
    auth: dict[str, str] = {}
    out: dict[str, str] = {}
    reader = threading.Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate(timeout=timeout))))
    reader.start()
    root = psutil.Process(proc.pid)
    try:
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in tree:
                try:
                    name = _name(p)
                    conns = p.net_connections(kind="inet")
                    auth.setdefault(name, p.environ().get("RAY_AUTH_MODE", "<unset>"))
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                for c in conns:
                    if c.status == psutil.CONN_LISTEN:
                        listening.setdefault(name, set()).add((c.laddr.ip, c.laddr.port))
            time.sleep(0.1)
        reader.join(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join()
    return Watched(args, proc.returncode, out.get("stdout", ""), out.get("stderr", ""), listening, auth)
