"""One storage layer for local paths, `s3://bucket/key` and `https://` URLs.

- streaming reads that resume at the current offset after a dropped connection;
- listing of files, directories, globs and S3 prefixes;
- atomic writes: local files are written to a temporary name and renamed, S3 objects are uploaded
  whole (a multipart upload becomes visible only when completed);
- retries with exponential backoff for transient errors (botocore's adaptive mode covers SlowDown,
  5xx and connection resets for S3; urllib3's Retry for HTTP);
- `AWS_ENDPOINT_URL` (boto3 honours it natively) and requester-pays buckets.

Error messages name the URI and the reason, never credentials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import io
import json
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from dsllm.errors import UserError

_RETRIES = 8


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; published files get the usual mode (read at import, while single-threaded)
_FILE_MODE = 0o666 & ~_read_umask()
_local = threading.local()
_requester_pays_default = os.environ.get("DSLLM_REQUESTER_PAYS", "0").lower() in ("1", "true", "yes")


def set_requester_pays(enabled: bool) -> None:
    """Default for S3 calls made without an explicit `requester_pays` argument."""
    global _requester_pays_default
    _requester_pays_default = bool(enabled)


def is_s3(uri: str) -> bool:
    return str(uri).startswith("s3://")


def is_http(uri: str) -> bool:
    return str(uri).startswith(("http://", "https://"))


def is_remote(uri: str) -> bool:
    return is_s3(uri) or is_http(uri)


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key)."""
    rest = str(uri)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UserError(f"{uri}: not a valid S3 URI (expected s3://bucket/key)")
    return bucket, key


_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


def check_relative(name: str, what: str = "path") -> str:
    """`name` if it is a relative path that stays below the directory it is joined to.

    Names that come from data (manifest entries, checkpoint `weight_map` files, S3 keys, names
    derived from WARC records) pass through here: an absolute path, a `..` component, a backslash
    or a control character is refused with one clear error instead of reaching outside."""
    name = str(name)
    bad = (
        "empty"
        if not name
        else "an absolute path"
        if name.startswith("/") or (len(name) > 1 and name[1] == ":")
        else "a '..' component"
        if ".." in name.split("/")
        else "a backslash"
        if "\\" in name
        else "a control character"
        if _CONTROL & set(name)
        else None
    )
    if bad:
        raise UserError(f"{what} {name!r}: refused ({bad}); only names inside the given directory are used")
    return name


def join(base: str, *parts: str) -> str:
    """Join path components for any scheme; each part must stay below `base` (check_relative)."""
    base = str(base)
    for p in parts:  # a leading '/' of a remote part is stripped below, so it stays inside there
        check_relative(str(p).lstrip("/") if is_remote(base) else p, f"{base}:")
    if is_remote(base):
        out = base.rstrip("/")
        for p in parts:
            out += "/" + str(p).strip("/")
        return out
    return str(Path(base, *parts))


def _rp(requester_pays: bool | None) -> dict:
    rp = _requester_pays_default if requester_pays is None else requester_pays
    return {"RequestPayer": "requester"} if rp else {}


