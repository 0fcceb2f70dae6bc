"""`run_dedup`: the passes of exact and MinHash dedup over a set of files, dump by dump.

Dumps (values of `crawl`) are processed in sorted order; each one is deduplicated within itself
and against the index plus the earlier dumps of this run (DeepSeek's "across dumps"). Per dump:
exact partitions → band partitions → [join → verify] → forests merged pairwise → components →
one survivor per component (highest quality_score, then smallest id); components that touch the
index lose every member. Matches against earlier dumps and the index are verified like matches
within the dump (see verify.py), unless `verify = "none"` or the index predates signatures.
Everything fans out through `executor.map`; results depend only on the
inputs and the config, never on the executor or its parallelism.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np
import pyarrow as pa

from dsllm import storage
from dsllm.config import config_to_dict
from dsllm.curation.dedup.components import INDEX_NODE, gid, gid_file, gid_row, merge_forests
from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.index import DedupIndex, publish_batch, signature_path, write_index_partition
from dsllm.curation.dedup.partitions import (
    PartitionTask,
    band_partition_task,
    exact_partition_task,
    partition_groups,
    read_gids,
    write_gids,
)
from dsllm.curation.dedup.signatures import (
    BAND,
    EXACT,
    FileTask,
    crawl_key,
    docs_path,
    read_keys,
    read_parquet,
    signature_task,
    write_parquet,
)
from dsllm.curation.dedup.verify import IndexJoinTask, JoinTask, index_join_task, join_task, verify_task
from dsllm.curation.stage import StageCounts

log = logging.getLogger(__name__)
ARTIFACTS = 4  # version of the work-dir artifacts (part of the fingerprint); 4: keys as Arrow IPC files
# the index batch a run commits is named by the fingerprint with this frozen version, not ARTIFACTS:
# a new work-dir format must not rename the batches of the same run (a rerun after the commit
# recognizes its own batch and does not deduplicate against it)
BATCH_NAME_VERSION = 3

REASONS = {
    ("exact", "within"): "exact_duplicate",
    ("exact", "against"): "exact_duplicate_indexed",
    ("minhash", "within"): "near_duplicate",
    ("minhash", "against"): "near_duplicate_indexed",
}


@dataclasses.dataclass
class DedupOutcome:
    """What `run_dedup` decided; small and picklable (removals live in artifacts)."""

    files: list
    workdir: str
    counts: list
    dumps: list
    index: str | None = None
    cfg: DedupConfig | None = None
    partitions: int = 0
    batch: str = ""
    removed_uris: list = dataclasses.field(default_factory=list)
    executor: object = dataclasses.field(default=None, repr=False, compare=False)

    def removed(self, file: str) -> set[str]:
        """Ids of `file` that dedup removes."""
        i = self.files.index(file)
        return set(read_parquet(_removed_ids_path(self.workdir, i)).column("id").to_pylist())

    def removed_rows_uri(self, i: int) -> str:
        """Where the rows of `files[i]` that dedup removes are listed: a Parquet file of id, row,
        reason (`stage:reason`) and duplicate_of (the id of the kept document it duplicates, null
        when that one is in the index)."""
        return _removed_ids_path(self.workdir, i)

    def commit_index(self) -> None:
        """Add this run's survivors to the index (idempotent). Call after publishing the shards."""
        if not self.index:
            return
        if DedupIndex(self.index, self.cfg).has_batch(self.batch):
            return
        removed = tuple(self.removed_uris)
        self.executor.map(
            _commit_partition,
            [(self.workdir, len(self.files), p, self.index, self.batch, removed) for p in range(self.partitions)],
        )
        payload = ["signature", "shingles"] if self.cfg.verify == "jaccard" else ["signature"]
        if self.cfg.minhash:
            self.executor.map(
                _commit_signatures,
                [(self.workdir, i, self.index, self.batch, removed, payload) for i in range(len(self.files))],
            )
        publish_batch(
            self.index,
            self.cfg,
            self.partitions,
            self.batch,
            [
                {
                    "crawl": d["crawl"],
                    "documents": d["documents_in"] - d["removed_within_dump"] - d["removed_against_index"],
                }
                for d in self.dumps
            ],
            files=len(self.files),
            payload=payload if self.cfg.minhash else [],
        )

    def __getstate__(self):
        state = dict(self.__dict__)
        state["executor"] = None
        return state


