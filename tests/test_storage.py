"""dsllm/storage.py against real servers: local files, moto's S3 server over HTTP (directly and
through a requester-pays proxy), and HTTP servers of our own on 127.0.0.1 (one that drops the
connection mid-body and supports Range, one that answers 503 before it answers)."""

from __future__ import annotations

import glob
import http.server
import os
import re
import socket
import tempfile
import threading

import pytest

from dsllm import storage
from dsllm.errors import UserError

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEYDONOTPRINT"


# ---------------------------------------------------------------- local


def _tree(root):
    for rel, data in {"a.txt": b"1", "sub/b.txt": b"22", "sub/deep/c.bin": b"333", "d.txt": b"4444"}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_list_files_local_dir_glob_file_and_missing(tmp_path):
    _tree(tmp_path)
    got = storage.list_files(str(tmp_path))
    assert [os.path.relpath(f.uri, tmp_path) for f in got] == ["a.txt", "d.txt", "sub/b.txt", "sub/deep/c.bin"]
    assert [f.size for f in got] == [1, 4, 2, 3]
    assert [os.path.basename(f.uri) for f in storage.list_files(str(tmp_path / "*.txt"))] == ["a.txt", "d.txt"]
    assert [os.path.basename(f.uri) for f in storage.list_files(str(tmp_path / "**" / "*.txt"))] == [
        "a.txt",
        "d.txt",
        "b.txt",
    ]
    assert [f.uri for f in storage.list_files(str(tmp_path / "d.txt"))] == [str(tmp_path / "d.txt")]
    assert storage.list_files(str(tmp_path / "nope")) == []
    assert storage.list_files(str(tmp_path / "nope*")) == []


def test_local_atomic_write_publishes_only_on_success(tmp_path):
    target = tmp_path / "out" / "f.bin"
    storage.write_bytes(str(target), b"old")
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(RuntimeError):
        with storage.atomic_write(str(target)) as f:
            f.write(b"new partial")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["f.bin"]  # no temporary file left behind
    with storage.atomic_write(str(tmp_path / "fresh.bin")) as f:
        f.write(b"x")
        assert not (tmp_path / "fresh.bin").exists()  # invisible until the block completes
    assert (tmp_path / "fresh.bin").read_bytes() == b"x"


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_local_errors_are_one_line_user_errors(tmp_path):
    for call, needle in (
        (lambda: storage.read_bytes(str(tmp_path / "missing")), "no such file"),
        (lambda: storage.read_bytes(str(tmp_path)), "is a directory"),
        (lambda: storage.stat(str(tmp_path / "missing")), "no such file"),
        (lambda: storage.open_random(str(tmp_path / "missing")), "no such file"),
        (lambda: storage.open_random(str(tmp_path)), "is a directory"),
    ):
        with pytest.raises(UserError) as err:
            call()
        assert needle in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        storage.read_json(str(tmp_path / "bad.json"))
    with pytest.raises(UserError, match="cannot write to an HTTP URL"):
        storage.write_bytes("https://example.invalid/x", b"")


def test_local_parquet_reads_leave_no_arrow_thread_calling_python_at_exit(tmp_path):
    """A local Parquet file is opened as a native Arrow file. Read through a Python file object with
    pyarrow's threads, about 1 process in 10 aborted at interpreter exit ("terminate called without
    an active exception", SIGABRT): an Arrow I/O thread dropped the last reference to the Python
    file while the interpreter was finalising. Each run here is a fresh process doing what
    `dsllm stats` does; all must exit 0."""
    import subprocess
    import sys

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table({"domain": pa.array(["web", "code"] * 5000).dictionary_encode()}), path, row_group_size=1000
    )
    with storage.open_random(str(path)) as f:
        assert isinstance(f, pa.NativeFile) and f.size() == path.stat().st_size
        assert pq.read_table(f, columns=["domain"]).num_rows == 10000
    code = (
        "import sys, pyarrow.dataset, pyarrow.parquet as pq\n"
        "from dsllm import storage\n"
        "with storage.open_random(sys.argv[1]) as f:\n"
        "    assert pq.read_table(f, columns=['domain']).num_rows == 10000\n"
    )
    codes = [subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True).returncode for _ in range(12)]
    assert codes == [0] * 12


def test_join_and_split():
    assert storage.join("s3://b/p/", "x", "/y") == "s3://b/p/x/y"
    assert storage.join("https://h/a", "b") == "https://h/a/b"
    assert storage.join("/tmp/a", "b", "c") == "/tmp/a/b/c"
    assert storage.split_s3("s3://bucket/k/e/y") == ("bucket", "k/e/y")
    with pytest.raises(UserError, match="not a valid S3 URI"):
        storage.split_s3("s3:///key")


