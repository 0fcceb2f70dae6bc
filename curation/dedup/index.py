"""The cross-dump dedup index: the exact keys and LSH band keys of every document kept so far.

    IDX/meta.json                       {"version", "config", "partitions", "documents",
                                         "dumps": [{"crawl", "documents", "batch"}], "batches": [...]}
    IDX/exact/pPPPP/BATCH.parquet       sorted distinct uint64 exact keys of partition PPPP
    IDX/bands/pPPPP/BATCH.parquet       sorted distinct uint64 band keys (band index folded in)

A batch is one committed run; readers use only the batches listed in meta.json, which is
rewritten last, so a commit that dies half-way is invisible and a repeated commit is a no-op.
Band keys cost 8 bytes x bands per kept document (18 bands: 144 B), split over the partitions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curation.dedup.config import DedupConfig
from curation.dedup.signatures import read_parquet, write_parquet
from dsllm import storage
from dsllm.errors import UserError

_COMPAT = ("num_perm", "seed", "shingle_words", "shingle_chars")


def index_config(cfg: DedupConfig) -> dict:
    """The settings that make band keys comparable: they must match the index's."""
    bands, rows = cfg.band_rows
    return {**{k: getattr(cfg, k) for k in _COMPAT}, "bands": bands, "rows": rows}


class DedupIndex:
    """Read side of an index at `uri` (local or s3://); empty if absent."""

    def __init__(self, uri: str, cfg: DedupConfig, exclude_batch: str | None = None):
        self.uri = uri
        meta_uri = storage.join(uri, "meta.json")
        self.meta = storage.read_json(meta_uri) if storage.exists(meta_uri) else None
        if self.meta is not None and self.meta.get("config") != index_config(cfg):
            raise UserError(f"dedup index {uri}: built with {self.meta.get('config')}, "
                            f"this run uses {index_config(cfg)}; use the index's settings or a new index")
        # a run never deduplicates against its own committed batch (a rerun after the commit)
        self.exclude = exclude_batch

    @property
    def partitions(self) -> int | None:
        return self.meta["partitions"] if self.meta else None

    @property
    def documents(self) -> int:
        return sum(d["documents"] for d in self.dumps)

    @property
    def dumps(self) -> list[dict]:
        return [d for d in self.meta["dumps"] if d["batch"] != self.exclude] if self.meta else []

    @property
    def batches(self) -> list[str]:
        return [b for b in self.meta["batches"] if b != self.exclude] if self.meta else []

    def has_batch(self, batch: str) -> bool:
        return bool(self.meta) and batch in self.meta["batches"]


def read_index_keys(uri: str, kind: str, partition: int, batches) -> np.ndarray:
    """Sorted uint64 keys of one partition ("exact" or "bands") over the given batches."""
    parts = [read_parquet(_key_path(uri, kind, partition, b)).column("key").to_numpy() for b in batches]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def _key_path(uri: str, kind: str, partition: int, batch: str) -> str:
    return storage.join(uri, kind, f"p{partition:04d}", f"{batch}.parquet")


def write_index_partition(uri: str, batch: str, partition: int, exact: np.ndarray, bands: np.ndarray) -> None:
    """Write one partition of a batch (called from commit tasks)."""
    for kind, keys in (("exact", exact), ("bands", bands)):
        write_parquet(_key_path(uri, kind, partition, batch), pa.table({"key": pa.array(np.unique(keys))}))


def publish_batch(uri: str, cfg: DedupConfig, partitions: int, batch: str, dumps: list[dict]) -> None:
    """Append a batch whose partitions are all written to meta.json (no-op if already there)."""
    meta_uri = storage.join(uri, "meta.json")
    meta = storage.read_json(meta_uri) if storage.exists(meta_uri) else {
        "version": 1, "config": index_config(cfg), "partitions": partitions, "documents": 0,
        "dumps": [], "batches": []}
    if batch in meta["batches"]:
        return
    meta["batches"].append(batch)
    meta["dumps"].extend({**d, "batch": batch} for d in dumps)
    meta["documents"] += sum(d["documents"] for d in dumps)
    storage.write_json(meta_uri, meta)
