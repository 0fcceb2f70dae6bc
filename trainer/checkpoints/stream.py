"""Streaming import: safetensors shards on S3 read straight into a model's parameters.

No local copy is written. Per shard:
1. one HEAD (size, ETag, multipart part size, full-object SHA-256) and one ranged GET of the
   first 256 KiB, which holds the header of any real checkpoint (a larger header costs one more
   GET); the header is validated like a local one (offsets contiguous, ending at the object size);
2. the whole object is split into ranges following the file order — 64 MiB by default, or a
   whole number of multipart parts so that every part's MD5 can be computed — and fetched by
   parallel ranged GETs (`If-Match` the ETag, so a changed object fails instead of mixing
   versions; the total size of every `Content-Range` is checked). Each GET writes its bytes
   directly into the storage of the parameters they belong to (`formats.bytes_view`); only a tensor
   whose dtype differs from the model's goes through a staging tensor, converted and freed as
   soon as its last byte is in;
3. read errors are retried from the byte where they stopped (`DSLLM_FETCH_RETRIES`, default 5),
   then fail with one line;
4. verification, like the cache's: the full-object `ChecksumSHA256` when S3 has one, else the MD5
   ETag — per-part MD5s for multipart objects (ranges are aligned to parts), the MD5 of the whole
   object for single-part ones. Whole-object hashes are computed in file order by an in-order
   "commit" of the finished ranges, from the bytes already in the parameters, while later
   ranges are still downloading. SSE-KMS ETags are not MD5s: only the size and the header's
   consistency are verified then. The header bytes inside the first range must equal those of
   the header GET.

Memory: one copy of the weights plus the in-flight 1 MiB read buffers (and, when converting
dtypes, the staging tensors of at most 2 × `workers` ranges: a range starts only that close to
the committed head).
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import re
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import formats, ranged, remote

HEADER_PROBE = 256 << 10
STREAM_HINT = "rerun, or set DSLLM_CHECKPOINT_CACHE=1 to fetch into the resumable cache first"


@dataclasses.dataclass(frozen=True)
class RemoteShard:
    """A safetensors object on S3 whose header has been read: what S3 says plus its tensors."""

    remote: ranged.RemoteObject
    head: bytes  # the object's first 8 + header-length bytes
    entries: dict  # name -> formats.TensorEntry (absolute byte offsets)

    @property
    def uri(self) -> str:
        return self.remote.uri


def open_shard(uri: str, requester_pays: bool = True) -> RemoteShard:
    """HEAD the object and read and validate its safetensors header (one ranged GET, usually)."""
    r = ranged.head(uri, requester_pays)
    client = storage.s3_client()
    probe = ranged.get_bytes(client, r, 0, min(r.size, HEADER_PROBE), requester_pays)
    n = formats.header_length(probe, r.size, uri)
    if 8 + n > len(probe):
        probe += ranged.get_bytes(client, r, len(probe), 8 + n, requester_pays)
    return RemoteShard(r, probe[: 8 + n], formats.parse_header(probe[8 : 8 + n], r.size, uri))


class _Segment:
    """One stretch of the object's bytes and where it goes: a parameter's own storage (`view`), a
    staging tensor converted into the parameter `dst` once complete, or scratch bytes (the
    header, ignored buffers)."""

    def __init__(self, start: int, end: int, name: str, view=None, dst=None, dtype=None, shape=None):
        self.start, self.end, self.name = start, end, name
        self.dst, self.dtype, self.shape = dst, dtype, shape
        self.convert = view is None
        self._view, self.staging, self.lock = view, None, threading.Lock()

    def view(self) -> memoryview:
        if self._view is None:
            with self.lock:
                if self._view is None:  # created on first write, so a staging copy lives briefly
                    import torch

                    self.staging = torch.empty(self.shape, dtype=self.dtype)
                    self._view = memoryview(formats.bytes_view(self.staging))
        return self._view

    def finish(self) -> None:
        """All its bytes are in and hashed: convert a staging tensor into the parameter, free it."""
        if self.convert:
            self.dst.copy_(self.staging)
            self.staging = self._view = None


def _segments(shard: RemoteShard, target: Callable) -> tuple[list[_Segment], set[str]]:
    """Byte stretches covering the whole object in file order, and the names that land in the model."""
    import torch

    head = len(shard.head)
    segs = [_Segment(0, head, "(header)", view=memoryview(bytearray(head)))]
    loaded = set()
    for name, e in sorted(shard.entries.items(), key=lambda kv: kv[1].start):
        dst = target(name, e.shape)
        src = getattr(torch, e.dtype)
        if dst is not None:
            loaded.add(name)
        if e.end == e.start:
            continue
        if dst is None:  # an ignored buffer: its bytes are read (hashes need them) and dropped
            segs.append(_Segment(e.start, e.end, name, view=memoryview(bytearray(e.end - e.start))))
        elif dst.dtype == src and dst.is_contiguous() and dst.device.type == "cpu":
            segs.append(_Segment(e.start, e.end, name, view=memoryview(formats.bytes_view(dst))))
        else:
            segs.append(_Segment(e.start, e.end, name, dst=dst, dtype=src, shape=e.shape))
    return segs, loaded


def verify_mode(r: ranged.RemoteObject) -> str:
    """What can be checked while streaming: `sha256` / `md5` (whole object, in order), `parts`
    (per-part MD5s of a multipart ETag) or `size` (SSE-KMS / SSE-C: the ETag is not an MD5)."""
    if r.sha256:
        return "sha256"
    if r.kms or not re.fullmatch(r"[0-9a-f]{32}(-\d+)?", r.etag):
        return "size"
    return "parts" if r.parts else "md5"


def plan_ranges(r: ranged.RemoteObject, chunk_size: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges over the whole object in file order: `chunk_size`, or the nearest whole
    number of multipart parts (so every part's MD5 falls inside one range)."""
    step = r.part_size * max(1, round(chunk_size / r.part_size)) if r.part_size else chunk_size
    return [(o, min(o + step, r.size)) for o in range(0, r.size, step)]


