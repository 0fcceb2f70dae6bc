"""Cross-dump matches are verified: dump 2 against the index of dump 1 (and both in one run).

The LSH split is set to 64 bands x 2 rows so that documents with true Jaccard 0.3-0.5 to an indexed
document share a band key with it almost surely (checked): only verification keeps them.
"""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest

from dsllm import storage
from dsllm.curation.dedup import DedupConfig, run_dedup
from dsllm.curation.dedup.index import DedupIndex
from dsllm.curation.dedup.minhash import MinhashSignature
from dsllm.curation.dedup.signatures import read_parquet, write_parquet
from dsllm.curation.dedup.synthetic import english_pieces, near_duplicate, pairwise_max_jaccard, write_documents
from dsllm.curation.executor import LocalExecutor
from tests.curation.shingle_oracle import oracle_shingles

CFG = DedupConfig(bands=64, rows=2, partitions=3)


@pytest.fixture(scope="module")
def dumps():
    """Dump 1: 120 pieces. Dump 2: near duplicates (J >= 0.8) of pieces 0-59, moderately similar
    documents (0.3 <= J < 0.5) of pieces 60-119, 40 new pieces."""
    rng = random.Random(11)
    p = english_pieces()
    d1 = {f"a{i:03d}": p[i] for i in range(120)}
    near = {f"near{i:03d}": near_duplicate(p[i], 0.8, rng, False)[0] for i in range(60)}
    moderate = {f"mod{i:03d}": near_duplicate(p[i], 0.3, rng, False, max_jaccard=0.49)[0] for i in range(60, 120)}
    fresh = {f"new{i:03d}": p[i] for i in range(300, 340)}
    return d1, near, moderate, fresh


def _write(tmp_path, d1, d2):
    f1 = write_documents(str(tmp_path / "d1.parquet"), list(d1), list(d1.values()), "CC-MAIN-2023-50")
    f2 = write_documents(str(tmp_path / "d2.parquet"), list(d2), list(d2.values()), "CC-MAIN-2024-10")
    return f1, f2


def _check(removed, d1, near, moderate, fresh):
    """Recall on near duplicates; nothing removed whose true Jaccard to every document is < 0.5."""
    assert sum(k in removed for k in near) >= 0.95 * len(near)
    docs = {**d1, **near, **moderate, **fresh}
    best = dict(zip(docs, pairwise_max_jaccard(list(docs.values()), oracle_shingles)))  # independent shingles
    lonely = [k for k in list(moderate) + list(fresh) if best[k] < 0.5]
    assert len(lonely) >= 95
    assert sum(k in removed for k in lonely) <= 0.001 * len(lonely)


def test_moderate_documents_share_band_keys_with_their_source(dumps):
    d1, _, moderate, _ = dumps
    mh = MinhashSignature(CFG)
    src = mh.band_keys(mh.from_texts([d1[f"a{k[3:]}"] for k in moderate])[0])
    mod = mh.band_keys(mh.from_texts(list(moderate.values()))[0])
    assert np.mean((src == mod).any(axis=1)) >= 0.95  # unverified, a shared key would remove them


@pytest.mark.parametrize("verify,where", [("signature", "local"), ("jaccard", "s3")])
def test_dump2_against_index_is_verified(tmp_path, dumps, verify, where, request):
    d1, near, moderate, fresh = dumps
    index = f"s3://{request.getfixturevalue('s3_bucket')}/idx" if where == "s3" else str(tmp_path / "idx")
    cfg = DedupConfig(bands=64, rows=2, partitions=3, verify=verify)
    f1, f2 = _write(tmp_path, d1, {**near, **moderate, **fresh})
    out1 = run_dedup([f1], str(tmp_path / "w1"), cfg, index, LocalExecutor())
    assert out1.removed(f1) == set()
    out1.commit_index()
    (rec,) = DedupIndex(index, cfg).records
    assert rec["payload"] == (["signature", "shingles"] if verify == "jaccard" else ["signature"])
    sigs = read_parquet(storage.join(index, "sigs", rec["batch"], "file-00000.parquet"))
    assert sigs.num_rows == 120 and sigs.column("signature").type.list_size == 128

    out2 = run_dedup([f2], str(tmp_path / "w2"), cfg, index, LocalExecutor())
    removed = out2.removed(f2)
    _check(removed, d1, near, moderate, fresh)
    assert out2.dumps[0]["removed_against_index"] == len(removed)


