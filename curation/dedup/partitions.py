"""Pass 2, one task per key partition (and pass 3, the verification join), for one dump.

Every document's keys were split by `key % partitions` in pass 1, so equal keys meet in one
partition task, which holds only its slice of the keys:
  exact:  a key already seen (index or earlier dump) → removed against the index; otherwise the
          best of each key group survives (highest quality, then smallest id);
  bands:  a key already seen → the document is a near duplicate of the index; documents sharing
          a key become candidate edges (a star per group).
Verification is a join done in two shuffles so that no task loads more than one file's
signatures: edges grouped by the file of b pick up b's signature, regrouped by the file of a
they meet a's and are kept if their (estimated or true) Jaccard reaches the threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.dedup.components import gid_file, gid_row, group_edges, spanning_forest
from curation.dedup.config import DedupConfig
from curation.dedup.index import read_index_keys
from curation.dedup.signatures import BAND, EXACT, docs_path, keys_path, read_parquet, write_parquet
from dsllm import storage


@dataclasses.dataclass(frozen=True)
class PartitionTask:
    partition: int
    workdir: str                 # signature artifacts (pass 1)
    rundir: str                  # this dump's round artifacts
    n_files: int
    crawl_key: int               # the dump being deduplicated
    earlier_keys: tuple          # crawl keys of the earlier dumps of this run
    earlier_removed: tuple       # uris of their removed-gid tables
    exact_removed: str | None    # uri of this dump's exact removals (band pass)
    index: str | None
    index_batches: tuple         # the index snapshot this run deduplicates against
    cfg: DedupConfig


def write_gids(uri: str, gids: np.ndarray) -> None:
    write_parquet(uri, pa.table({"gid": pa.array(np.asarray(gids, dtype=np.uint64))}))


def read_gids(uri: str) -> np.ndarray:
    return read_parquet(uri).column("gid").to_numpy()


def _rows(task: PartitionTask, kind: int) -> tuple[pa.Table, np.ndarray]:
    """This partition's rows of `kind` for the current dump, and the keys seen before it."""
    tables = [read_parquet(keys_path(task.workdir, i, task.partition)) for i in range(task.n_files)]
    t = pa.concat_tables(tables)
    t = t.filter(pc.equal(t.column("kind"), kind))
    crawl = t.column("crawl_key").to_numpy()
    current = t.filter(pa.array(crawl == np.uint64(task.crawl_key)))
    seen = [np.zeros(0, np.uint64)]
    if task.index:
        seen.append(read_index_keys(task.index, "exact" if kind == EXACT else "bands", task.partition,
                                    task.index_batches))
    if task.earlier_keys:
        earlier = t.filter(pa.array(np.isin(crawl, np.array(task.earlier_keys, dtype=np.uint64))))
        removed = np.concatenate([read_gids(u) for u in task.earlier_removed] + [np.zeros(0, np.uint64)])
        kept = ~np.isin(earlier.column("gid").to_numpy(), removed)
        seen.append(earlier.column("key").to_numpy()[kept])
    return current, np.unique(np.concatenate(seen))


def exact_partition_task(task: PartitionTask) -> dict:
    """{"against": gids equal to something seen, "within": gids with a better equal in the dump}."""
    cur, seen = _rows(task, EXACT)
    keys = cur.column("key").to_numpy()
    hit = np.isin(keys, seen)
    against = cur.column("gid").to_numpy()[hit]
    rest = cur.filter(pa.array(~hit))
    rest = rest.append_column("neg_q", pc.negate(rest.column("quality")))
    rest = rest.sort_by([("key", "ascending"), ("neg_q", "ascending"), ("id", "ascending"), ("gid", "ascending")])
    k = rest.column("key").to_numpy()
    dup = np.zeros(len(k), dtype=bool)
    dup[1:] = k[1:] == k[:-1]
    return {"against": against, "within": rest.column("gid").to_numpy()[dup]}