def load_shard(
    shard: RemoteShard,
    target: Callable,
    requester_pays: bool = True,
    workers: int = 8,
    chunk_size: int = 64 << 20,
    progress: remote.ProgressFn | None = None,
) -> tuple[set[str], str]:
    """Stream one shard into the tensors `target(name, shape)` returns (None: skip the tensor).

    Returns (names loaded, what was verified: sha256 | md5 | parts | size)."""
    segs, loaded = _segments(shard, target)
    r, mode = shard.remote, verify_mode(shard.remote)
    job = _Job(shard, segs, mode, requester_pays, remote._Progress(r.size, progress), max(1, workers))
    ranges = plan_ranges(r, chunk_size)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(ranges))), thread_name_prefix="stream") as pool:
        futures = [pool.submit(job.fetch, k, lo, hi) for k, (lo, hi) in enumerate(ranges)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                fut.result()
        except BaseException:
            job.abort()  # queued ranges give up; running ones stop at their next read
            raise
    return loaded, job.verify(len(ranges))


class _Job:
    """The shared state of one shard's parallel fetch and its in-order commit."""

    def __init__(
        self, shard: RemoteShard, segs: list[_Segment], mode: str, requester_pays: bool, tracker, workers: int
    ):
        self.shard, self.segs, self.mode, self.rp, self.tracker = shard, segs, mode, requester_pays, tracker
        self.starts = [s.start for s in segs]
        self.hasher = {"sha256": hashlib.sha256, "md5": hashlib.md5}.get(mode, lambda: None)()
        self.part_md5: dict[int, str] = {}
        self.next, self.cond, self.stop = 0, threading.Condition(), threading.Event()
        self.finished: dict[int, tuple[int, int]] = {}
        self.committing, self.window = False, 2 * workers
        self.client = storage.s3_client()  # boto3 clients are thread-safe: one for all workers

    def abort(self) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify_all()

    def _overlapping(self, lo: int, hi: int):
        i = bisect.bisect_right(self.starts, lo) - 1
        while i < len(self.segs) and self.segs[i].start < hi:
            yield self.segs[i]
            i += 1

    def _write(self, pos: int, data: memoryview) -> None:
        off = 0
        for seg in self._overlapping(pos, pos + len(data)):
            a = pos + off
            take = min(seg.end - a, len(data) - off)
            seg.view()[a - seg.start : a - seg.start + take] = data[off : off + take]
            off += take
        self.tracker.add(len(data))

    def fetch(self, k: int, lo: int, hi: int) -> None:
        """Range k: GET it into its segments (hashing parts), then let the in-order commit run."""
        with self.cond:  # bounded run-ahead: staging copies and uncommitted ranges stay few
            self.cond.wait_for(lambda: k < self.next + self.window or self.stop.is_set())
        parts: dict[int, hashlib._Hash] = {}
        size = self.shard.remote.part_size

        def sink(pos: int, data: memoryview) -> None:
            if self.mode == "parts":
                off = 0
                while off < len(data):
                    p = (pos + off) // size
                    take = min(len(data) - off, (p + 1) * size - pos - off)
                    parts.setdefault(p, hashlib.md5()).update(data[off : off + take])
                    off += take
            self._write(pos, data)

        ranged.get_range(
            self.client, self.shard.remote, lo, hi, self.rp, sink, self.stop, "streaming failed", STREAM_HINT
        )
        self.part_md5.update({p: h.hexdigest() for p, h in parts.items()})
        with self.cond:
            self.finished[k] = (lo, hi)
        self._advance()

    def _advance(self) -> None:
        """Commit finished ranges at the head of the file order, one committer at a time (no
        worker waits for its predecessors: whoever completes the head commits what follows)."""
        while True:
            with self.cond:
                if self.committing or self.next not in self.finished or self.stop.is_set():
                    return
                self.committing = True
                lo, hi = self.finished.pop(self.next)
            try:
                for seg in self._overlapping(lo, hi):
                    if self.hasher is not None:
                        self.hasher.update(seg.view()[max(lo, seg.start) - seg.start : min(hi, seg.end) - seg.start])
                    if lo < seg.end <= hi:
                        seg.finish()
                with self.cond:
                    self.next += 1
            finally:
                with self.cond:
                    self.committing = False
                    self.cond.notify_all()

    def verify(self, n_ranges: int) -> str:
        """After every range is committed: the checksum S3 gives, then the header's consistency."""
        r, how = self.shard.remote, self.mode
        if self.next != n_ranges:
            raise UserError(f"{r.uri}: streamed {self.next} of {n_ranges} ranges")
        if how == "sha256" and base64.b64encode(self.hasher.digest()).decode() != r.sha256:
            raise UserError(f"{r.uri}: SHA-256 checksum mismatch (corrupted stream)")
        if how == "md5" and self.hasher.hexdigest() != r.etag:
            raise UserError(f"{r.uri}: MD5 checksum mismatch against the S3 ETag (corrupted stream)")
        if how == "parts" and len(self.part_md5) != r.parts:
            how = "size"  # parts of unequal sizes cannot be matched to our ranges: not verifiable
        elif how == "parts":
            combined = hashlib.md5(b"".join(bytes.fromhex(self.part_md5[p]) for p in range(r.parts)))
            if f"{combined.hexdigest()}-{r.parts}" != r.etag:
                raise UserError(f"{r.uri}: MD5 checksum mismatch against the S3 multipart ETag (corrupted stream)")
            how = "md5"
        if bytes(self.segs[0].view()) != self.shard.head:
            raise UserError(f"{r.uri}: the safetensors header changed between requests (object replaced?); rerun")
        return how