def run_dedup(files: list[str], workdir: str, cfg: DedupConfig, index: str | None, executor) -> DedupOutcome:
    """Exact and MinHash dedup of `files` (SCHEMA parquet), optionally against `index`."""
    files = list(files)
    probe = DedupIndex(index, cfg) if index else None
    partitions = probe.partitions if probe and probe.partitions else cfg.partitions
    fp = _fingerprint(cfg, files, partitions, ARTIFACTS)
    batch = "b-" + _fingerprint(cfg, files, partitions, BATCH_NAME_VERSION)
    idx = DedupIndex(index, cfg, exclude_batch=batch) if index else None
    work = storage.join(workdir, f"dedup-{fp}")
    if idx and idx.legacy_batches and cfg.minhash and cfg.verify != "none":
        log.warning(
            "dedup index %s: %d batch(es) written without signatures (index version 1); near "
            "duplicates of them are removed unverified (one shared band key suffices)",
            index,
            len(idx.legacy_batches),
        )
    summaries = executor.map(signature_task, [FileTask(i, f, work, cfg, partitions) for i, f in enumerate(files)])
    crawls: dict[str, int] = {}
    for s in summaries:
        for c, n in s["crawls"].items():
            crawls[c] = crawls.get(c, 0) + n
    run = storage.join(work, "run-" + _sha(json.dumps([index, idx.batches if idx else []])))
    key_rows = sum(s["rows"] for s in summaries) * (int(cfg.exact) + (cfg.band_rows[0] if cfg.minhash else 0))
    groups = partition_groups(partitions, key_rows, executor.parallelism)
    dumps, removed_uris = [], []
    before = idx.documents if idx else 0
    n_index_dumps = len(idx.dumps) if idx else 0
    for d, crawl in enumerate(sorted(crawls)):
        result = _dump(d, crawl, sorted(crawls)[:d], removed_uris, work, run, len(files), groups, idx, cfg, executor)
        removed_uris.append(result["removed_uri"])
        n_in = crawls[crawl]
        within, against = result["within"], result["against"]
        after = before + n_in - within - against
        dumps.append(
            {
                "crawl": crawl,
                "documents_in": n_in,
                "removed_within_dump": within,
                "removed_against_index": against,
                "rate_within_dump": _rate(within, n_in),
                "rate_against_index": _rate(against, n_in),
                "rate_total": _rate(within + against, n_in),
                "index_documents_before": before,
                "index_documents_after": after,
                "dumps_in_index": n_index_dumps + d + 1,
                "exact": result["exact"],
                "minhash": result["minhash"],
            }
        )
        before = after
    _write_removed_ids(files, work, removed_uris, executor)
    return DedupOutcome(
        files,
        work,
        _counts(dumps, sum(crawls.values())),
        dumps,
        index,
        cfg,
        partitions,
        batch=batch,
        removed_uris=removed_uris,
        executor=executor,
    )


