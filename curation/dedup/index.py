"""The cross-dump dedup index: exact keys, LSH band keys and MinHash signatures of every document
kept so far, so that a new dump's candidates are verified against the indexed documents.

    IDX/meta.json                       {"version": 2, "config", "partitions"}: written once, by the
                                        first commit, then only read (checked after writing)
    IDX/batches/BATCH.json              {"batch", "created", "dumps": [{"crawl", "documents"}],
                                        "files", "payload": ["signature"(, "shingles")]}: the commit
                                        point of one run's batch, written after all its parts
    IDX/exact/pPPPP/BATCH.parquet       key: sorted distinct uint64 exact keys of partition PPPP
    IDX/bands/pPPPP/BATCH.parquet       key, gid: band keys (band index folded in) of the batch's
                                        kept documents, sorted by key; gid = the document's id in
                                        its run (file index << 32 | row)
    IDX/sigs/BATCH/file-NNNNN.parquet   gid, signature [, shingles]: kept documents of run file NNNNN

Candidates against the index are joined with the signatures file by file (one task holds one
signature file), exactly like candidates within a run, and verified with the run's `verify` mode
(true Jaccard needs the batch's shingle sets; a batch committed by a `verify=signature` run has only
signatures, and its candidates are checked on estimated Jaccard).

Concurrency: a commit writes only files named after its own batch, and readers take the set of
batches from listing `IDX/batches/`; nothing is read-modified-written, so concurrent commits of
different runs never lose one another (no lock needed). A commit that dies half-way is invisible
(its batch file is missing) and a repeated commit is a no-op. Runs that deduplicate at the same time
each see only the batches committed before they started, so they are not deduplicated against each
other: commit dump by dump, or curate concurrent dumps in one run.

Index version 1 (meta.json listing "batches" and "dumps", band files without gid, no signatures)
is still read: its batches cannot be verified, so a shared band key with them suffices to remove
a document, as before; `run_dedup` logs one warning naming the index. New commits to such an index
add verifiable version 2 batches.

Cost per kept document: bands x 16 B of band keys (18 bands: 288 B), 8 B of exact key, num_perm x
4 B of signature (128: 512 B), plus its distinct shingles x 4 B with `verify = "jaccard"`.
"""

from __future__ import annotations

import datetime
import json
import os
import uuid

import numpy as np
import pyarrow as pa

from dsllm import storage
from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.signatures import read_parquet, write_parquet
from dsllm.errors import UserError

_COMPAT = ("num_perm", "seed", "shingle_words", "shingle_chars")
VERSION = 2


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
            raise UserError(
                f"dedup index {uri}: built with {self.meta.get('config')}, "
                f"this run uses {index_config(cfg)}; use the index's settings or a new index"
            )
        # a run never deduplicates against its own committed batch (a rerun after the commit)
        self.exclude = exclude_batch
        self.records = _batch_records(uri) if self.meta is not None else []
        legacy = self.meta.get("batches", []) if self.meta else []
        self.legacy = [b for b in legacy if b not in {r["batch"] for r in self.records}]

    @property
    def partitions(self) -> int | None:
        return self.meta["partitions"] if self.meta else None

    @property
    def documents(self) -> int:
        return sum(d["documents"] for d in self.dumps)

    @property
    def dumps(self) -> list[dict]:
        """Indexed dumps in commit order (version 1 batches first)."""
        old = [d for d in self.meta.get("dumps", []) if d["batch"] in self.legacy] if self.meta else []
        new = [{**d, "batch": r["batch"]} for r in self.records for d in r["dumps"]]
        return [d for d in old + new if d["batch"] != self.exclude]

    @property
    def batches(self) -> list[str]:
        """Every batch this run deduplicates against (legacy ones first)."""
        return [b for b in self.legacy + [r["batch"] for r in self.records] if b != self.exclude]

    @property
    def legacy_batches(self) -> list[str]:
        """Batches written without signatures (index version 1): not verifiable."""
        return [b for b in self.legacy if b != self.exclude]

    def payload(self, batch: str) -> tuple:
        """Columns stored in the batch's signature files."""
        return tuple(next((r.get("payload", ["signature"]) for r in self.records if r["batch"] == batch), ()))

    def has_batch(self, batch: str) -> bool:
        return batch in self.legacy or any(r["batch"] == batch for r in self.records)


