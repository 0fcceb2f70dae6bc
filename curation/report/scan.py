"""Parallel reads of Parquet shards for `dsllm stats`: footers, a few small numeric columns, bytes.

Everything here reads through `dsllm.storage.open_random`, so a local shard is opened as a file and
an S3 shard costs one ranged GET for its footer plus one per column chunk read. Work fans out over a
thread pool: pyarrow decodes and decompresses without the GIL and S3 latency overlaps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from dsllm import storage
from dsllm.errors import UserError

T = TypeVar("T")
R = TypeVar("R")


def default_threads(remote: bool) -> int:
    """Remote reads are latency-bound (many in flight); local reads are CPU-bound."""
    return 32 if remote else max(2, min(8, 2 * (os.cpu_count() or 1)))


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool per size: its threads (and their thread-local S3 clients) are reused."""
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dsllm-stats")
        return _POOLS[threads]


def parallel_map(
    fn: Callable[[T], R], items: Iterable[T], threads: int, progress: Callable[[], None] | None = None
) -> list[R]:
    """`[fn(x) for x in items]` on a thread pool, in order; `progress()` after each item."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        out = []
        for x in items:
            out.append(fn(x))
            if progress:
                progress()
        return out
    futures = [_pool(threads).submit(fn, x) for x in items]
    out = []
    try:
        for fut in futures:
            out.append(fut.result())
            if progress:
                progress()
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return out


@dataclasses.dataclass
class ShardFooter:
    """What one shard's footer (and its size) says; `error` is set when it could not be read."""

    uri: str
    size: int | None = None
    rows: int | None = None
    row_groups: int = 0
    columns: list[str] = dataclasses.field(default_factory=list)
    stats: dict = dataclasses.field(default_factory=dict)  # column -> (min, max) over row groups
    metadata: object = None  # pyarrow.parquet.FileMetaData
    schema: object = None  # pyarrow.Schema
    error: str | None = None


def _column_min_max(md, names: Iterable[str]) -> dict:
    """(min, max) of each named column from row-group statistics; absent if any group lacks them."""
    index = {md.schema.column(i).path: i for i in range(md.num_columns)}
    out = {}
    for name in names:
        i = index.get(name)
        if i is None:
            continue
        lo = hi = None
        for g in range(md.num_row_groups):
            col = md.row_group(g).column(i)
            st = col.statistics
            if col.num_values == 0:
                continue
            if st is None or not st.has_min_max:
                lo = hi = None
                break
            lo = st.min if lo is None else min(lo, st.min)
            hi = st.max if hi is None else max(hi, st.max)
        if lo is not None:
            out[name] = (lo, hi)
    return out


def read_footer(uri: str, stat_columns: Iterable[str] = (), size: int | None = None) -> ShardFooter:
    """Read one shard's footer. A missing or corrupt shard is reported in `.error`, not raised."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = ShardFooter(uri)
    try:
        with storage.open_random(uri, size=size) as f:
            md = pq.read_metadata(f)
            info.size = f.size() if isinstance(f, pa.NativeFile) else f.size
    except UserError as exc:
        info.error = "missing" if ("no such" in str(exc) or "not found" in str(exc)) else str(exc)
        return info
    except (pa.ArrowInvalid, OSError) as exc:
        info.error = f"unreadable: {str(exc).splitlines()[0][:160]}"
        return info
    info.rows, info.row_groups, info.metadata = md.num_rows, md.num_row_groups, md
    info.schema = md.schema.to_arrow_schema()
    info.columns = list(info.schema.names)
    info.stats = _column_min_max(md, stat_columns)
    return info


def read_columns(footer: ShardFooter, columns: list[str]):
    """Read only `columns` of a shard whose footer was already read (no second footer parse)."""
    import pyarrow.parquet as pq

    with storage.open_random(footer.uri, size=footer.size) as f:
        pf = pq.ParquetFile(f, metadata=footer.metadata)
        return pf.read(columns=columns, use_threads=False)


def sha256_of(uri: str, size: int | None = None) -> str:
    """Hex sha256 of a file's bytes, streamed in 4 MiB blocks."""
    h = hashlib.sha256()
    with storage.open_read(uri, buffer_size=4 << 20) as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --- columns to numpy ---------------------------------------------------------------------------