def _dump(d, crawl, earlier, removed_uris, work, run, n_files, groups, idx: DedupIndex | None, cfg, executor) -> dict:
    """Deduplicate one dump; returns counts and the uri of its removed gids (cached)."""
    rundir = storage.join(run, f"dump-{d:03d}")
    done = storage.join(rundir, "result.json")
    if storage.exists(done):
        return storage.read_json(done)
    base = dict(
        workdir=work,
        rundir=rundir,
        n_files=n_files,
        crawl_key=crawl_key(crawl),
        earlier_keys=tuple(crawl_key(c) for c in earlier),
        earlier_removed=tuple(removed_uris),
        exact_removed=None,
        index=idx.uri if idx else None,
        index_batches=tuple(idx.batches) if idx else (),
        index_legacy=tuple(idx.legacy_batches) if idx else (),
        cfg=cfg,
        index_verified=tuple(b for b in idx.batches if b not in idx.legacy_batches) if idx else (),
    )
    removed = {}  # (stage, how) -> gids
    of = {}  # (stage, how) -> gid of the kept document each removed one duplicates (INDEX_NODE: unknown)
    if cfg.exact:
        parts = executor.map(exact_partition_task, [PartitionTask(g, **base) for g in groups])
        for how in ("within", "against"):
            removed[("exact", how)] = np.concatenate([r[how] for r in parts] + [np.zeros(0, np.uint64)])
            of[("exact", how)] = np.concatenate([r[how + "_of"] for r in parts] + [np.zeros(0, np.uint64)])
    exact_uri = storage.join(rundir, "exact-removed.parquet")
    write_gids(
        exact_uri,
        np.sort(np.concatenate([removed.get(("exact", h), np.zeros(0, np.uint64)) for h in ("within", "against")])),
    )
    if cfg.minhash:
        base["exact_removed"] = exact_uri
        payloads = tuple(_index_payload(idx, b, cfg) for b in base["index_verified"])
        within, within_of, against = _near_duplicates(base, payloads, groups, rundir, work, cfg, executor)
        removed[("minhash", "within")], removed[("minhash", "against")] = within, against
        of[("minhash", "within")] = within_of
        of[("minhash", "against")] = np.full(len(against), INDEX_NODE, dtype=np.uint64)
    table = pa.concat_tables(
        [
            pa.table(
                {
                    "gid": pa.array(g, pa.uint64()),
                    "reason": pa.array([REASONS[k]] * len(g), pa.string()),
                    "of": pa.array(of[k], pa.uint64()),
                }
            )
            for k, g in removed.items()
        ]
        + [
            pa.table(
                {"gid": pa.array([], pa.uint64()), "reason": pa.array([], pa.string()), "of": pa.array([], pa.uint64())}
            )
        ]
    )
    removed_uri = storage.join(rundir, "removed.parquet")
    write_parquet(removed_uri, table.sort_by("gid"))
    n = {k: int(len(v)) for k, v in removed.items()}
    result = {
        "removed_uri": removed_uri,
        "within": n.get(("exact", "within"), 0) + n.get(("minhash", "within"), 0),
        "against": n.get(("exact", "against"), 0) + n.get(("minhash", "against"), 0),
        "exact": {"within": n.get(("exact", "within"), 0), "against": n.get(("exact", "against"), 0)},
        "minhash": {"within": n.get(("minhash", "within"), 0), "against": n.get(("minhash", "against"), 0)},
    }
    storage.write_json(done, result)
    return result


def _index_payload(idx: DedupIndex, batch: str, cfg: DedupConfig) -> str:
    """What candidates against `batch` are verified on: the run's mode if the batch stores it."""
    return "shingles" if cfg.verify == "jaccard" and "shingles" in idx.payload(batch) else "signature"


