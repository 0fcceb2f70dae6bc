"""First version: exact dedup on normalized text (MinHash follows)."""

from __future__ import annotations

import dataclasses
import hashlib
import re

import pyarrow.parquet as pq

from curation.stage import StageCounts
from dsllm import storage

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def _norm_key(text: str) -> bytes:
    return hashlib.blake2b(_NON_WORD.sub(" ", text.lower()).strip().encode(), digest_size=8).digest()


def _read(uri: str):
    with storage.open_read(uri) as f:
        return pq.read_table(f, columns=["id", "text", "quality_score", "crawl"]).to_pydict()


@dataclasses.dataclass
class DedupOutcome:
    removed_ids: dict
    counts: list
    dumps: list

    def removed(self, file: str) -> set[str]:
        return self.removed_ids.get(file, set())

    def commit_index(self) -> None:
        return None


def run_dedup(files, workdir, cfg, index, executor) -> DedupOutcome:
    tables = executor.map(_read, list(files))
    best: dict[bytes, tuple] = {}
    for f, t in zip(files, tables):
        for i, q, text in zip(t["id"], t["quality_score"], t["text"]):
            k = _norm_key(text)
            cand = (-(q or 0.0), i, f)
            if k not in best or cand < best[k]:
                best[k] = cand
    removed = {f: set() for f in files}
    n = 0
    for f, t in zip(files, tables):
        for i, text in zip(t["id"], t["text"]):
            n += 1
            if cfg.exact and best[_norm_key(text)][1:] != (i, f):
                removed[f].add(i)
    r = sum(len(v) for v in removed.values())
    exact = StageCounts("exact_dedup", n, n - r)
    exact.drop("exact_duplicate", r) if r else None
    mh = StageCounts("minhash_dedup", n - r, n - r)
    return DedupOutcome(removed, [exact, mh], [])
