"""Pass 1, one task per input file: text → exact key, MinHash signature, LSH band keys.

Artifacts (under the run's work dir, written atomically, the marker last):
  docs/file-NNNNN.parquet      row, id, quality, crawl_key, n_shingles [, signature [, shingles]]
  keys/file-NNNNN-exact.arrow  Arrow IPC file (lz4) of the exact keys: key, gid, crawl_key, quality,
                               id; record batch p holds the keys of partition p (key % partitions)
  keys/file-NNNNN-bands.arrow  the same for the band keys: key, gid, crawl_key
  files/file-NNNNN.json        done marker: rows, documents per crawl

One keys file per input and kind, read by memory map one partition's batch at a time, instead of a
Parquet file per partition: a partition task holds many partitions' keys of many files, and small
Parquet files cost more to write and open than their rows do to process.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dsllm import storage
from dsllm.curation.dedup.components import gid
from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.minhash import MinhashSignature

EXACT, BAND = 0, 1
_KEY_FIELDS = [("key", pa.uint64()), ("gid", pa.uint64()), ("crawl_key", pa.uint64())]
KEY_SCHEMAS = {
    EXACT: pa.schema(_KEY_FIELDS + [("quality", pa.float32()), ("id", pa.string())]),
    BAND: pa.schema(_KEY_FIELDS),
}


def crawl_key(crawl: str) -> int:
    """A 64-bit key of a crawl name (rows carry it so a partition can select one dump)."""
    return int.from_bytes(hashlib.blake2b(crawl.encode("utf-8"), digest_size=8).digest(), "little")


@dataclasses.dataclass(frozen=True)
class FileTask:
    index: int
    uri: str
    workdir: str
    cfg: DedupConfig
    partitions: int


def docs_path(workdir: str, index: int) -> str:
    return storage.join(workdir, "docs", f"file-{index:05d}.parquet")


def keys_path(workdir: str, index: int, kind: int) -> str:
    return storage.join(workdir, "keys", f"file-{index:05d}-{'exact' if kind == EXACT else 'bands'}.arrow")


def marker_path(workdir: str, index: int) -> str:
    return storage.join(workdir, "files", f"file-{index:05d}.json")


def write_parquet(uri: str, table: pa.Table, dictionary: bool = False) -> None:
    """Atomically, zstd. Work-dir artifacts hold hashes, ids and signatures, which dictionary
    encoding only tries and abandons (at 4x the cost of the write); the index's files keep it
    (`dictionary=True`), so they are written as before."""
    with storage.atomic_write(uri) as f:
        pq.write_table(table, f, compression="zstd", use_dictionary=dictionary)


def read_parquet(uri: str, columns=None) -> pa.Table:
    """A whole (small) artifact: one GET for remote URIs, a plain read for local paths."""
    if storage.is_remote(uri):
        return pq.read_table(pa.BufferReader(storage.read_bytes(uri)), columns=columns)
    return pq.read_table(uri, columns=columns)


def read_keys(workdir: str, index: int, kind: int, partitions) -> pa.Table:
    """The keys of `kind` of input `index` in the given partitions (one record batch each), in
    partition order: a memory map locally, ranged reads of only those batches remotely."""
    uri = keys_path(workdir, index, kind)
    if storage.is_remote(uri):
        with storage.open_random(uri) as f:
            reader = pa.ipc.open_file(f)
            batches = [reader.get_batch(p) for p in partitions]
            del reader
    else:
        reader = pa.ipc.open_file(pa.memory_map(uri))
        batches = [reader.get_batch(p) for p in partitions]
    return pa.Table.from_batches(batches, schema=KEY_SCHEMAS[kind])


def signature_task(task: FileTask) -> dict:
    """Compute and write one file's artifacts; returns {"rows", "crawls": {crawl: n}}.
    A finished file (marker present) is not recomputed."""
    marker = marker_path(task.workdir, task.index)
    if storage.exists(marker):
        return storage.read_json(marker)
    cfg = task.cfg
    mh = MinhashSignature(cfg)
    docs, keys, crawls, row0 = [], {EXACT: [], BAND: []}, {}, 0
    opener = storage.open_random if storage.is_remote(task.uri) else storage.open_read
    with opener(task.uri) as f:  # seekable: only the columns dedup needs are fetched
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=cfg.batch_docs, columns=["id", "text", "quality_score", "crawl"]):
            d, k = _batch(mh, cfg, task.index, row0, batch, crawls)
            docs.append(d)
            for kind, t in k.items():
                keys[kind].append(t)
            row0 += batch.num_rows
    docs_t = pa.concat_tables(docs) if docs else None
    if docs_t is not None:
        write_parquet(docs_path(task.workdir, task.index), docs_t)
    else:
        write_parquet(docs_path(task.workdir, task.index), pa.table({"row": pa.array([], pa.int32())}))
    for kind, tables in keys.items():
        _write_keys(task, kind, pa.concat_tables([KEY_SCHEMAS[kind].empty_table()] + tables))
    summary = {"uri": task.uri, "rows": row0, "crawls": crawls}
    storage.write_json(marker, summary)
    return summary


def _batch(
    mh: MinhashSignature, cfg: DedupConfig, index: int, row0: int, batch: pa.RecordBatch, crawls: dict
) -> tuple[pa.Table, dict]:
    n = batch.num_rows
    rows = np.arange(row0, row0 + n, dtype=np.int64)
    gids = gid(index, rows)
    crawl_names = batch.column("crawl").to_pylist()
    ckeys = np.empty(n, dtype=np.uint64)
    for name in set(crawl_names):  # a handful of distinct crawls per batch
        c = name or ""
        ckeys[[i for i, x in enumerate(crawl_names) if x == name]] = crawl_key(c)
        crawls[c] = crawls.get(c, 0) + crawl_names.count(name)
    quality = np.nan_to_num(batch.column("quality_score").to_numpy(zero_copy_only=False).astype(np.float32))
    ids = batch.column("id")
    exact, hashes, offsets = mh.text_hashes(batch.column("text"))
    n_sh = np.diff(offsets)
    cols = {
        "row": pa.array(rows.astype(np.int32)),
        "id": ids,
        "quality": pa.array(quality),
        "crawl_key": pa.array(ckeys),
        "n_shingles": pa.array(n_sh.astype(np.int32)),
    }
    key_parts = {}
    if cfg.exact:
        key_parts[EXACT] = _keys(EXACT, exact, gids, ckeys, quality, ids)
    if cfg.minhash:
        sig = mh.from_hashes(hashes, offsets)
        # signatures always (the index keeps them to verify later dumps), shingle sets for true Jaccard
        cols["signature"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), cfg.num_perm)
        if cfg.verify == "jaccard":
            cols["shingles"] = _unique_lists(hashes, offsets)
        has = np.flatnonzero(n_sh > 0)  # documents without shingles take no part in LSH
        bands = mh.band_keys(sig[has])
        nb = bands.shape[1]
        key_parts[BAND] = _keys(BAND, bands.ravel(), np.repeat(gids[has], nb), np.repeat(ckeys[has], nb))
    return pa.table(cols), key_parts


def _keys(kind, keys, gids, ckeys, quality=None, ids=None) -> pa.Table:
    cols = [pa.array(keys), pa.array(gids), pa.array(ckeys)]
    if kind == EXACT:
        cols += [pa.array(quality), ids.cast(pa.string())]
    return pa.Table.from_arrays(cols, schema=KEY_SCHEMAS[kind])


def _unique_lists(hashes: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Per document, its sorted distinct shingle hashes (for true-Jaccard verification)."""
    doc = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    combined = np.unique((doc.astype(np.uint64) << np.uint64(32)) | hashes.astype(np.uint64))
    values = (combined & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    counts = np.bincount((combined >> np.uint64(32)).astype(np.int64), minlength=len(offsets) - 1)
    offs = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offs), pa.array(values))


def _write_keys(task: FileTask, kind: int, keys: pa.Table) -> None:
    """One Arrow IPC file, record batch p = the keys of partition p (key % partitions), in order."""
    part = (keys.column("key").to_numpy() % np.uint64(task.partitions)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(task.partitions + 1))
    cols = [c.combine_chunks() if c.num_chunks != 1 else c.chunk(0) for c in keys.take(pa.array(order)).columns]
    whole = pa.RecordBatch.from_arrays(cols, schema=keys.schema)
    with storage.atomic_write(keys_path(task.workdir, task.index, kind)) as f:
        # lz4: 2.3x smaller (gids and crawl keys compress, hashed keys do not) for ~2 ms per MB
        with pa.ipc.new_file(f, keys.schema, options=pa.ipc.IpcWriteOptions(compression="lz4")) as writer:
            for p in range(task.partitions):
                writer.write_batch(whole.slice(bounds[p], bounds[p + 1] - bounds[p]))