def band_partition_task(task: PartitionTask) -> dict:
    """{"hits": gids matching a seen band key, "forest": (n, 2) edges, or with verification
    "cand": {file of b: uri} of candidate edges written for the join}."""
    cur, seen = _rows(task, BAND)
    gids, keys = cur.column("gid").to_numpy(), cur.column("key").to_numpy()
    if task.exact_removed:
        live = ~np.isin(gids, read_gids(task.exact_removed))
        gids, keys = gids[live], keys[live]
    hits = np.unique(gids[np.isin(keys, seen)])
    edges = group_edges(keys, gids)
    if task.cfg.verify == "none":
        return {"hits": hits, "forest": spanning_forest(edges)}
    cand = {}
    files_b = gid_file(edges[:, 1])
    for g in np.unique(files_b):
        uri = storage.join(task.rundir, "cand", f"p{task.partition:04d}-g{g:05d}.parquet")
        sel = edges[files_b == g]
        write_parquet(uri, pa.table({"a": pa.array(sel[:, 0]), "b": pa.array(sel[:, 1])}))
        cand[int(g)] = uri
    return {"hits": hits, "cand": cand}


@dataclasses.dataclass(frozen=True)
class JoinTask:
    file: int
    inputs: tuple                # edge tables whose b lies in `file` (join) or a lies in it (verify)
    workdir: str
    rundir: str
    cfg: DedupConfig


def _payload_column(cfg: DedupConfig) -> str:
    return "signature" if cfg.verify == "signature" else "shingles"


def join_task(task: JoinTask) -> dict:
    """Attach b's signature (or shingle set) to every edge whose b is in this file; regroup
    by the file of a. Returns {file of a: uri}."""
    edges = pa.concat_tables([read_parquet(u) for u in task.inputs])
    ab = np.unique(np.stack([edges.column("a").to_numpy(), edges.column("b").to_numpy()], axis=1), axis=0)
    col = _payload_column(task.cfg)
    payload = read_parquet(docs_path(task.workdir, task.file), columns=[col]).column(col)
    pb = payload.take(pa.array(gid_row(ab[:, 1])))
    out = {}
    files_a = gid_file(ab[:, 0])
    for f in np.unique(files_a):
        sel = np.flatnonzero(files_a == f)
        uri = storage.join(task.rundir, "join", f"g{task.file:05d}-f{f:05d}.parquet")
        write_parquet(uri, pa.table({"a": pa.array(ab[sel, 0]), "b": pa.array(ab[sel, 1]),
                                     "pb": pb.take(pa.array(sel))}))
        out[int(f)] = uri
    return out


def verify_task(task: JoinTask) -> np.ndarray:
    """Keep the edges (a in this file) whose Jaccard reaches the threshold; their forest."""
    t = pa.concat_tables([read_parquet(u) for u in task.inputs])
    a, b = t.column("a").to_numpy(), t.column("b").to_numpy()
    col = _payload_column(task.cfg)
    payload = read_parquet(docs_path(task.workdir, task.file), columns=[col]).column(col)
    pa_ = payload.take(pa.array(gid_row(a)))
    pb = t.column("pb").combine_chunks()
    if task.cfg.verify == "signature":
        p = task.cfg.num_perm
        sa = pa_.combine_chunks().values.to_numpy().reshape(-1, p) if len(a) else np.zeros((0, p), np.uint32)
        sb = pb.values.to_numpy().reshape(-1, p) if len(b) else np.zeros((0, p), np.uint32)
        sim = (sa == sb).mean(axis=1)
    else:
        sim = _true_jaccard(pa_.combine_chunks(), pb)
    ok = sim >= task.cfg.threshold
    return spanning_forest(np.stack([a[ok], b[ok]], axis=1))


def _true_jaccard(xs: pa.ListArray, ys: pa.ListArray) -> np.ndarray:
    """Jaccard of sorted distinct shingle sets, pair by pair (a loop per pair, not per shingle)."""
    xo, yo = xs.offsets.to_numpy(), ys.offsets.to_numpy()
    xv, yv = xs.values.to_numpy(), ys.values.to_numpy()
    out = np.zeros(len(xs))
    for i in range(len(xs)):
        x, y = xv[xo[i]:xo[i + 1]], yv[yo[i]:yo[i + 1]]
        inter = len(np.intersect1d(x, y, assume_unique=True))
        union = len(x) + len(y) - inter
        out[i] = inter / union if union else 1.0
    return out