def _near_duplicates(base, payloads, groups, rundir, work, cfg, executor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(removed within the dump, the survivor each duplicates, removed against earlier dumps or the index)."""
    parts = executor.map(band_partition_task, [PartitionTask(g, **base) for g in groups])
    hits = np.unique(np.concatenate([r["hits"] for r in parts] + [np.zeros(0, np.uint64)]))
    if cfg.verify == "none":
        forests = [r["forest"] for r in parts]
    else:
        by_b: dict[int, list] = {}
        by_ib: dict[tuple, list] = {}
        for r in parts:
            for g, uri in r["cand"].items():
                by_b.setdefault(g, []).append(uri)
            for og, uri in r["icand"].items():
                by_ib.setdefault(og, []).append(uri)
        joined = executor.map(join_task, [JoinTask(g, tuple(u), work, rundir, cfg) for g, u in sorted(by_b.items())])
        batches = base["index_verified"]
        joined += executor.map(
            index_join_task,
            [
                IndexJoinTask(o, batches[o], g, tuple(u), base["index"], rundir, payloads[o])
                for (o, g), u in sorted(by_ib.items())
            ],
        )
        by_a: dict[int, list] = {}
        for r in joined:
            for f, uri in r.items():
                by_a.setdefault(f, []).append(uri)
        forests = executor.map(verify_task, [JoinTask(f, tuple(u), work, rundir, cfg) for f, u in sorted(by_a.items())])
    forests.append(np.stack([hits, np.full(len(hits), INDEX_NODE)], axis=1))
    while len(forests) > 1:  # pairwise merges: each task holds two forests, never all edges
        pairs = [forests[i : i + 2] for i in range(0, len(forests), 2)]
        forests = executor.map(merge_forests, pairs)
    forest = forests[0] if forests else np.zeros((0, 2), np.uint64)
    # forest edges are (node, root) with root the component's smallest node; INDEX_NODE is the
    # largest, so a component touching the index has some node whose... edge to INDEX_NODE
    nodes = np.concatenate([forest[:, 0], forest[:, 1]])
    roots = np.concatenate([forest[:, 1], forest[:, 1]])
    nodes, first = np.unique(nodes, return_index=True)
    roots = roots[first]
    indexed_roots = np.unique(roots[nodes == INDEX_NODE])
    against_mask = np.isin(roots, indexed_roots) & (nodes != INDEX_NODE)
    against = nodes[against_mask]
    members, labels = nodes[~against_mask & (nodes != INDEX_NODE)], roots[~against_mask & (nodes != INDEX_NODE)]
    losers, winners = _losers(members, labels, work, executor)
    return losers, winners, against


def _losers(members: np.ndarray, labels: np.ndarray, work: str, executor) -> tuple[np.ndarray, np.ndarray]:
    """All members but the best of each component (highest quality, then smallest id), and for
    each of them the best of its component (the kept document it duplicates)."""
    if len(members) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    files = gid_file(members)
    tasks = [(work, int(f), members[files == f], labels[files == f]) for f in np.unique(files)]
    t = pa.concat_tables(executor.map(_gather_task, tasks))
    t = t.sort_by([("label", "ascending"), ("neg_q", "ascending"), ("id", "ascending"), ("gid", "ascending")])
    lab = t.column("label").to_numpy()
    loser = np.ones(len(lab), dtype=bool)
    loser[np.unique(lab, return_index=True)[1]] = False
    g = t.column("gid").to_numpy()
    best = np.maximum.accumulate(np.where(loser, 0, np.arange(len(lab))))  # sorted: the best comes first
    return g[loser], g[best][loser]


def _gather_task(args) -> pa.Table:
    work, f, gids, labels = args
    docs = read_parquet(docs_path(work, f), columns=["id", "quality"]).take(pa.array(gid_row(gids)))
    return pa.table(
        {
            "label": pa.array(labels),
            "gid": pa.array(gids),
            "neg_q": pa.array(-docs.column("quality").to_numpy()),
            "id": docs.column("id").cast(pa.string()),
        }
    )


def _removed_ids_path(work: str, i: int) -> str:
    return storage.join(work, "removed", f"file-{i:05d}.parquet")


STAGE_OF = {"exact": "exact_dedup", "near": "minhash_dedup"}


def _write_removed_ids(files, work, removed_uris, executor) -> None:
    """Per file: the ids and rows it loses, their `stage:reason`, and the id of the kept document
    each duplicates (null when it is in the index)."""
    t = pa.concat_tables(
        [read_parquet(u, columns=["gid", "reason", "of"]) for u in removed_uris]
        + [
            pa.table(
                {"gid": pa.array([], pa.uint64()), "reason": pa.array([], pa.string()), "of": pa.array([], pa.uint64())}
            )
        ]
    )
    gids, of = t.column("gid").to_numpy(), t.column("of").to_numpy()
    reasons = np.array([f"{STAGE_OF[r.split('_', 1)[0]]}:{r}" for r in t.column("reason").to_pylist()], dtype=object)
    of_ids = np.full(len(of), None, dtype=object)
    known = np.flatnonzero(of != INDEX_NODE)
    of_files = gid_file(of[known])
    holders = np.unique(of_files)
    for j, ids in zip(holders, executor.map(_ids_task, [(work, int(j), of[known][of_files == j]) for j in holders])):
        of_ids[known[of_files == j]] = ids
    f = gid_file(gids)
    executor.map(
        _removed_ids_task, [(work, i, gids[f == i], reasons[f == i], of_ids[f == i]) for i in range(len(files))]
    )


def _ids_task(args) -> list[str]:
    """The ids of `gids` (all in file `i`), in their order."""
    work, i, gids = args
    return read_parquet(docs_path(work, i), columns=["id"]).column("id").take(pa.array(gid_row(gids))).to_pylist()


def _removed_ids_task(args) -> None:
    work, i, gids, reasons, of_ids = args
    order = np.argsort(gids, kind="stable")
    rows = gid_row(gids[order])
    if len(gids) == 0:
        ids = pa.array([], pa.string())
    else:
        ids = read_parquet(docs_path(work, i), columns=["id"]).column("id").take(pa.array(rows)).cast(pa.string())
    table = pa.table(
        {
            "id": ids,
            "row": pa.array(rows, pa.int64()),
            "reason": pa.array(list(reasons[order]), pa.string()),
            "duplicate_of": pa.array(list(of_ids[order]), pa.string()),
        }
    )
    write_parquet(_removed_ids_path(work, i), table)


def _commit_partition(args) -> None:
    """Write this run's surviving exact and band keys of one partition into the index."""
    work, n_files, p, index, batch, removed_uris = args
    removed = np.concatenate([read_gids(u) for u in removed_uris] + [np.zeros(0, np.uint64)])
    kept = {}
    for kind in (EXACT, BAND):
        t = pa.concat_tables([read_keys(work, i, kind, (p,)) for i in range(n_files)])
        live = ~np.isin(t.column("gid").to_numpy(), removed)
        kept[kind] = (t.column("key").to_numpy()[live], t.column("gid").to_numpy()[live])
    write_index_partition(index, batch, p, kept[EXACT][0], kept[BAND][0], kept[BAND][1])


def _commit_signatures(args) -> None:
    """Write the signatures (and shingle sets) of one run file's kept documents into the index."""
    work, i, index, batch, removed_uris, payload = args
    docs = read_parquet(docs_path(work, i))
    if "signature" not in docs.column_names:  # a file without documents
        docs = pa.table({"row": pa.array([], pa.int32()), **{c: pa.array([], pa.list_(pa.uint32())) for c in payload}})
    gids = gid(i, docs.column("row").to_numpy())
    removed = np.concatenate([read_gids(u) for u in removed_uris] + [np.zeros(0, np.uint64)])
    keep = pa.array(~np.isin(gids, removed))
    write_parquet(
        signature_path(index, batch, i),
        pa.table({"gid": pa.array(gids).filter(keep), **{c: docs.column(c).filter(keep) for c in payload}}),
        dictionary=True,  # index files are written as before
    )


def _counts(dumps: list[dict], n_in: int) -> list[StageCounts]:
    exact, minhash = StageCounts("exact_dedup", n_in), StageCounts("minhash_dedup")
    for d in dumps:
        for how, key in (("within", "exact_duplicate"), ("against", "exact_duplicate_indexed")):
            if d["exact"][how]:
                exact.drop(key, d["exact"][how])
        for how, key in (("within", "near_duplicate"), ("against", "near_duplicate_indexed")):
            if d["minhash"][how]:
                minhash.drop(key, d["minhash"][how])
    exact.n_out = exact.n_in - sum(exact.dropped.values())
    minhash.n_in = exact.n_out
    minhash.n_out = minhash.n_in - sum(minhash.dropped.values())
    return [exact, minhash]


def _rate(n: int, total: int) -> float:
    return round(n / total, 6) if total else 0.0


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _fingerprint(cfg: DedupConfig, files: list[str], partitions: int, version: int) -> str:
    return _sha(
        json.dumps(
            {"cfg": config_to_dict(cfg), "files": files, "partitions": partitions, "artifacts": version},
            sort_keys=True,
        )
    )