_NUMPY = {
    "float": np.float32,
    "double": np.float64,
    "int32": np.int32,
    "int64": np.int64,
    "int16": np.int16,
    "int8": np.int8,
    "uint32": np.uint32,
    "uint64": np.uint64,
}


def numeric(column) -> np.ndarray:
    """A numeric Arrow (chunked) array as float64 numpy with NaN for nulls, straight from the
    buffers: pyarrow's own `to_numpy` imports pandas (about a second of start-up) on first use."""
    chunks = column.chunks if hasattr(column, "chunks") else [column]
    parts = []
    for c in chunks:
        dtype = _NUMPY.get(str(c.type))
        if dtype is None:
            raise TypeError(f"not a plain numeric column: {c.type}")
        validity, data = c.buffers()[:2]
        n, off = len(c), c.offset
        if data is None or n == 0:
            parts.append(np.full(n, np.nan))
            continue
        v = np.frombuffer(data, dtype=dtype, count=n, offset=off * np.dtype(dtype).itemsize).astype(np.float64)
        if c.null_count:
            bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")[off : off + n]
            v[bits == 0] = np.nan
        parts.append(v)
    return np.concatenate(parts) if parts else np.zeros(0)


# --- mergeable histograms --------------------------------------------------------------------


class LinearHistogram:
    """Counts on `fine` equal bins over [lo, hi]; exact count/sum/min/max; merges with `+=`.

    Quantiles come from the fine bins (error <= (hi - lo) / fine); the report shows `coarse` bins.
    """

    def __init__(self, lo: float, hi: float, fine: int = 2000, coarse: int = 20):
        if not hi > lo:
            hi = lo + 1.0
        self.lo, self.hi, self.fine, self.coarse = float(lo), float(hi), fine, coarse
        self.counts = np.zeros(fine, dtype=np.int64)
        self.n = self.missing = 0
        self.total = 0.0
        self.min, self.max = np.inf, -np.inf

    def add(self, values) -> None:
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v)
        self.missing += int(v.size - ok.sum())
        v = v[ok]
        if not v.size:
            return
        idx = ((v - self.lo) * (self.fine / (self.hi - self.lo))).astype(np.int64)
        self.counts += np.bincount(np.clip(idx, 0, self.fine - 1), minlength=self.fine)
        self.n += int(v.size)
        self.total += float(v.sum())
        self.min, self.max = min(self.min, float(v.min())), max(self.max, float(v.max()))

    def merge(self, other: LinearHistogram) -> None:
        self.counts += other.counts
        self.n += other.n
        self.missing += other.missing
        self.total += other.total
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        width = (self.hi - self.lo) / self.fine
        return min(self.max, max(self.min, self.lo + (i + 0.5) * width))

    def to_json(self) -> dict:
        group = self.fine // self.coarse
        edges = [self.lo + i * (self.hi - self.lo) / self.coarse for i in range(self.coarse + 1)]
        return _summary(self, edges, self.counts.reshape(self.coarse, group).sum(axis=1).tolist())


class Log2Histogram:
    """Counts of non-negative values on log2 bins (`per_octave` fine bins per doubling, bin 0 = [0, 1)).

    The report shows one bin per octave: [0,1), [1,2), [2,4), ... trimmed to the occupied range.
    """

    OCTAVES = 40

    def __init__(self, per_octave: int = 32):
        self.per_octave = per_octave
        self.counts = np.zeros(1 + self.OCTAVES * per_octave, dtype=np.int64)
        self.n = self.missing = 0
        self.total = 0.0
        self.min, self.max = np.inf, -np.inf

    def add(self, values) -> None:
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(v) & (v >= 0)
        self.missing += int(v.size - ok.sum())
        v = v[ok]
        if not v.size:
            return
        idx = np.zeros(v.size, dtype=np.int64)
        pos = v >= 1
        idx[pos] = 1 + (np.log2(v[pos]) * self.per_octave).astype(np.int64)
        self.counts += np.bincount(np.clip(idx, 0, self.counts.size - 1), minlength=self.counts.size)
        self.n += int(v.size)
        self.total += float(v.sum())
        self.min, self.max = min(self.min, float(v.min())), max(self.max, float(v.max()))

    merge = LinearHistogram.merge

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        i = int(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))
        mid = 0.5 if i == 0 else 2.0 ** ((i - 1 + 0.5) / self.per_octave)
        return min(self.max, max(self.min, mid))

    def to_json(self) -> dict:
        octave = np.concatenate([[self.counts[0]], self.counts[1:].reshape(self.OCTAVES, self.per_octave).sum(axis=1)])
        edges = [0.0] + [float(2**k) for k in range(self.OCTAVES + 1)]
        nz = np.nonzero(octave)[0]
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 1)
        return _summary(self, edges[lo : hi + 1], octave[lo:hi].tolist())