def s3_client():
    """A thread-local boto3 S3 client with adaptive retries; honours AWS_ENDPOINT_URL."""
    key = (
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.getpid(),
    )
    cache = getattr(_local, "clients", None)
    if cache is None:
        cache = _local.clients = {}
    if key not in cache:
        import boto3
        from botocore.config import Config

        cfg = Config(
            retries={"max_attempts": _RETRIES, "mode": "adaptive"},
            connect_timeout=20,
            read_timeout=120,
            max_pool_connections=32,
        )
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        session = boto3.session.Session()
        cache[key] = session.client(
            "s3",
            endpoint_url=endpoint or None,
            config=cfg,
            region_name=session.region_name or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
    return cache[key]


_shared_clients: dict = {}
_shared_lock = threading.Lock()


def shared_s3_client():
    """One S3 client for the whole process (boto3 clients are thread-safe once created), for code
    that reads from many threads: building a client costs ~0.3 s of CPU, so 32 reader threads
    with a thread-local client each spend seconds before the first byte."""
    key = (
        os.environ.get("AWS_ENDPOINT_URL"),
        os.environ.get("AWS_ENDPOINT_URL_S3"),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.getpid(),
    )
    with _shared_lock:
        if key not in _shared_clients:
            _shared_clients[key] = s3_client()
        return _shared_clients[key]


def _s3_error(uri: str, exc: Exception) -> Exception:
    """Translate boto errors a user can cause into one clear line."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, S3UploadFailedError) and isinstance(exc.__context__, ClientError):
        exc = exc.__context__  # the transfer manager wraps the S3 error of the PUT / multipart upload
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return UserError(f"{uri}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile)")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound"):
            return UserError(f"{uri}: no such object")
        if code == "NoSuchBucket":
            return UserError(f"{uri}: no such bucket")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return UserError(f"{uri}: credentials rejected by S3 ({code})")
        if code in ("AccessDenied", "403", "Forbidden") or status == 403:
            return UserError(f"{uri}: access denied (check credentials; requester-pays buckets need --requester-pays)")
        if code == "InvalidRange":
            return exc
        return UserError(f"{uri}: S3 error {code or status}")
    return exc


def _http_session():
    sess = getattr(_local, "http", None)
    if sess is None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        sess = requests.Session()
        # connect errors get fewer retries: a wrong host or port should fail in seconds, not minutes
        retry = Retry(
            total=_RETRIES,
            connect=4,
            backoff_factor=0.5,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=("GET", "HEAD"),
            raise_on_status=False,
        )
        sess.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
        sess.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=16))
        _local.http = sess
    return sess


class _ResumingReader(io.RawIOBase):
    """A raw stream over a remote object that reopens at its current offset on transient errors."""

    def __init__(self, uri: str, requester_pays: bool | None = None):
        self.uri = uri
        self.requester_pays = requester_pays
        self.pos = 0
        self.size: int | None = None
        self._body = None
        self._attempts = 0
        # taken in the opening thread: pyarrow reads from C++ threads whose thread-local client
        # cache is empty on every call (a new boto3 client costs ~0.3 s); clients are thread-safe
        self._s3 = s3_client() if is_s3(uri) else None

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # readers such as FastWARC ask for the position of a non-seekable stream once
        return self.pos

    def _open(self):
        if is_s3(self.uri):
            bucket, key = split_s3(self.uri)
            kwargs = dict(Bucket=bucket, Key=key, **_rp(self.requester_pays))
            if self.pos:
                kwargs["Range"] = f"bytes={self.pos}-"
            try:
                resp = (self._s3 or s3_client()).get_object(**kwargs)
            except Exception as exc:  # noqa: BLE001 - translated below
                err = _s3_error(self.uri, exc)
                if self.pos and self.size is not None and self.pos >= self.size:
                    return None
                raise err from None
            if self.size is None:
                self.size = int(resp.get("ContentLength", 0)) + self.pos
            return resp["Body"]
        headers = {"Range": f"bytes={self.pos}-"} if self.pos else {}
        import requests

        try:
            resp = _http_session().get(self.uri, stream=True, timeout=(20, 120), headers=headers)
        except requests.RequestException as exc:
            raise UserError(f"{self.uri}: cannot connect ({type(exc).__name__})") from None
        if resp.status_code == 416:
            return None
        if resp.status_code == 404:
            raise UserError(f"{self.uri}: not found (HTTP 404)")
        if resp.status_code >= 400:
            raise UserError(f"{self.uri}: HTTP {resp.status_code}")
        if self.pos and resp.status_code != 206:
            raise UserError(f"{self.uri}: server ignored a range request; cannot resume")
        resp.raw.decode_content = False
        return resp.raw

    def readinto(self, buf) -> int:
        while True:
            try:
                if self._body is None:
                    self._body = self._open()
                    if self._body is None:
                        return 0
                data = self._body.read(len(buf))
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - transient network errors are retried
                self._body = None
                self._attempts += 1
                if self._attempts > _RETRIES:
                    raise UserError(
                        f"{self.uri}: read failed after {_RETRIES} retries ({type(exc).__name__})"
                    ) from None
                time.sleep(min(30.0, 0.2 * 2**self._attempts) * (0.5 + random.random()))
                continue
            n = len(data)
            buf[:n] = data
            self.pos += n
            if n:
                self._attempts = 0
            return n

    def close(self) -> None:
        if self._body is not None:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


def open_read(uri: str, requester_pays: bool | None = None, buffer_size: int = 1 << 20) -> IO[bytes]:
    """Open any URI for streaming binary reads."""
    uri = str(uri)
    if is_remote(uri):
        return io.BufferedReader(_ResumingReader(uri, requester_pays), buffer_size=buffer_size)
    try:
        return open(uri, "rb")
    except FileNotFoundError:
        raise UserError(f"{uri}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{uri}: is a directory, expected a file") from None
    except PermissionError:
        raise UserError(f"{uri}: permission denied") from None


def read_bytes(uri: str, requester_pays: bool | None = None) -> bytes:
    with open_read(uri, requester_pays) as f:
        return f.read()


def read_text(uri: str, requester_pays: bool | None = None) -> str:
    return read_bytes(uri, requester_pays).decode("utf-8")


def read_json(uri: str, requester_pays: bool | None = None):
    try:
        return json.loads(read_text(uri, requester_pays))
    except json.JSONDecodeError as exc:
        raise UserError(f"{uri}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


@dataclasses.dataclass(frozen=True)
class FileInfo:
    uri: str
    size: int
    etag: str | None = None


def exists(uri: str, requester_pays: bool | None = None) -> bool:
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3_client().head_object(Bucket=bucket, Key=key, **_rp(requester_pays))
            return True
        except Exception as exc:  # noqa: BLE001
            from botocore.exceptions import ClientError

            if isinstance(exc, ClientError) and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise _s3_error(uri, exc) from None
    if is_http(uri):
        resp = _http_session().head(uri, timeout=20, allow_redirects=True)
        return resp.status_code < 400
    return os.path.exists(uri)


def stat(uri: str, requester_pays: bool | None = None) -> FileInfo:
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            head = s3_client().head_object(Bucket=bucket, Key=key, **_rp(requester_pays))
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(uri, exc) from None
        return FileInfo(uri, int(head["ContentLength"]), head.get("ETag", "").strip('"') or None)
    if is_http(uri):
        resp = _http_session().head(uri, timeout=20, allow_redirects=True)
        if resp.status_code >= 400:
            raise UserError(f"{uri}: HTTP {resp.status_code}")
        return FileInfo(uri, int(resp.headers.get("Content-Length", -1)), resp.headers.get("ETag"))
    try:
        return FileInfo(uri, os.path.getsize(uri))
    except FileNotFoundError:
        raise UserError(f"{uri}: no such file") from None


def list_files(uri: str, requester_pays: bool | None = None) -> list[FileInfo]:
    """Files at a URI: a file, every file under a directory or S3 prefix, or a local glob. Sorted."""
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        out = []
        try:
            pages = (
                s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key, **_rp(requester_pays))
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    k = obj["Key"]
                    # a prefix means a "directory": s3://b/run matches run/x but not run1/x
                    if key and k != key and not key.endswith("/") and not k.startswith(key + "/"):
                        continue
                    if k.endswith("/"):
                        continue
                    out.append(FileInfo(f"s3://{bucket}/{k}", int(obj["Size"]), obj.get("ETag", "").strip('"')))
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(uri, exc) from None
        return sorted(out, key=lambda f: f.uri)
    if is_http(uri):
        return [stat(uri)]
    if any(c in uri for c in "*?["):
        paths = sorted(p for p in glob.glob(uri, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(uri):
        paths = sorted(str(p) for p in Path(uri).rglob("*") if p.is_file())
    elif os.path.isfile(uri):
        paths = [uri]
    else:
        return []
    return [FileInfo(p, os.path.getsize(p)) for p in paths]


@contextlib.contextmanager
def atomic_write(uri: str, requester_pays: bool | None = None) -> Iterator[IO[bytes]]:
    """Write to a temporary file and publish it at `uri` only if the block completes."""
    uri = str(uri)
    if is_http(uri):
        raise UserError(f"{uri}: cannot write to an HTTP URL; use a local path or s3://")
    if is_s3(uri):
        bucket, key = split_s3(uri)
        fd, tmp = tempfile.mkstemp(prefix="dsllm-upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            upload_file(tmp, uri, requester_pays)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        return
    parent = os.path.dirname(os.path.abspath(uri))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(uri) + ".", suffix=".tmp", dir=parent)
    os.fchmod(fd, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, uri)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if exc.errno == 28:  # ENOSPC
            raise UserError(f"{uri}: no space left on device") from None
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def upload_file(local_path: str, uri: str, requester_pays: bool | None = None) -> None:
    """Upload a local file to S3 (multipart above 64 MiB; visible only once complete) or copy locally."""
    if is_s3(uri):
        from boto3.s3.transfer import TransferConfig

        bucket, key = split_s3(uri)
        cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
        try:
            s3_client().upload_file(local_path, bucket, key, Config=cfg, ExtraArgs=_rp(requester_pays) or None)
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(uri, exc) from None
        return
    with open(local_path, "rb") as src, atomic_write(uri) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def write_bytes(uri: str, data: bytes, requester_pays: bool | None = None) -> None:
    with atomic_write(uri, requester_pays) as f:
        f.write(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, obj) -> None:
    """JSON at `uri`; presigned-URL credentials and AWS secrets in its strings are redacted
    (dsllm.redact: manifests, stats, run configs never carry them)."""
    from dsllm.redact import redact_obj

    write_text(uri, json.dumps(redact_obj(obj), indent=2, ensure_ascii=False, default=str) + "\n")


def remove(uri: str, requester_pays: bool | None = None) -> None:
    uri = str(uri)
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            s3_client().delete_object(Bucket=bucket, Key=key, **_rp(requester_pays))
        except Exception as exc:  # noqa: BLE001
            raise _s3_error(uri, exc) from None
    elif os.path.isdir(uri):
        shutil.rmtree(uri)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(uri)


def download(uri: str, local_path: str, requester_pays: bool | None = None) -> str:
    """Copy any URI to a local path atomically; returns the local path."""
    with open_read(uri, requester_pays) as src, atomic_write(local_path) as dst:
        shutil.copyfileobj(src, dst, 4 << 20)
    return local_path


def local_dir(uri: str) -> bool:
    """True if `uri` is a local path (output stages refuse node-local paths on multi-node clusters)."""
    return not is_remote(uri)


class _RangeReader(io.RawIOBase):
    """A seekable reader over an S3 object or HTTP URL that fetches byte ranges on demand.

    Parquet readers seek to the footer and then to column chunks; this serves each read with one
    ranged GET. The first request for the end of the object fetches its last `tail` bytes in one
    suffix-range GET (which also tells the object's size), so reading a Parquet footer costs one
    request.
    """

    def __init__(self, uri: str, size: int | None = None, requester_pays: bool | None = None, tail: int = 64 << 10):
        self.uri, self.requester_pays, self._tail_len = uri, requester_pays, tail
        self._size = size
        self._pos = 0
        self._tail: bytes | None = None  # last bytes of the object, once fetched
        self._whole: bytes | None = None  # HTTP servers without range support send everything
        # Taken now, in the opening thread: pyarrow calls read() from its own C++ threads, whose
        # Python thread state (and so the thread-local client cache) is new on every call.
        # boto3 clients and requests sessions may be shared between threads.
        self._s3 = shared_s3_client() if is_s3(uri) else None
        self._http = None if is_s3(uri) else _http_session()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _get(self, range_header: str) -> tuple[bytes, int | None]:
        """One ranged GET → (body, total size if the response told it)."""
        for attempt in range(_RETRIES + 1):
            try:
                if is_s3(self.uri):
                    bucket, key = split_s3(self.uri)
                    try:
                        resp = self._s3.get_object(
                            Bucket=bucket, Key=key, Range=range_header, **_rp(self.requester_pays)
                        )
                    except Exception as exc:  # noqa: BLE001 - translated below
                        err = _s3_error(self.uri, exc)
                        if isinstance(err, UserError):
                            raise err from None
                        raise
                    total = resp.get("ContentRange", "").rpartition("/")[2]
                    return resp["Body"].read(), int(total) if total.isdigit() else None
                resp = self._http.get(self.uri, timeout=(20, 120), headers={"Range": range_header})
                if resp.status_code == 404:
                    raise UserError(f"{self.uri}: not found (HTTP 404)")
                if resp.status_code >= 400:
                    raise UserError(f"{self.uri}: HTTP {resp.status_code}")
                if resp.status_code == 200:  # no range support: keep the whole body
                    self._whole = resp.content
                    return self._whole, len(self._whole)
                total = resp.headers.get("Content-Range", "").rpartition("/")[2]
                return resp.content, int(total) if total.isdigit() else None
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - transient network errors are retried
                if attempt == _RETRIES:
                    raise UserError(
                        f"{self.uri}: read failed after {_RETRIES} retries ({type(exc).__name__})"
                    ) from None
                time.sleep(min(30.0, 0.2 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _fetch_tail(self) -> None:
        body, total = self._get(f"bytes=-{self._tail_len}")
        if self._whole is not None:
            self._size = len(self._whole)
            return
        self._size = total if total is not None else (self._size or len(body))
        self._tail = body

    @property
    def size(self) -> int:
        if self._size is None:
            self._fetch_tail()
        return self._size

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            if self._tail is None and self._whole is None:
                self._fetch_tail()
            self._pos = self.size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        size = self.size
        end = size if n is None or n < 0 else min(size, self._pos + n)
        if end <= self._pos:
            return b""
        start, self._pos = self._pos, end
        if self._whole is not None:
            return self._whole[start:end]
        tail_start = size - len(self._tail) if self._tail is not None else size
        if start >= tail_start:
            return self._tail[start - tail_start : end - tail_start]
        body, _ = self._get(f"bytes={start}-{end - 1}")
        if self._whole is not None:
            return self._whole[start:end]
        return body

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def open_random(uri: str, size: int | None = None, requester_pays: bool | None = None) -> IO[bytes]:
    """Open any URI for random-access binary reads (Parquet footers and column chunks).

    Local files are opened as native Arrow files (`pyarrow.OSFile`: read, seek, tell, size()); S3
    objects and HTTP URLs are read with ranged GETs (a Python file object), so reading
    a Parquet footer does not download the file. `size`, when known, saves a request.
    """
    uri = str(uri)
    if is_remote(uri):
        return _RangeReader(uri, size, requester_pays)
    # A native Arrow file, not a Python one: pyarrow's I/O threads then never call into Python. With
    # a Python file object the last reference can be dropped by an Arrow thread while the interpreter
    # shuts down, which aborts the process ("terminate called without an active exception") in
    # about 1 run in 10 of a command that read Parquet this way.
    import pyarrow as pa

    try:
        return pa.OSFile(uri, "rb")
    except FileNotFoundError:
        raise UserError(f"{uri}: no such file") from None
    except PermissionError:
        raise UserError(f"{uri}: permission denied") from None
    except OSError:
        if os.path.isdir(uri):
            raise UserError(f"{uri}: is a directory, expected a file") from None
        raise
