"""Pass 2, one task per group of key partitions, for one dump (pass 3, the verification join:
verify.py).

Every document's keys were split by `key % partitions` in pass 1, so equal keys meet in one
partition task, which holds only its slice of the keys (a few partitions when they are small:
`partition_groups`; keys of different partitions never meet, so grouping changes no decision):
  exact:  a key already seen (index or earlier dump) → removed against the index; otherwise the
          best of each key group survives (highest quality, then smallest id);
  bands:  documents of the dump sharing a key become candidate edges (a star per group); a key
          also held by kept documents of earlier dumps of the run or of the index makes candidate
          edges to (at most MAX_EXTERNAL_PER_KEY of) them, which verification turns into edges to
          INDEX_NODE. Without verification, or against a version-1 index without signatures, a
          key already seen is enough: the document is a near duplicate of something kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dsllm import storage
from dsllm.curation.dedup.components import INDEX_NODE, gid_file, group_edges, spanning_forest
from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.index import read_index_bands, read_index_keys
from dsllm.curation.dedup.signatures import BAND, EXACT, read_keys, read_parquet, write_parquet

MAX_EXTERNAL_PER_KEY = 64  # earlier kept documents checked per shared band key (smallest first)
# key rows (~25 B each) below which partitions share a task: a task then holds about as many keys
# as one of the default 16 partitions of a million documents does (18 bands + 1 exact key each)
KEYS_PER_TASK = 1_000_000


def partition_groups(partitions: int, key_rows: int, parallelism: int) -> list[tuple[int, ...]]:
    """Consecutive runs of the key partitions, one per task: as many tasks as keep each below
    about KEYS_PER_TASK rows (assuming keys spread evenly) and at least `parallelism` of them, at
    most one per partition."""
    n = min(partitions, max(parallelism, -(-key_rows // KEYS_PER_TASK), 1))
    bounds = [p * partitions // n for p in range(n + 1)]
    return [tuple(range(bounds[i], bounds[i + 1])) for i in range(n)]


@dataclasses.dataclass(frozen=True)
class PartitionTask:
    partitions: tuple  # the key partitions this task holds (consecutive)
    workdir: str  # signature artifacts (pass 1)
    rundir: str  # this dump's round artifacts
    n_files: int
    crawl_key: int  # the dump being deduplicated
    earlier_keys: tuple  # crawl keys of the earlier dumps of this run
    earlier_removed: tuple  # uris of their removed-gid tables
    exact_removed: str | None  # uri of this dump's exact removals (band pass)
    index: str | None
    index_batches: tuple  # the index snapshot this run deduplicates against (all batches)
    cfg: DedupConfig
    index_verified: tuple = ()  # its batches with signatures (band keys carry gids), in order
    index_legacy: tuple = ()  # its version-1 batches (band keys only)


def write_gids(uri: str, gids: np.ndarray) -> None:
    write_parquet(uri, pa.table({"gid": pa.array(np.asarray(gids, dtype=np.uint64))}))


def read_gids(uri: str) -> np.ndarray:
    return read_parquet(uri).column("gid").to_numpy()


def _rows(task: PartitionTask, kind: int) -> tuple[pa.Table, pa.Table]:
    """These partitions' rows of `kind` for the current dump, and the kept rows of earlier dumps."""
    t = pa.concat_tables([read_keys(task.workdir, i, kind, task.partitions) for i in range(task.n_files)])
    crawl = t.column("crawl_key").to_numpy()
    current = t.filter(pa.array(crawl == np.uint64(task.crawl_key)))
    earlier = t.filter(pa.array(np.isin(crawl, np.array(task.earlier_keys, dtype=np.uint64))))
    removed = np.concatenate([read_gids(u) for u in task.earlier_removed] + [np.zeros(0, np.uint64)])
    return current, earlier.filter(pa.array(~np.isin(earlier.column("gid").to_numpy(), removed)))


def exact_partition_task(task: PartitionTask) -> dict:
    """{"against": gids equal to something seen, "within": gids with a better equal in the dump},
    and for each the gid of the kept document it equals ("against_of": an earlier dump's document,
    INDEX_NODE for one in the index; "within_of": the survivor of its key)."""
    cur, earlier = _rows(task, EXACT)
    ek, eg = earlier.column("key").to_numpy(), earlier.column("gid").to_numpy()
    seen = [ek]
    if task.index:
        seen += [read_index_keys(task.index, "exact", p, task.index_batches) for p in task.partitions]
    keys = cur.column("key").to_numpy()
    hit = np.isin(keys, np.concatenate(seen))
    against = cur.column("gid").to_numpy()[hit]
    against_of = np.full(len(against), INDEX_NODE, dtype=np.uint64)
    if len(ek) and len(against):
        order = np.lexsort((eg, ek))
        sk, sg = ek[order], eg[order]
        pos = np.minimum(np.searchsorted(sk, keys[hit]), len(sk) - 1)
        found = sk[pos] == keys[hit]
        against_of[found] = sg[pos[found]]
    rest = cur.filter(pa.array(~hit))
    rest = rest.append_column("neg_q", pc.negate(rest.column("quality")))
    rest = rest.sort_by([("key", "ascending"), ("neg_q", "ascending"), ("id", "ascending"), ("gid", "ascending")])
    k, g = rest.column("key").to_numpy(), rest.column("gid").to_numpy()
    dup = np.zeros(len(k), dtype=bool)
    dup[1:] = k[1:] == k[:-1]
    head = np.maximum.accumulate(np.where(dup, 0, np.arange(len(k)))) if len(k) else np.zeros(0, np.int64)
    return {"against": against, "against_of": against_of, "within": g[dup], "within_of": g[head][dup]}


