"""Packed data for training: a reader, a global order that is a pure function of (seed, epoch), and
a loader whose position is one number, so a run resumes at any worker count.

    ds = PackedDataset("s3://bucket/packed")                 # or a local directory
    loader = DataLoader(ds, global_batch_size=64, micro_batch_size=4, seed=0,
                        rank=r, world_size=n, start_sequences=state["sequences_consumed"])
    for batch in loader: ...                                  # Batch(input_ids, step_sequences_after, is_last_micro)

The order (OLMo-core's approach, not torchtitan's per-rank iterator state): the whole run is one
stream of sequence positions 0, 1, 2, ...; position p lies in epoch p // rows, and the sequence
there is a fixed permutation of that epoch. A global batch is the positions
[p, p + global_batch_size); rank r of N takes the r-th contiguous slice of it. The training state
is only `sequences_consumed`, so N can change between save and resume (and so can the global
batch size: the stream continues at the same sequence).

The permutation shuffles *chunks* of `chunk_rows` consecutive rows (the Parquet row groups the
packer writes), so a rank reads whole row groups and nothing else; it is computed per position
with a Feistel network (cycle-walking onto [0, n_chunks)), so it needs no index array: memory does
not grow with the dataset. Rows after the last full chunk (fewer than `chunk_rows`) close each
epoch in file order.
"""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dsllm import storage
from dsllm.errors import UserError

_M64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of splitmix64 on a Python int (key derivation)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _mix(x: np.ndarray, key: int) -> np.ndarray:
    """A 64-bit integer hash of an array (uint64 arithmetic wraps, as intended)."""
    x = x ^ np.uint64(key)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class FeistelPermutation:
    """A keyed bijection of [0, n) evaluated per element (vectorised), O(1) memory.

    A balanced Feistel network permutes [0, 4^h) with 4^h >= n; values that land outside [0, n)
    are mapped again until they land inside (cycle walking), which keeps it a bijection of [0, n).
    """

    ROUNDS = 6

    def __init__(self, n: int, key: int):
        if n < 1:
            raise ValueError("a permutation needs n >= 1")
        self.n = n
        self.half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
        self.mask = np.uint64((1 << self.half_bits) - 1)
        k = key & _M64
        self.keys = []
        for _ in range(self.ROUNDS):
            k = _splitmix64(k)
            self.keys.append(k)

    def _round_trip(self, x: np.ndarray) -> np.ndarray:
        hb = np.uint64(self.half_bits)
        left, right = x >> hb, x & self.mask
        for k in self.keys:
            left, right = right, left ^ (_mix(right, k) & self.mask)
        return (left << hb) | right

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.n == 1:
            return np.zeros(len(x), dtype=np.int64)
        y = self._round_trip(np.asarray(x, dtype=np.uint64))
        out_of_range = y >= np.uint64(self.n)
        while out_of_range.any():
            y[out_of_range] = self._round_trip(y[out_of_range])
            out_of_range = y >= np.uint64(self.n)
        return y.astype(np.int64)


