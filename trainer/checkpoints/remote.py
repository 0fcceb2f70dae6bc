"""Checkpoint discovery and verified, resumable fetching from S3 (local folders are listed too).

DeepSeek's intermediate checkpoints live in a requester-pays bucket whose layout is not documented
publicly, so nothing here assumes one: `list_checkpoints` groups every file under a prefix by the
folder holding it, calls a folder a checkpoint when it holds weights or a `config.json`, and reads
the step / token count from folder names (`step-00001000`, `global_step1000`, `checkpoint-1000`,
`iter_0001000`, `1000`, `tokens-1.2T`, `400B-tokens`) or from a `trainer_state.json` next to the
weights. Requester pays is on by default for checkpoint sources.

`fetch_files` downloads into a local cache (`$DSLLM_CACHE`, default `~/.cache/dsllm`):
- every object is split into ranges fetched in parallel (ranges follow the object's multipart part
  size when it has one, so the multipart ETag can be checked from per-range MD5s);
- bytes go to `.NAME.partial` with `os.pwrite`; each finished range is recorded with its MD5 in
  `.NAME.progress`, so an interrupted fetch resumes with the missing ranges only (recorded ranges
  are re-hashed on resume, so a crash that lost written bytes cannot slip through);
- the object is verified (size, then ChecksumSHA256 when S3 has a full-object one, else the MD5
  ETag of single-part or multipart uploads; nothing for SSE-KMS ETags) before an atomic rename to
  NAME, so the cache never holds a half-written or unverified file under its real name;
- `.NAME.dsllm.json` records the ETag and size; a later fetch of an unchanged object is a no-op.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import ranged
from dsllm.trainer.checkpoints.ranged import RemoteObject

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
NON_WEIGHT_NAMES = {"optimizer.pt", "training_args.bin", "scheduler.pt", "rng_state.pth", "optimizer.bin"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")
_STEP_RE = re.compile(r"(?<![a-z])(?:global[_-]?step|step|iter(?:ation)?|checkpoint|ckpt)[-_]?0*(\d+)(?![\d.])", re.I)
_TOKENS_RE = re.compile(
    r"(?:tokens?[-_=]?(\d+(?:\.\d+)?)([kmgbt])?\b)|(?:(\d+(?:\.\d+)?)([kmgbt])[-_]?tok(?:en)?s?\b)", re.I
)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
ProgressFn = Callable[[int, int], None]


def cache_root() -> Path:
    """The local checkpoint cache: `$DSLLM_CACHE` or `~/.cache/dsllm`."""
    return Path(os.environ.get("DSLLM_CACHE") or Path.home() / ".cache" / "dsllm")


def cache_path(uri: str, root: Path | None = None) -> Path:
    """Where `s3://bucket/key` lives in the cache: ROOT/s3/bucket/key."""
    bucket, key = storage.split_s3(uri)
    if not key or ".." in key.split("/"):
        raise UserError(f"{uri}: not a cacheable object key")
    return (root or cache_root()) / "s3" / bucket / key


@dataclasses.dataclass
class CheckpointInfo:
    """One checkpoint found under a prefix: its folder, files and what its names / metadata say."""

    uri: str  # the folder (local path or s3:// prefix) holding the checkpoint
    name: str  # the folder relative to the listed source ("." when flat)
    files: list[storage.FileInfo]
    step: int | None = None
    tokens: int | None = None

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def names(self) -> list[str]:
        return [_rel(f.uri, self.uri) for f in self.files]

    @property
    def format(self) -> str:
        """`safetensors`, `pytorch-bin`, `torch-pickle`, `gguf` or `config-only`; `+optimizer` when
        optimizer state travels with it; `sharded` when weights are split over several files."""
        names = self.names()
        weights = [n for n in names if _is_weight(n)]
        if any(n.endswith(".safetensors") for n in weights):
            kind = "safetensors"
        elif any(n.endswith(".bin") for n in weights):
            kind = "pytorch-bin"
        elif any(n.endswith(".gguf") for n in weights):
            kind = "gguf"
        elif weights:
            kind = "torch-pickle"
        else:
            kind = "config-only"
        if len(weights) > 1:
            kind += " sharded"
        if "optimizer.pt" in names or any(
            "optim" in n for n in names if not _is_weight(n) and n.endswith((".pt", ".bin"))
        ):
            kind += " +optimizer"
        return kind


def _rel(uri: str, base: str) -> str:
    return uri[len(base) :].lstrip("/") if uri.startswith(base) else uri


def _is_weight(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith(WEIGHT_SUFFIXES) and base not in NON_WEIGHT_NAMES and "optim" not in base


def _is_marker(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return _is_weight(base) or base in (
        "config.json",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
        "trainer_state.json",
    )


def parse_step(name: str) -> int | None:
    """Step number from a folder name (`step-00001000`, `global_step1000`, `checkpoint-1000`,
    `iter_0001000`, or a bare number)."""
    part = name.rstrip("/").rsplit("/", 1)[-1]
    if part.isdigit():
        return int(part)
    m = _STEP_RE.search(part)
    return int(m.group(1)) if m else None


def parse_tokens(name: str) -> int | None:
    """Token count from a name that says `tokens` (`tokens-1.2T`, `400B-tokens`, `tokens_2000000`);
    a bare `7B` is a parameter count, not tokens, and is not read."""
    m = _TOKENS_RE.search(name.rstrip("/").rsplit("/", 1)[-1])
    if not m:
        return None
    value, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(round(float(value) * _UNITS[(unit or "").lower()]))


def list_checkpoints(src: str, requester_pays: bool = True, read_metadata: bool = True) -> list[CheckpointInfo]:
    """The checkpoints under a local folder or S3 prefix, sorted by step (unknown steps last)."""
    src = str(src).rstrip("/") if str(src) not in ("/", "s3://") else str(src)
    if storage.is_http(src):
        raise UserError(f"{src}: HTTP(S) servers cannot be listed; use s3:// or a local folder")
    if not storage.is_s3(src) and not os.path.exists(src):
        raise UserError(f"{src}: no such file or directory")
    # hidden names are work in progress (a trainer's `.tmp-step-N-PID/`, our `.NAME.partial`)
    files = [
        f
        for f in storage.list_files(src, requester_pays=requester_pays)
        if not any(part.startswith(".") for part in _rel(f.uri, src).split("/"))
    ]
    if not files:
        raise UserError(f"{src}: nothing there (no files under this prefix)")
    by_dir: dict[str, list[storage.FileInfo]] = {}
    for f in files:
        by_dir.setdefault(f.uri.rsplit("/", 1)[0], []).append(f)
    out = []
    for folder, members in sorted(by_dir.items()):
        if not any(_is_marker(m.uri) for m in members):
            continue
        name = _rel(folder, src) or "."
        info = CheckpointInfo(uri=folder, name=name, files=sorted(members, key=lambda f: f.uri))
        for part in reversed(name.split("/")):  # deepest folder name that carries a step wins
            if info.step is None:
                info.step = parse_step(part)
            if info.tokens is None:
                info.tokens = parse_tokens(part)
        if read_metadata:
            _read_trainer_state(info, requester_pays)
        out.append(info)
    if not out:
        raise UserError(f"{src}: no checkpoints found ({len(files)} files, none of them weights or config.json)")
    return sorted(out, key=lambda c: (c.step is None, c.step or 0, c.name))


def _read_trainer_state(info: CheckpointInfo, requester_pays: bool) -> None:
    """Step / tokens from our `trainer_state.json` (step, tokens) or a HF Trainer one
    (global_step, num_input_tokens_seen); a name-derived value stands when metadata is silent."""
    state = next((f for f in info.files if f.uri.endswith("/trainer_state.json")), None)
    if state is None or state.size > (8 << 20):
        return
    try:
        data = storage.read_json(state.uri, requester_pays=requester_pays)
    except UserError:
        return  # an unreadable metadata file does not hide the checkpoint; its step stays as named
    if not isinstance(data, dict):
        return
    step = data.get("step", data.get("global_step"))
    tokens = data.get("tokens", data.get("tokens_seen", data.get("num_input_tokens_seen")))
    if isinstance(step, int):
        info.step = step
    if isinstance(tokens, int):
        info.tokens = tokens


# ------------------------------------------------------------------------------------------ fetching


def _ranges(remote: RemoteObject, chunk: int) -> list[tuple[int, int]]:
    step = remote.part_size or chunk
    return [(o, min(o + step, remote.size)) for o in range(0, remote.size, step)] or [(0, 0)]


class _Progress:
    """Bytes fetched so far across threads; reports to a callback at most every 0.5 s."""

    def __init__(self, total: int, fn: ProgressFn | None):
        self.total, self.done, self.fn, self.last = total, 0, fn, 0.0
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            now = time.monotonic()
            if self.fn and (now - self.last > 0.5 or self.done >= self.total):
                self.last = now
                self.fn(self.done, self.total)


def _fetch_range(
    client,
    remote: RemoteObject,
    fd: int,
    lo: int,
    hi: int,
    requester_pays: bool,
    progress: _Progress,
    stop: threading.Event,
) -> str:
    """GET bytes [lo, hi) into `fd` at their offset (`ranged.get_range`: retried from where a read
    stopped). Returns the MD5 of the range (for multipart ETags)."""
    md5 = hashlib.md5()

    def sink(pos: int, data) -> None:
        os.pwrite(fd, data, pos)
        md5.update(data)
        progress.add(len(data))

    ranged.get_range(client, remote, lo, hi, requester_pays, sink, stop)
    return md5.hexdigest()


class _ProgressLog:
    """`.NAME.progress`: line 1 identifies the object version; then `lo hi md5` per finished range."""

    def __init__(self, path: Path, remote: RemoteObject, chunk: int):
        self.path, self.lock = path, threading.Lock()
        ident = json.dumps({"uri": remote.uri, "etag": remote.etag, "size": remote.size, "chunk": chunk})
        self.done: dict[tuple[int, int], str] = {}
        if path.exists():
            lines = path.read_text().splitlines()
            if lines and lines[0] == ident:
                for line in lines[1:]:
                    parts = line.split()
                    if len(parts) == 3:  # a torn last line (crash mid-write) is ignored
                        self.done[(int(parts[0]), int(parts[1]))] = parts[2]
            else:
                self.done = {}
                path.unlink()
        if not path.exists():
            path.write_text(ident + "\n")

    def record(self, lo: int, hi: int, md5: str) -> None:
        # no fsync of the data: after a crash `recheck` re-hashes every recorded range instead,
        # which costs one read on resume rather than a synchronous flush of every download
        with self.lock, open(self.path, "a") as f:
            f.write(f"{lo} {hi} {md5}\n")
        self.done[(lo, hi)] = md5

    def recheck(self, partial: Path) -> None:
        """Keep only recorded ranges whose bytes in `partial` still have their MD5."""
        if not self.done:
            return
        good = {}
        with open(partial, "rb") as f:
            for (lo, hi), md5 in self.done.items():
                f.seek(lo)
                h, left = hashlib.md5(), hi - lo
                while left and (chunk := f.read(min(left, 8 << 20))):
                    h.update(chunk)
                    left -= len(chunk)
                if not left and h.hexdigest() == md5:
                    good[(lo, hi)] = md5
        self.done = good


def _meta_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.dsllm.json")


def _is_cached(final: Path, remote: RemoteObject) -> bool:
    meta = _meta_path(final)
    if not (final.exists() and meta.exists()):
        return False
    try:
        m = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    return m.get("etag") == remote.etag and m.get("size") == remote.size == final.stat().st_size


def is_cached_listing(final: Path, info: storage.FileInfo) -> bool:
    """Whether a listed object (its listing's ETag and size) is already in the cache, without a HEAD."""
    etag = (info.etag or "").strip('"')
    return bool(etag) and _is_cached(final, RemoteObject(info.uri, info.size, etag, None, None, None, False))


def _verify(remote: RemoteObject, path: Path, range_md5: list[str]) -> str:
    """Check size and checksum; returns what was verified. Raises UserError on a mismatch."""
    size = path.stat().st_size
    if size != remote.size:
        raise UserError(f"{remote.uri}: downloaded {size} bytes but S3 says {remote.size}")
    if remote.sha256:
        h = _hash_file(path, hashlib.sha256())
        if base64.b64encode(h.digest()).decode() != remote.sha256:
            raise UserError(f"{remote.uri}: SHA-256 checksum mismatch (corrupted download)")
        return "sha256"
    if remote.kms or not re.fullmatch(r"[0-9a-f]{32}(-\d+)?", remote.etag):
        return "size"  # SSE-KMS / SSE-C ETags are not MD5s of the content
    if remote.parts:
        combined = hashlib.md5(b"".join(bytes.fromhex(m) for m in range_md5)).hexdigest()
        got = f"{combined}-{len(range_md5)}"
    else:
        got = range_md5[0] if len(range_md5) == 1 else _hash_file(path, hashlib.md5()).hexdigest()
    if got != remote.etag:
        raise UserError(f"{remote.uri}: MD5 checksum mismatch against the S3 ETag (corrupted download)")
    return "md5"


def _hash_file(path: Path, h):
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h


def fetch_files(
    uris: list[str],
    requester_pays: bool = True,
    cache: Path | None = None,
    workers: int = 8,
    chunk_size: int = 64 << 20,
    progress: ProgressFn | None = None,
) -> list[Path]:
    """Download S3 objects into the cache (parallel ranged GETs, verified, resumable).

    Returns the local paths in the order given. Objects already cached with the same ETag and
    size are not downloaded again.
    """
    remotes = [ranged.head(u, requester_pays) for u in uris]
    finals = [cache_path(u, cache) for u in uris]
    with _locked(finals):  # another process fetching the same objects (e.g. Ray workers) waits
        todo = [(r, f) for r, f in zip(remotes, finals) if not _is_cached(f, r)]
        _download(todo, requester_pays, workers, chunk_size, progress)
    return finals


@contextlib.contextmanager
def _locked(finals: list[Path]):
    """Exclusive advisory locks (`.NAME.lock`) on cache entries, taken in sorted order."""
    import fcntl

    handles = []
    try:
        for final in sorted(set(finals)):
            final.parent.mkdir(parents=True, exist_ok=True)
            fh = open(final.with_name(f".{final.name}.lock"), "a")
            handles.append(fh)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        for fh in handles:
            fh.close()  # closing releases the lock


def _download(
    todo: list[tuple[RemoteObject, Path]],
    requester_pays: bool,
    workers: int,
    chunk_size: int,
    progress: ProgressFn | None,
) -> None:
    """Fetch, verify and publish the objects in `todo` (their locks are held by the caller)."""
    tracker = _Progress(sum(r.size for r, _ in todo), progress)
    stop = threading.Event()
    client = storage.s3_client()  # boto3 clients are thread-safe: one for all workers
    jobs, fds = [], []
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fetch") as pool:
            for remote, final in todo:
                final.parent.mkdir(parents=True, exist_ok=True)
                partial = final.with_name(f".{final.name}.partial")
                progress_path = final.with_name(f".{final.name}.progress")
                if not partial.exists():  # ranges recorded for bytes that are gone do not count
                    progress_path.unlink(missing_ok=True)
                log = _ProgressLog(progress_path, remote, chunk_size)
                if not log.done and partial.exists():
                    partial.unlink()
                elif log.done:
                    log.recheck(partial)  # a crash may have lost bytes the log already recorded
                fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                os.ftruncate(fd, remote.size)
                ranges = _ranges(remote, chunk_size)
                tracker.add(sum(hi - lo for lo, hi in ranges if (lo, hi) in log.done))
                futures = [
                    pool.submit(_fetch_one, client, remote, fd, lo, hi, requester_pays, tracker, stop, log)
                    for lo, hi in ranges
                    if (lo, hi) not in log.done
                ]
                jobs.append((remote, final, partial, log, ranges, futures))
            try:
                for job in jobs:
                    done, _ = wait(job[-1], return_when=FIRST_EXCEPTION)
                    for fut in done:
                        fut.result()  # raises the first error
            except BaseException:
                stop.set()  # queued ranges give up; the pool waits for the running ones
                raise
    finally:
        for fd in fds:  # closed only after every thread writing to them has finished
            os.close(fd)
    for remote, final, partial, log, ranges, _ in jobs:
        _publish(remote, final, partial, log, ranges)


def _fetch_one(client, remote, fd, lo, hi, requester_pays, tracker, stop, log) -> None:
    if hi > lo:
        md5 = _fetch_range(client, remote, fd, lo, hi, requester_pays, tracker, stop)
    else:
        md5 = hashlib.md5().hexdigest()
    log.record(lo, hi, md5)


def _publish(remote: RemoteObject, final: Path, partial: Path, log: _ProgressLog, ranges) -> None:
    """Verify the finished partial file and rename it into place (with its metadata)."""
    try:
        how = _verify(remote, partial, [log.done[r] for r in ranges])
    except UserError:
        partial.unlink(missing_ok=True)
        log.path.unlink(missing_ok=True)
        raise
    meta = _meta_path(final)
    tmp = meta.with_name(meta.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "uri": remote.uri,
                "etag": remote.etag,
                "size": remote.size,
                "verified": how,
                "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
    )
    os.replace(partial, final)
    os.replace(tmp, meta)
    log.path.unlink(missing_ok=True)


def fetch_checkpoint(
    info: CheckpointInfo,
    requester_pays: bool = True,
    cache: Path | None = None,
    skip: Callable[[str], bool] | None = None,
    workers: int = 8,
    progress: ProgressFn | None = None,
) -> Path:
    """Fetch a checkpoint's files (minus those `skip(name)` rejects) and return its cached folder."""
    if not storage.is_s3(info.uri):
        return Path(info.uri)
    uris = [f.uri for f, n in zip(info.files, info.names()) if not (skip and skip(n))]
    fetch_files(uris, requester_pays=requester_pays, cache=cache, workers=workers, progress=progress)
    folder = cache_path(info.uri + "/x", cache).parent
    return folder