# ---------------------------------------------------------------- S3 (moto server)


def test_s3_roundtrip_and_prefix_semantics(s3_bucket):
    b = f"s3://{s3_bucket}"
    for key in ("run/a", "run/b/c", "run1/x", "run", "other/y"):
        storage.write_bytes(f"{b}/{key}", key.encode())
    assert storage.read_text(f"{b}/run/b/c") == "run/b/c"
    names = lambda uri: [f.uri[len(b) + 1 :] for f in storage.list_files(uri)]  # noqa: E731
    # a prefix is a directory: run matches run/... (and the object `run` itself), never run1/...
    assert names(f"{b}/run") == ["run", "run/a", "run/b/c"]
    assert names(f"{b}/run/") == ["run/a", "run/b/c"]
    assert names(f"{b}/") == ["other/y", "run", "run/a", "run/b/c", "run1/x"]
    assert names(f"{b}/nothing") == []
    assert storage.stat(f"{b}/run/a").size == 5
    assert storage.exists(f"{b}/run/a") and not storage.exists(f"{b}/run/zzz")
    storage.write_json(f"{b}/j.json", {"k": [1, 2]})
    assert storage.read_json(f"{b}/j.json") == {"k": [1, 2]}
    storage.remove(f"{b}/j.json")
    assert not storage.exists(f"{b}/j.json")


def test_s3_atomic_write_leaves_nothing_on_failure(s3_bucket):
    uri = f"s3://{s3_bucket}/out/part-00000.parquet"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "dsllm-upload-*")))
    with pytest.raises(RuntimeError):
        with storage.atomic_write(uri) as f:
            f.write(b"half a shard")
            raise RuntimeError("killed")
    assert not storage.exists(uri)
    assert storage.list_files(f"s3://{s3_bucket}/out") == []
    storage.write_bytes(uri, b"v1")
    with pytest.raises(RuntimeError):
        with storage.atomic_write(uri) as f:
            f.write(b"v2 partial")
            raise RuntimeError("killed")
    assert storage.read_bytes(uri) == b"v1"
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "dsllm-upload-*"))) == before


def test_s3_streaming_read_of_a_larger_object(s3_bucket):
    data = os.urandom(3 << 20)
    uri = f"s3://{s3_bucket}/big.bin"
    storage.write_bytes(uri, data)
    with storage.open_read(uri) as f:
        chunks = []
        while chunk := f.read(1 << 18):
            chunks.append(chunk)
    assert b"".join(chunks) == data and len(chunks) >= 12
    local = storage.download(uri, os.path.join(tempfile.mkdtemp(), "copy.bin"))
    assert open(local, "rb").read() == data


def test_s3_missing_object_and_bucket_are_one_line(s3_bucket):
    for uri, needle in (
        (f"s3://{s3_bucket}/missing.bin", "no such object"),
        ("s3://no-such-bucket-dsllm/x", "no such bucket"),
    ):
        with pytest.raises(UserError) as err:
            storage.read_bytes(uri)
        msg = str(err.value)
        assert msg.startswith(uri) and needle in msg and "\n" not in msg
    with pytest.raises(UserError, match="no such object"):
        storage.stat(f"s3://{s3_bucket}/missing.bin")