def _batch_records(uri: str) -> list[dict]:
    files = [f.uri for f in storage.list_files(storage.join(uri, "batches")) if f.uri.endswith(".json")]
    records = [storage.read_json(u) for u in files]
    return sorted(records, key=lambda r: (r["created"], r["batch"]))


def read_index_keys(uri: str, kind: str, partition: int, batches) -> np.ndarray:
    """Sorted distinct uint64 keys of one partition ("exact" or "bands") over the given batches."""
    parts = [
        read_parquet(_key_path(uri, kind, partition, b), columns=["key"]).column("key").to_numpy() for b in batches
    ]
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)


def read_index_bands(uri: str, partition: int, batches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, batch ordinals, gids) of one band partition over verifiable `batches`, sorted by
    (key, ordinal, gid); the ordinal is the batch's position in `batches`."""
    keys, ords, gids = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    for i, b in enumerate(batches):
        t = read_parquet(_key_path(uri, "bands", partition, b))
        keys.append(t.column("key").to_numpy())
        gids.append(t.column("gid").to_numpy())
        ords.append(np.full(t.num_rows, i, np.int64))
    k, o, g = np.concatenate(keys), np.concatenate(ords), np.concatenate(gids)
    order = np.lexsort((g, o, k))
    return k[order], o[order], g[order]


def _key_path(uri: str, kind: str, partition: int, batch: str) -> str:
    return storage.join(uri, kind, f"p{partition:04d}", f"{batch}.parquet")


def signature_path(uri: str, batch: str, file: int) -> str:
    return storage.join(uri, "sigs", batch, f"file-{file:05d}.parquet")


def write_index_partition(
    uri: str, batch: str, partition: int, exact: np.ndarray, band_keys: np.ndarray, band_gids: np.ndarray
) -> None:
    """Write one key partition of a batch (called from commit tasks)."""
    write_parquet(
        _key_path(uri, "exact", partition, batch), pa.table({"key": pa.array(np.unique(exact))}), dictionary=True
    )
    order = np.lexsort((band_gids, band_keys))
    write_parquet(
        _key_path(uri, "bands", partition, batch),
        pa.table({"key": pa.array(band_keys[order]), "gid": pa.array(band_gids[order])}),
        dictionary=True,
    )


def publish_batch(
    uri: str, cfg: DedupConfig, partitions: int, batch: str, dumps: list[dict], files: int, payload: list[str]
) -> None:
    """Make a batch whose parts are all written visible (no-op if it already is)."""
    meta_uri = storage.join(uri, "meta.json")
    want = {"version": VERSION, "config": index_config(cfg), "partitions": partitions}
    _create_once(meta_uri, (json.dumps(want, indent=2) + "\n").encode("utf-8"))
    meta = storage.read_json(meta_uri)  # another first commit may have created it
    if meta.get("config") != want["config"] or meta.get("partitions") != partitions:
        raise UserError(
            f"dedup index {uri}: created concurrently by a run with other settings "
            f"({meta.get('config')}, {meta.get('partitions')} partitions); rerun against it"
        )
    rec_uri = storage.join(uri, "batches", f"{batch}.json")
    if storage.exists(rec_uri) or batch in meta.get("batches", []):
        return
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    storage.write_json(
        rec_uri, {"batch": batch, "created": created, "dumps": dumps, "files": files, "payload": payload}
    )


def _create_once(uri: str, data: bytes) -> None:
    """Create `uri` unless it exists, atomically: a conditional PUT (If-None-Match: *) on S3, a
    hard link of a finished temporary file locally. The loser of a race leaves the winner's file."""
    if storage.is_s3(uri):
        from botocore.exceptions import ClientError

        bucket, key = storage.split_s3(uri)
        try:
            storage.s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return
            if code in ("NotImplemented", "InvalidArgument") and not storage.exists(uri):
                storage.write_bytes(uri, data)  # a store without conditional writes
                return
            raise
        return
    if os.path.exists(uri):
        return
    tmp = f"{uri}.{uuid.uuid4().hex}.tmp"
    storage.write_bytes(tmp, data)
    try:
        os.link(tmp, uri)
    except FileExistsError:
        pass
    finally:
        os.remove(tmp)
