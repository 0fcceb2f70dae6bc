"""The in-process Ray of a dsllm command, run as a user has it (no RAY_AUTH_MODE, no
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER in the environment): every listening socket of every Ray
process is on loopback, and Ray's token authentication is on with an owner-only token file."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
import time

import psutil

from tests.conftest import ROOT, run_cli


def _is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _watch_listeners(proc: subprocess.Popen) -> tuple[dict[str, set], dict[str, str]]:
    """Poll the process tree of `proc` until it exits: {process name: {listening (ip, port)}},
    and the RAY_AUTH_MODE each Ray process was started with."""
    listening: dict[str, set] = {}
    auth: dict[str, str] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                name = p.name()
                conns = p.net_connections(kind="inet")
                auth.setdefault(name, p.environ().get("RAY_AUTH_MODE", "<unset>"))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for c in conns:
                if c.status == psutil.CONN_LISTEN:
                    listening.setdefault(name, set()).add((c.laddr.ip, c.laddr.port))
        time.sleep(0.2)
    return listening, auth


def test_curate_in_process_ray_listens_on_loopback_only_with_token_auth(tmp_path):
    crawl = tmp_path / "crawl"
    made = run_cli("sample-crawl", str(crawl), "--warcs", "1", "--records", "40")
    assert made.returncode == 0, made.stderr
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_AUTH_MODE", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")
    }
    env["HOME"] = str(home)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dsllm.jobs.cli",
            "curate",
            str(crawl),
            "--output",
            str(tmp_path / "out"),
            "--executor",
            "ray",
        ],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listening, auth = _watch_listeners(proc)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    # the observation is not vacuous: Ray's own servers were seen listening
    assert {"gcs_server", "raylet"} <= set(listening), listening
    exposed = {name: sorted(a for a in addrs if not _is_loopback(a[0])) for name, addrs in listening.items()}
    assert not any(exposed.values()), exposed
    # Ray's token auth was on in its processes, and the token is readable by its owner only
    assert auth["raylet"] == "token" and auth["gcs_server"] == "token", auth
    token = home / ".ray" / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().strip() not in out + err