def test_no_credentials_is_one_line(s3_server, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(UserError) as err:
        storage.read_bytes("s3://any-bucket/key")
    assert "no AWS credentials found" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------- S3 through a requester-pays proxy


def test_requester_pays_header_is_sent_on_every_call(s3_bucket, s3_proxy):
    b = f"s3://{s3_bucket}"
    s3_proxy.requests.clear()
    storage.write_bytes(f"{b}/rp/obj", b"paid", requester_pays=True)
    assert storage.read_bytes(f"{b}/rp/obj", requester_pays=True) == b"paid"
    assert [f.uri for f in storage.list_files(f"{b}/rp", requester_pays=True)] == [f"{b}/rp/obj"]
    assert storage.stat(f"{b}/rp/obj", requester_pays=True).size == 4
    assert storage.exists(f"{b}/rp/obj", requester_pays=True)
    methods = {m for m, _, _ in s3_proxy.requests}
    assert {"PUT", "GET", "HEAD"} <= methods
    assert all(h.get("x-amz-request-payer") == "requester" for _, _, h in s3_proxy.requests)
    # without the header the bucket refuses, and the user is told what to do
    with pytest.raises(UserError) as err:
        storage.read_bytes(f"{b}/rp/obj", requester_pays=False)
    assert "--requester-pays" in str(err.value) and "\n" not in str(err.value)
    # the process-wide default (set by --requester-pays) applies when a call does not say
    try:
        storage.set_requester_pays(True)
        assert storage.read_bytes(f"{b}/rp/obj") == b"paid"
    finally:
        storage.set_requester_pays(False)
    with pytest.raises(UserError):
        storage.read_bytes(f"{b}/rp/obj")


def test_bad_credentials_message_never_contains_the_secret(s3_bucket, s3_proxy, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEBADKEY")
    s3_proxy.mode = "bad_key"
    for call in (
        lambda: storage.read_bytes(f"s3://{s3_bucket}/x", requester_pays=True),
        lambda: storage.list_files(f"s3://{s3_bucket}/", requester_pays=True),
        lambda: storage.write_bytes(f"s3://{s3_bucket}/x", b"1", requester_pays=True),
    ):
        with pytest.raises(UserError) as err:
            call()
        msg = str(err.value)
        assert "credentials rejected" in msg and "InvalidAccessKeyId" in msg
        assert SECRET not in msg and SECRET[:12] not in msg and "\n" not in msg
        assert SECRET not in repr(err.value.__cause__) + repr(err.value.__context__)


def test_s3_read_resumes_after_a_dropped_connection(s3_bucket, s3_proxy):
    data = os.urandom(2 << 20)
    uri = f"s3://{s3_bucket}/resume.bin"
    storage.write_bytes(uri, data, requester_pays=True)
    s3_proxy.requests.clear()
    s3_proxy.fault, s3_proxy.fault_times, s3_proxy.fault_match = "truncate", 1, "resume.bin"
    assert storage.read_bytes(uri, requester_pays=True) == data
    gets = [h for m, p, h in s3_proxy.requests if m == "GET" and "resume.bin" in p]
    assert len(gets) >= 2 and "range" not in gets[0]
    start = int(re.match(r"bytes=(\d+)-$", gets[1]["range"]).group(1))
    assert 0 < start < len(data)


# ---------------------------------------------------------------- HTTP


def test_http_read_stat_exists_and_errors(http_server, tmp_path):
    (tmp_path / "crawl-data").mkdir()
    (tmp_path / "crawl-data" / "warc.paths.gz").write_bytes(b"abc" * 1000)
    base = http_server(tmp_path)
    uri = base + "crawl-data/warc.paths.gz"
    assert storage.read_bytes(uri) == b"abc" * 1000
    assert storage.stat(uri).size == 3000
    assert [f.size for f in storage.list_files(uri)] == [3000]
    assert storage.exists(uri) and not storage.exists(base + "missing")
    with pytest.raises(UserError) as err:
        storage.read_bytes(base + "missing")
    assert str(err.value) == f"{base}missing: not found (HTTP 404)"
    port = _free_port()
    with pytest.raises(UserError, match="cannot connect"):
        storage.read_bytes(f"http://127.0.0.1:{port}/x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves `server.data` with Range support; the first full GET is cut after `server.cut` bytes;
    the first `server.fail_first` requests get 503."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.seen.append(self.headers.get("Range"))
        if srv.fail_first > 0:
            srv.fail_first -= 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data, start = srv.data, 0
        rng = self.headers.get("Range")
        if rng:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if not rng and srv.cut:
            self.wfile.write(data[: srv.cut])
            self.wfile.flush()
            srv.cut = 0
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:])


@pytest.fixture
def flaky_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    srv.daemon_threads = True
    srv.data, srv.cut, srv.fail_first, srv.seen = os.urandom(3 << 20), 0, 0, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}/blob"
    srv.shutdown()
    srv.server_close()


def test_http_streaming_read_resumes_after_a_dropped_connection(flaky_server):
    srv, url = flaky_server
    srv.cut = 1_234_567
    with storage.open_read(url) as f:
        got = b"".join(iter(lambda: f.read(1 << 16), b""))
    assert got == srv.data
    assert srv.seen[0] is None and len(srv.seen) == 2
    resumed = int(re.match(r"bytes=(\d+)-$", srv.seen[1]).group(1))
    assert 0 < resumed <= 1_234_567  # resumed at the offset already consumed, not from 0


def test_http_transient_5xx_is_retried(flaky_server):
    srv, url = flaky_server
    srv.fail_first = 2
    assert storage.read_bytes(url) == srv.data
    assert len(srv.seen) == 3
