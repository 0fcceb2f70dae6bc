"""Pass 3: verification of candidate edges (a, b), a in the current dump, as a join in two shuffles
so that no task loads more than one file's signatures (or shingle sets):

  join:        edges grouped by the file of b pick up b's payload, from the run's artifacts
               (`join_task`) or from the index's signature file of that batch and file
               (`index_join_task`); they are regrouped by the file of a;
  verify:      one task per file of a meets a's payload and keeps the edges whose estimated
               (signature) or true (shingle sets) Jaccard reaches the threshold.

Edges to documents kept by an earlier dump or by the index leave the join as edges to INDEX_NODE,
so a verified match removes the document "against the index" and never touches what was kept.
Join outputs name their payload ("p_signature" or "p_shingles"): a batch of the index committed by
a `verify = "signature"` run has no shingle sets, and its edges are verified on signatures.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from dsllm import storage
from dsllm.curation.dedup.components import INDEX_NODE, gid_file, gid_row, spanning_forest
from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.index import signature_path
from dsllm.curation.dedup.signatures import docs_path, read_parquet, write_parquet


@dataclasses.dataclass(frozen=True)
class JoinTask:
    file: int
    inputs: tuple  # edge tables whose b lies in `file` (join) or a lies in it (verify)
    workdir: str
    rundir: str
    cfg: DedupConfig


@dataclasses.dataclass(frozen=True)
class IndexJoinTask:
    ordinal: int  # position of the batch in the run's verifiable index batches
    batch: str
    file: int  # file of the batch's run holding b
    inputs: tuple  # edge tables (a, b) with b in that signature file
    index: str
    rundir: str
    payload: str  # "signature" or "shingles"


def payload_column(cfg: DedupConfig) -> str:
    return "shingles" if cfg.verify == "jaccard" else "signature"


def join_task(task: JoinTask) -> dict:
    """Attach b's payload to every edge whose b is in this run file; regroup by the file of a.
    Returns {file of a: uri}."""
    t = pa.concat_tables([read_parquet(u) for u in task.inputs])
    abx = np.stack(
        [
            t.column("a").to_numpy(),
            t.column("b").to_numpy(),
            t.column("ext").to_numpy(zero_copy_only=False).astype(np.uint64),
        ],
        axis=1,
    )
    abx = np.unique(abx, axis=0)
    col = payload_column(task.cfg)
    payload = read_parquet(docs_path(task.workdir, task.file), columns=[col]).column(col)
    pb = payload.take(pa.array(gid_row(abx[:, 1])))
    b = np.where(abx[:, 2] == 1, INDEX_NODE, abx[:, 1])  # earlier dumps' kept documents
    return _regroup(task.rundir, f"g{task.file:05d}", abx[:, 0], b, col, pb)


def index_join_task(task: IndexJoinTask) -> dict:
    """Attach the indexed b's payload (from one signature file of the index); b becomes INDEX_NODE."""
    t = pa.concat_tables([read_parquet(u) for u in task.inputs])
    ab = np.unique(np.stack([t.column("a").to_numpy(), t.column("b").to_numpy()], axis=1), axis=0)
    sigs = read_parquet(signature_path(task.index, task.batch, task.file), columns=["gid", task.payload])
    sg = sigs.column("gid").to_numpy()
    pos = np.searchsorted(sg, ab[:, 1])
    if len(ab) and (pos.max() >= len(sg) or np.any(sg[pos] != ab[:, 1])):
        raise RuntimeError(
            f"dedup index {task.index}: batch {task.batch} file {task.file} lacks signatures "
            "of indexed band keys (a damaged index)"
        )
    pb = sigs.column(task.payload).take(pa.array(pos))
    return _regroup(
        task.rundir, f"i{task.ordinal:04d}-g{task.file:05d}", ab[:, 0], np.full(len(ab), INDEX_NODE), task.payload, pb
    )


def _regroup(rundir: str, name: str, a: np.ndarray, b: np.ndarray, col: str, pb) -> dict:
    out = {}
    files_a = gid_file(a)
    for f in np.unique(files_a):
        sel = np.flatnonzero(files_a == f)
        uri = storage.join(rundir, "join", f"{name}-f{f:05d}.parquet")
        write_parquet(uri, pa.table({"a": pa.array(a[sel]), "b": pa.array(b[sel]), f"p_{col}": pb.take(pa.array(sel))}))
        out[int(f)] = uri
    return out


def verify_task(task: JoinTask) -> np.ndarray:
    """Keep the edges (a in this file) whose Jaccard reaches the threshold; their forest."""
    by_col: dict[str, list] = {}
    for u in task.inputs:
        t = read_parquet(u)
        (col,) = [c[2:] for c in t.column_names if c.startswith("p_")]
        by_col.setdefault(col, []).append(t.rename_columns(["a", "b", "pb"]))
    kept = [np.zeros((0, 2), np.uint64)]
    for col, tables in sorted(by_col.items()):
        t = pa.concat_tables(tables)
        a, b = t.column("a").to_numpy(), t.column("b").to_numpy()
        payload = read_parquet(docs_path(task.workdir, task.file), columns=[col]).column(col)
        pa_ = payload.take(pa.array(gid_row(a))).combine_chunks()
        pb = t.column("pb").combine_chunks()
        if col == "signature":
            p = task.cfg.num_perm
            sa = pa_.values.to_numpy().reshape(-1, p) if len(a) else np.zeros((0, p), np.uint32)
            sb = pb.values.to_numpy().reshape(-1, p) if len(b) else np.zeros((0, p), np.uint32)
            sim = (sa == sb).mean(axis=1)
        else:
            sim = _true_jaccard(pa_, pb)
        ok = sim >= task.cfg.threshold
        kept.append(np.stack([a[ok], b[ok]], axis=1))
    return spanning_forest(np.concatenate(kept))


def _true_jaccard(xs: pa.ListArray, ys: pa.ListArray) -> np.ndarray:
    """Jaccard of sorted distinct shingle sets, pair by pair (a loop per pair, not per shingle)."""
    xo, yo = xs.offsets.to_numpy(), ys.offsets.to_numpy()
    xv, yv = xs.values.to_numpy(), ys.values.to_numpy()
    out = np.zeros(len(xs))
    for i in range(len(xs)):
        x, y = xv[xo[i] : xo[i + 1]], yv[yo[i] : yo[i + 1]]
        inter = len(np.intersect1d(x, y, assume_unique=True))
        union = len(x) + len(y) - inter
        out[i] = inter / union if union else 1.0
    return out