def test_two_dumps_in_one_run_are_verified_too(tmp_path, dumps):
    d1, near, moderate, fresh = dumps
    f1, f2 = _write(tmp_path, d1, {**near, **moderate, **fresh})
    out = run_dedup([f1, f2], str(tmp_path / "w"), CFG, None, LocalExecutor())
    assert out.removed(f1) == set()
    _check(out.removed(f2), d1, near, moderate, fresh)
    unverified = run_dedup(
        [f1, f2],
        str(tmp_path / "wn"),
        DedupConfig(bands=64, rows=2, partitions=3, verify="none"),
        None,
        LocalExecutor(),
    )
    assert sum(k in unverified.removed(f2) for k in moderate) >= 0.8 * len(moderate)  # what verification saves


def _downgrade_to_v1(index: str, cfg: DedupConfig) -> None:
    """Rewrite a local index as dsllm's first index format: key-only band files, no signatures,
    the batch list in meta.json."""
    idx = DedupIndex(index, cfg)
    for f in storage.list_files(storage.join(index, "bands")):
        keys = np.unique(read_parquet(f.uri).column("key").to_numpy())
        write_parquet(f.uri, pa.table({"key": pa.array(keys)}))
    storage.remove(storage.join(index, "sigs"))
    storage.remove(storage.join(index, "batches"))
    storage.write_json(
        storage.join(index, "meta.json"),
        {
            "version": 1,
            "config": idx.meta["config"],
            "partitions": idx.partitions,
            "documents": idx.documents,
            "dumps": idx.dumps,
            "batches": idx.batches,
        },
    )


def test_index_without_signatures_falls_back_with_a_warning(tmp_path, dumps, caplog):
    d1, near, moderate, fresh = dumps
    index = str(tmp_path / "idx")
    f1, f2 = _write(tmp_path, d1, {**near, **moderate, **fresh})
    run_dedup([f1], str(tmp_path / "w1"), CFG, index, LocalExecutor()).commit_index()
    _downgrade_to_v1(index, CFG)
    with caplog.at_level(logging.WARNING, logger="dsllm.curation.dedup.run"):
        out2 = run_dedup([f2], str(tmp_path / "w2"), CFG, index, LocalExecutor())
    assert "without signatures" in caplog.text and index in caplog.text
    removed = out2.removed(f2)
    assert sum(k in removed for k in near) >= 0.95 * len(near)
    assert sum(k in removed for k in moderate) >= 0.8 * len(moderate)  # the old, unverified behaviour
    assert out2.dumps[0]["index_documents_before"] == 120
    out2.commit_index()  # a version-2 batch joins the version-1 index
    idx = DedupIndex(index, CFG)
    assert idx.legacy_batches and len(idx.records) == 1 and idx.documents == 120 + 160 - len(removed)


def test_concurrent_commits_keep_both_batches(tmp_path, dumps):
    d1, near, moderate, fresh = dumps
    index = str(tmp_path / "idx")
    f1, f2 = _write(tmp_path, d1, {**moderate, **fresh})
    outs = [run_dedup([f], str(tmp_path / f"w{i}"), CFG, index, LocalExecutor()) for i, f in enumerate((f1, f2))]
    with ThreadPoolExecutor(2) as pool:  # both create meta.json and publish at once
        list(pool.map(lambda o: o.commit_index(), outs))
    idx = DedupIndex(index, CFG)
    assert sorted(d["crawl"] for d in idx.dumps) == ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
    assert idx.documents == 120 + 100