def match_keys(keys: np.ndarray, gids: np.ndarray, ext_keys: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (gid of a document, position in `ext_keys`, sorted) with equal keys, at most `cap`
    external rows per document and key (the first ones in ext order)."""
    lo = np.searchsorted(ext_keys, keys, side="left")
    n = np.minimum(np.searchsorted(ext_keys, keys, side="right") - lo, cap)
    total = int(n.sum())
    start = np.repeat(lo, n)
    step = np.arange(total) - np.repeat(np.cumsum(n) - n, n)
    return np.repeat(gids, n), start + step


def band_partition_task(task: PartitionTask) -> dict:
    """{"hits": gids to remove against the index unverified, "forest": (n, 2) edges, or with
    verification "cand": {file of b: uri} and "icand": {(batch ordinal, file): uri} of candidate
    edges written for the joins}."""
    cur, earlier = _rows(task, BAND)
    gids, keys = cur.column("gid").to_numpy(), cur.column("key").to_numpy()
    if task.exact_removed:
        live = ~np.isin(gids, read_gids(task.exact_removed))
        gids, keys = gids[live], keys[live]
    edges = group_edges(keys, gids)
    legacy = [np.zeros(0, np.uint64)]
    if task.index and task.index_legacy:
        legacy += [read_index_keys(task.index, "bands", p, task.index_legacy) for p in task.partitions]
    if task.cfg.verify == "none":  # nothing is verified: a key seen before suffices
        seen = legacy + [earlier.column("key").to_numpy()]
        if task.index and task.index_verified:
            seen += [read_index_keys(task.index, "bands", p, task.index_verified) for p in task.partitions]
        return {"hits": np.unique(gids[np.isin(keys, np.concatenate(seen))]), "forest": spanning_forest(edges)}
    hits = np.unique(gids[np.isin(keys, np.concatenate(legacy))])
    ek, eg = earlier.column("key").to_numpy(), earlier.column("gid").to_numpy()
    order = np.lexsort((eg, ek))
    a, j = match_keys(keys, gids, ek[order], MAX_EXTERNAL_PER_KEY)
    cand = _write_candidates(task, edges, np.stack([a, eg[order][j]], axis=1))
    icand = {}
    if task.index and task.index_verified:
        ik, io, ig = _index_bands(task)
        a, j = match_keys(keys, gids, ik, MAX_EXTERNAL_PER_KEY)
        icand = _write_index_candidates(task, a, io[j], ig[j])
    return {"hits": hits, "cand": cand, "icand": icand}


def _index_bands(task: PartitionTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keys, batch ordinals, gids) of the index's verifiable band rows in these partitions,
    sorted by (key, ordinal, gid) as `read_index_bands` sorts one partition."""
    parts = [read_index_bands(task.index, p, task.index_verified) for p in task.partitions]
    if len(parts) == 1:
        return parts[0]
    k, o, g = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((g, o, k))
    return k[order], o[order], g[order]


def _write_candidates(task: PartitionTask, edges: np.ndarray, ext: np.ndarray) -> dict:
    """Edges within the dump and to earlier kept documents (ext), grouped by the file of b."""
    both = np.concatenate([edges, ext]) if len(ext) else edges
    flag = np.concatenate([np.zeros(len(edges), bool), np.ones(len(ext), bool)])
    cand = {}
    for g, sel in _groups(gid_file(both[:, 1])):
        uri = storage.join(task.rundir, "cand", f"p{task.partitions[0]:04d}-g{g:05d}.parquet")
        write_parquet(
            uri, pa.table({"a": pa.array(both[sel, 0]), "b": pa.array(both[sel, 1]), "ext": pa.array(flag[sel])})
        )
        cand[g] = uri
    return cand


def _write_index_candidates(task: PartitionTask, a: np.ndarray, ords: np.ndarray, b: np.ndarray) -> dict:
    """Edges to indexed documents, grouped by (batch ordinal, file of b): one signature file each."""
    icand = {}
    for key, sel in _groups(ords.astype(np.int64) << 32 | gid_file(b)):
        o, g = key >> 32, key & 0xFFFFFFFF
        uri = storage.join(task.rundir, "icand", f"p{task.partitions[0]:04d}-i{o:04d}-g{g:05d}.parquet")
        write_parquet(uri, pa.table({"a": pa.array(a[sel]), "b": pa.array(b[sel])}))
        icand[(o, g)] = uri
    return icand


def _groups(labels: np.ndarray):
    """(label, row indices) per distinct label, labels ascending (one sort, no mask per group)."""
    order = np.argsort(labels, kind="stable")
    uniq, starts = np.unique(labels[order], return_index=True)
    for lab, rows in zip(uniq.tolist(), np.split(order, starts[1:])):
        yield int(lab), rows