class IntHistogram:
    """Exact counts of small non-negative integers (documents per sequence)."""

    def __init__(self):
        self.counts = np.zeros(1, dtype=np.int64)
        self.n = self.missing = 0
        self.total = 0.0
        self.min, self.max = np.inf, -np.inf

    def add(self, values) -> None:
        v = np.asarray(values, dtype=np.int64)
        if not v.size:
            return
        self._grow(np.bincount(v))
        self.n += int(v.size)
        self.total += float(v.sum())
        self.min, self.max = min(self.min, float(v.min())), max(self.max, float(v.max()))

    def _grow(self, counts) -> None:
        if counts.size > self.counts.size:
            counts, self.counts = counts.copy(), self.counts
            counts[: self.counts.size] += self.counts
            self.counts = counts
        else:
            self.counts[: counts.size] += counts

    def merge(self, other: IntHistogram) -> None:
        self._grow(other.counts)
        self.n += other.n
        self.total += other.total
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        return float(np.searchsorted(np.cumsum(self.counts), q * self.n, side="left"))

    def to_json(self) -> dict:
        lo = int(self.min) if self.n else 0
        hi = int(self.max) + 1 if self.n else 1
        return _summary(self, [float(k) for k in range(lo, hi + 1)], self.counts[lo:hi].tolist())


def _summary(h, edges: list[float], counts: list[int]) -> dict:
    """The stable JSON shape of every distribution in the report."""

    def r(x):
        return None if x is None else float(f"{float(x):.7g}")  # 7 significant digits

    n = h.n
    return {
        "count": n,
        "missing": h.missing,
        "min": r(h.min) if n else None,
        "max": r(h.max) if n else None,
        "mean": r(h.total / n) if n else None,
        "p10": r(h.quantile(0.1)),
        "p50": r(h.quantile(0.5)),
        "p90": r(h.quantile(0.9)),
        "histogram": {"edges": [r(e) for e in edges], "counts": [int(c) for c in counts]},
    }


# --- sampling --------------------------------------------------------------------------------


def pick_rows(footers: list[ShardFooter], n: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """`n` rows drawn uniformly without replacement over all shards: [(shard index, local rows)]."""
    sizes = np.array([ft.rows for ft in footers], dtype=np.int64)
    total = int(sizes.sum())
    if not total or n <= 0:
        return []
    picks = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    shard_of = np.searchsorted(starts, picks, side="right") - 1
    return [(int(s), picks[shard_of == s] - starts[s]) for s in np.unique(shard_of)]


def take_rows(ft: ShardFooter, rows: np.ndarray, columns: list[str]) -> list[tuple[int, dict]]:
    """Rows of one shard as dicts, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    rg_starts = np.concatenate([[0], np.cumsum([ft.metadata.row_group(g).num_rows for g in range(ft.row_groups)])])
    rg_of = np.searchsorted(rg_starts, rows, side="right") - 1
    out = []
    with storage.open_random(ft.uri, size=ft.size) as f:
        pf = pq.ParquetFile(f, metadata=ft.metadata)
        for g in np.unique(rg_of):
            local = rows[rg_of == g] - rg_starts[g]
            table = pf.read_row_group(int(g), columns=columns).take(local)
            out.extend((int(rg_starts[g] + i), rec) for i, rec in zip(local, table.to_pylist()))
    return out