class GlobalBatchOrder:
    """Which row sits at every sequence position of a run: a pure function of (seed, epoch).

    `indices(start, stop)` gives the rows at positions [start, stop) (epochs roll over);
    `global_batch(position, global_batch_size)` is the global batch that starts at `position`
    sequences consumed.
    """

    def __init__(self, rows: int, seed: int, chunk_rows: int = 1, shuffle: bool = True):
        if rows < 1:
            raise UserError("packed data has no rows")
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        self.rows, self.seed, self.chunk_rows = int(rows), int(seed), int(chunk_rows)
        self.n_chunks = self.rows // self.chunk_rows if shuffle else 0  # 0: every epoch in file order
        self._perms: dict[int, FeistelPermutation] = {}

    def _perm(self, epoch: int) -> FeistelPermutation:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            key = _splitmix64((self.seed & _M64) ^ _splitmix64(epoch + 1))
            self._perms[epoch] = FeistelPermutation(max(1, self.n_chunks), key)
        return self._perms[epoch]

    def epoch_rows(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """Rows at in-epoch positions (0 <= q < rows) of one epoch."""
        q = np.asarray(positions, dtype=np.int64)
        out = q.copy()  # the tail after the last full chunk stays in file order
        body = q < self.n_chunks * self.chunk_rows
        if body.any():
            slot, offset = np.divmod(q[body], self.chunk_rows)
            out[body] = self._perm(epoch)(slot) * self.chunk_rows + offset
        return out

    def indices(self, start: int, stop: int) -> np.ndarray:
        """Rows at run positions [start, stop)."""
        pos = np.arange(start, stop, dtype=np.int64)
        epochs, q = np.divmod(pos, self.rows)
        out = np.empty_like(pos)
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            out[sel] = self.epoch_rows(int(epoch), q[sel])
        return out

    def global_batch(self, position: int, global_batch_size: int) -> np.ndarray:
        """The rows of the global batch that starts after `position` sequences."""
        return self.indices(position, position + global_batch_size)

    def epoch_of(self, position: int) -> int:
        return position // self.rows


@dataclasses.dataclass(frozen=True)
class _Shard:
    uri: str
    rows: int
    bytes: int | None


class PackedDataset:
    """Random access to the rows of PACKED (local or s3:// / https://), reading only needed row groups.

    Row counts come from the manifest; each file's row-group boundaries are read from its Parquet
    footer on first use and cached (the footer, not the data) with the file kept open, up to
    `max_open_files` files (least recently used closed first).
    """

    def __init__(self, uri: str, io_threads: int = 4):
        self.uri = str(uri).rstrip("/")
        manifest_uri = storage.join(self.uri, "manifest.json")
        if not storage.exists(manifest_uri):
            raise UserError(f"{self.uri}: no manifest.json (not a packed directory, or packing did not finish)")
        self.manifest = storage.read_json(manifest_uri)
        if not isinstance(self.manifest, dict) or self.manifest.get("kind") != "packed":
            raise UserError(f"{manifest_uri}: not a packed-data manifest (kind != 'packed')")
        try:
            self.seq_len = int(self.manifest["seq_len"])
            self.shards = [
                _Shard(storage.join(self.uri, s["path"]), int(s["rows"]), s.get("bytes"))
                for s in self.manifest["shards"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{manifest_uri}: malformed manifest ({exc})") from None
        self.starts = np.cumsum([0] + [s.rows for s in self.shards]).astype(np.int64)
        self.rows = int(self.starts[-1])
        self.max_open_files = 64
        self._files: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, io_threads), thread_name_prefix="packed-io")

    @property
    def chunk_rows(self) -> int:
        """Rows per row group as written by the packer: the unit the order shuffles."""
        if "row_group_rows" in self.manifest:
            return int(self.manifest["row_group_rows"])
        if not self.shards:
            return 1
        starts = self.row_group_starts(0)
        return int(starts[1] - starts[0]) if len(starts) > 1 else 1

    def _open(self, shard: int):
        """(lock, ParquetFile) of one shard, kept open (a bounded number) so its footer is read once."""
        with self._lock:
            hit = self._files.pop(shard, None)
            if hit is not None:
                self._files[shard] = hit  # most recently used last
                return hit
        import pyarrow.parquet as pq

        s = self.shards[shard]
        f = storage.open_random(s.uri, size=s.bytes)
        try:
            pf = pq.ParquetFile(f)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            f.close()
            raise UserError(f"{s.uri}: not a readable Parquet file ({exc})") from None
        counts = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        starts = np.cumsum([0] + counts).astype(np.int64)
        if starts[-1] != s.rows:
            f.close()
            raise UserError(f"{s.uri}: has {starts[-1]} rows, manifest says {s.rows}")
        entry = (threading.Lock(), pf, starts, f)
        with self._lock:
            self._files[shard] = entry
            while len(self._files) > self.max_open_files:
                _, (_, _, _, old) = self._files.popitem(last=False)
                old.close()
        return entry

    def row_group_starts(self, shard: int) -> np.ndarray:
        """Row offsets of the row groups of one shard, plus its end (from the Parquet footer)."""
        return self._open(shard)[2]

    def _read_groups(self, shard: int, groups: list[int], segments: bool):
        """Some row groups of one shard → (input_ids (rows, seq_len) int32, doc_offsets, n_tokens)."""
        lock, pf, _, _ = self._open(shard)
        names = pf.schema_arrow.names
        columns = ["input_ids"] + ([c for c in ("doc_offsets", "n_tokens") if c in names] if segments else [])
        with lock:
            table = pf.read_row_groups(groups, columns=columns, use_threads=False)
        col = table.column("input_ids").combine_chunks()
        ids = col.values.to_numpy(zero_copy_only=False).reshape(-1, self.seq_len)
        if not segments:
            return ids, None, None
        n = len(ids)
        offsets = table.column("doc_offsets").to_pylist() if "doc_offsets" in columns else [[0]] * n
        n_tokens = (
            table.column("n_tokens").to_numpy() if "n_tokens" in columns else np.full(n, self.seq_len, dtype=np.int32)
        )
        return ids, offsets, n_tokens

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows at global indices (any order, repeats allowed) → int32 array (n, seq_len)."""
        return self.read(indices).input_ids

    def read(self, indices: np.ndarray, segments: bool = False) -> Rows:
        """Rows at global indices; with `segments`, also their doc_offsets and n_tokens."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.rows):
            raise IndexError(f"row index out of range [0, {self.rows})")
        rows = Rows(
            np.empty((len(idx), self.seq_len), dtype=np.int32),
            [None] * len(idx) if segments else None,
            np.empty(len(idx), dtype=np.int32) if segments else None,
        )
        shard_of = np.searchsorted(self.starts, idx, side="right") - 1
        futures = []
        for shard in np.unique(shard_of):
            sel = np.nonzero(shard_of == shard)[0]
            futures.append(self._pool.submit(self._read_into, rows, int(shard), sel, idx[sel] - self.starts[shard]))
        for fut in futures:
            fut.result()
        return rows

    def _read_into(self, rows: Rows, shard: int, sel: np.ndarray, local: np.ndarray) -> None:
        starts = self.row_group_starts(shard)
        group_of = np.searchsorted(starts, local, side="right") - 1
        groups = np.unique(group_of)
        ids, offsets, n_tokens = self._read_groups(shard, groups.tolist(), rows.doc_offsets is not None)
        # position of each needed row inside the concatenation of the groups read
        base = np.cumsum([0] + [int(starts[g + 1] - starts[g]) for g in groups])[:-1]
        where = base[np.searchsorted(groups, group_of)] + (local - starts[group_of])
        rows.input_ids[sel] = ids[where]
        if offsets is not None:
            rows.n_tokens[sel] = n_tokens[where]
            for i, w in zip(sel.tolist(), where.tolist()):  # one entry per row
                rows.doc_offsets[i] = offsets[w]


@dataclasses.dataclass
class Rows:
    """Rows read from PACKED: input_ids (n, seq_len) int32; doc_offsets (per row, start of every
    document segment, first 0) and n_tokens (non-padding tokens) when asked for."""

    input_ids: np.ndarray
    doc_offsets: list | None = None
    n_tokens: np.ndarray | None = None


@dataclasses.dataclass
class Batch:
    """One micro-batch for one rank.

    step_sequences_after: global sequences consumed once the global batch this micro-batch
    belongs to is done (what to save as the data position after that optimizer step).
    doc_offsets (list per row of document-segment starts, first 0; for trainer.model's
    segments_from_offsets) and n_tokens (torch.IntTensor (micro,), non-padding tokens: positions
    >= n_tokens are padding) are set when the loader was built with `segments=True`.
    """

    input_ids: object  # torch.LongTensor (micro, seq_len)
    step_sequences_after: int
    is_last_micro: bool
    epoch: int = 0
    doc_offsets: list | None = None
    n_tokens: object = None


_DONE = object()


class DataLoader:
    """Streams this rank's micro-batches of every global batch, prefetching in a background thread.

    Infinite: epochs roll over; the training loop decides when to stop. `state()` is what a
    checkpoint stores; pass its `sequences_consumed` back as `start_sequences` to resume, at any
    world size.
    """

    def __init__(
        self,
        dataset: PackedDataset,
        global_batch_size: int,
        micro_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_sequences: int = 0,
        prefetch: int = 2,
        chunk_rows: int | None = None,
        segments: bool = False,
    ):
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not in a world of {world_size}")
        if global_batch_size % world_size:
            raise UserError(f"global batch {global_batch_size} is not divisible by {world_size} workers")
        local = global_batch_size // world_size
        if micro_batch_size < 1 or local % micro_batch_size:
            raise UserError(f"per-worker batch {local} is not divisible by micro batch {micro_batch_size}")
        if start_sequences < 0:
            raise UserError("start_sequences must be >= 0")
        self.dataset = dataset
        self.global_batch_size, self.micro_batch_size = global_batch_size, micro_batch_size
        self.rank, self.world_size, self.local_batch = rank, world_size, local
        self.seed, self.prefetch, self.segments = int(seed), max(1, prefetch), segments
        # a mixture's order is the training order already (trainer/mixture_data.py): no shuffle
        self.order = GlobalBatchOrder(
            dataset.rows, seed, chunk_rows or dataset.chunk_rows, shuffle=not getattr(dataset, "ordered", False)
        )
        self.start_sequences = self.sequences_consumed = int(start_sequences)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def state(self) -> dict:
        """{"seed", "sequences_consumed"}: global sequences of the last fully yielded global batch."""
        return {"seed": self.seed, "sequences_consumed": self.sequences_consumed}

    def local_rows(self, position: int) -> np.ndarray:
        """This rank's slice of the global batch that starts at `position`."""
        rows = self.order.global_batch(position, self.global_batch_size)
        return rows[self.rank * self.local_batch : (self.rank + 1) * self.local_batch]

    def _produce(self, q: queue.Queue, position: int) -> None:
        import torch

        try:
            while not self._stop.is_set():
                rows = self.dataset.read(self.local_rows(position), segments=self.segments)
                after, epoch = position + self.global_batch_size, self.order.epoch_of(position)
                n_micro = self.local_batch // self.micro_batch_size
                for m in range(n_micro):
                    part = slice(m * self.micro_batch_size, (m + 1) * self.micro_batch_size)
                    item = Batch(
                        torch.from_numpy(rows.input_ids[part].astype(np.int64)), after, m == n_micro - 1, epoch
                    )
                    if self.segments:
                        item.doc_offsets = rows.doc_offsets[part]
                        item.n_tokens = torch.from_numpy(rows.n_tokens[part].copy())
                    if not self._put(q, item):
                        return
                position = after
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
            self._put(q, exc)

    def _put(self, q: queue.Queue, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        self.close()
        self._stop = threading.Event()
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(
            target=self._produce, args=(q, self.sequences_consumed), name="packed-prefetch", daemon=True
        )
        self._thread.start()
        try:
            while True:
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                if item.is_last_micro:
                    self.sequences_consumed = item.step_sequences_after
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the prefetch thread (iteration can start again from `state()`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
