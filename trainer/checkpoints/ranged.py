"""Ranged reads of S3 objects: the one implementation behind the cache download (`remote`) and
the streaming import (`stream`). HEAD an object (`head`: size, ETag, multipart part size,
full-object SHA-256), then GET byte ranges with retries from the byte where a read stopped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable

from dsllm import storage
from dsllm.errors import UserError

READ_SIZE = 1 << 20


@dataclasses.dataclass(frozen=True)
class RemoteObject:
    """What S3 says about an object: size, ETag and the checksum we can verify against."""

    uri: str
    size: int
    etag: str
    part_size: int | None  # multipart part size (from HEAD with PartNumber=1), else None
    parts: int | None
    sha256: str | None  # full-object ChecksumSHA256 (base64) when S3 stores one
    kms: bool


def head(uri: str, requester_pays: bool) -> RemoteObject:
    bucket, key = storage.split_s3(uri)
    client, rp = storage.s3_client(), ({"RequestPayer": "requester"} if requester_pays else {})
    try:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **rp)
        etag = head.get("ETag", "").strip('"')
        part_size = parts = None
        if re.fullmatch(r"[0-9a-f]{32}-\d+", etag):
            p1 = client.head_object(Bucket=bucket, Key=key, PartNumber=1, **rp)
            part_size, parts = int(p1["ContentLength"]), int(etag.rsplit("-", 1)[1])
    except Exception as exc:  # noqa: BLE001 - translated to one line
        raise storage._s3_error(uri, exc) from None
    sha = head.get("ChecksumSHA256")
    if sha and "-" in sha:
        sha = None  # composite (per-part) checksum: not a checksum of the object's bytes
    return RemoteObject(
        uri, int(head["ContentLength"]), etag, part_size, parts, sha, head.get("ServerSideEncryption") == "aws:kms"
    )


def retries() -> int:
    return int(os.environ.get("DSLLM_FETCH_RETRIES", "5"))


def get_range(
    client,
    r: RemoteObject,
    lo: int,
    hi: int,
    requester_pays: bool,
    sink: Callable[[int, memoryview], None],
    stop: threading.Event,
    failed: str = "download failed",
    hint: str = "rerun to resume",
) -> None:
    """GET bytes [lo, hi) of the object and hand them to `sink(pos, data)` in order; read errors
    are retried from the byte where they stopped, client errors are final (one line). Every GET is
    `If-Match` the ETag and its `Content-Range` total is checked, so a changed object fails instead
    of mixing versions. After `DSLLM_FETCH_RETRIES` read errors: "{uri}: {failed} after N retries:
    truncated at byte ...; {hint}"."""
    from botocore.exceptions import ClientError, NoCredentialsError

    bucket, key = storage.split_s3(r.uri)
    extra = {"RequestPayer": "requester"} if requester_pays else {}
    if r.etag:
        extra["IfMatch"] = f'"{r.etag}"'
    pos, attempt = lo, 0
    while pos < hi:
        if stop.is_set():
            raise InterruptedError
        try:
            resp = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={pos}-{hi - 1}", **extra)
            total = str(resp.get("ContentRange", "")).rsplit("/", 1)[-1]
            if total.isdigit() and int(total) != r.size:
                raise UserError(f"{r.uri}: the object changed while it was read ({total} bytes, was {r.size})")
            body = resp["Body"]
            while pos < hi:
                if stop.is_set():
                    raise InterruptedError
                data = body.read(min(READ_SIZE, hi - pos))
                if not data:
                    raise ConnectionError(f"connection closed at byte {pos} of range {lo}-{hi}")
                sink(pos, memoryview(data))
                pos += len(data)
            body.close()
        except (UserError, InterruptedError):
            raise
        except Exception as exc:  # noqa: BLE001 - client errors are final, read errors are retried
            if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "412",
            ):
                raise UserError(
                    f"{r.uri}: the object changed while it was read (ETag is no longer {r.etag}); rerun"
                ) from None
            if isinstance(exc, (ClientError, NoCredentialsError)):
                raise storage._s3_error(r.uri, exc) from None
            attempt += 1
            if attempt > retries():
                raise UserError(
                    f"{r.uri}: {failed} after {attempt - 1} retries: truncated at byte "
                    f"{pos} of {r.size} ({type(exc).__name__}); {hint}"
                ) from None
            time.sleep(min(10.0, 0.1 * 2**attempt))


def get_bytes(client, r: RemoteObject, lo: int, hi: int, requester_pays: bool) -> bytes:
    """Bytes [lo, hi) of the object, fetched by `get_range`."""
    buf = bytearray(hi - lo)
    view = memoryview(buf)

    def sink(pos: int, data) -> None:
        view[pos - lo : pos - lo + len(data)] = data

    get_range(client, r, lo, hi, requester_pays, sink, threading.Event())
    return bytes(buf)
