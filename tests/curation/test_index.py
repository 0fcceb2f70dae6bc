"""Cross-dump dedup: an index of kept documents' keys, local and on a real S3 server."""

from __future__ import annotations

import random

import pytest

from dsllm import storage
from dsllm.curation.dedup import DedupConfig, run_dedup
from dsllm.curation.dedup.index import DedupIndex
from dsllm.curation.dedup.synthetic import english_pieces, near_duplicate, write_documents
from dsllm.curation.executor import LocalExecutor
from dsllm.errors import UserError

DUMP_KEYS = {
    "crawl",
    "documents_in",
    "removed_within_dump",
    "removed_against_index",
    "rate_within_dump",
    "rate_against_index",
    "rate_total",
    "index_documents_before",
    "index_documents_after",
    "dumps_in_index",
}


def _dumps(tmp_path):
    """Dump 1: 40 pieces + 10 near dups of them. Dump 2: 20 new pieces, 10 near dups of dump 1,
    5 exact copies from dump 1, 5 near dups of its own new pieces."""
    rng = random.Random(2)
    p = english_pieces()
    d1_ids = [f"a{i}" for i in range(40)] + [f"a{i}x" for i in range(10)]
    d1 = p[:40] + [near_duplicate(p[i], 0.8, rng, False)[0] for i in range(10)]
    d2_ids = (
        [f"n{i}" for i in range(20)]
        + [f"a{i}y" for i in range(20, 30)]
        + [f"a{i}e" for i in range(30, 35)]
        + [f"n{i}x" for i in range(5)]
    )
    d2 = (
        p[100:120]
        + [near_duplicate(p[i], 0.8, rng, False)[0] for i in range(20, 30)]
        + p[30:35]
        + [near_duplicate(p[100 + i], 0.8, rng, False)[0] for i in range(5)]
    )
    f1 = write_documents(str(tmp_path / "d1.parquet"), d1_ids, d1, "CC-MAIN-2023-50")
    f2 = write_documents(str(tmp_path / "d2.parquet"), d2_ids, d2, "CC-MAIN-2024-10")
    return f1, f2


@pytest.mark.parametrize("where", ["local", "s3"])
def test_second_dump_deduplicated_against_index(tmp_path, where, request):
    if where == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        index = f"s3://{bucket}/dedup-index"
    else:
        index = str(tmp_path / "index")
    f1, f2 = _dumps(tmp_path)
    cfg = DedupConfig(partitions=3)
    out1 = run_dedup([f1], str(tmp_path / "w1"), cfg, index, LocalExecutor())
    assert out1.removed(f1) == {f"a{i}x" for i in range(10)}
    (d1,) = out1.dumps
    assert DUMP_KEYS <= set(d1)
    assert (d1["removed_within_dump"], d1["removed_against_index"], d1["index_documents_after"]) == (10, 0, 40)
    out1.commit_index()
    idx = DedupIndex(index, cfg)
    assert idx.documents == 40 and [d["crawl"] for d in idx.dumps] == ["CC-MAIN-2023-50"]
    assert storage.read_json(storage.join(index, "meta.json"))["partitions"] == 3

    out2 = run_dedup([f2], str(tmp_path / "w2"), cfg, index, LocalExecutor())
    removed = out2.removed(f2)
    assert {f"a{i}y" for i in range(20, 30)} | {f"a{i}e" for i in range(30, 35)} <= removed
    assert {f"n{i}x" for i in range(5)} <= removed and not removed & {f"n{i}" for i in range(20)}
    (d2,) = out2.dumps
    assert d2["removed_against_index"] == 15 and d2["removed_within_dump"] == 5
    assert d2["index_documents_before"] == 40 and d2["index_documents_after"] == 60
    assert d2["dumps_in_index"] == 2 and d2["rate_total"] == pytest.approx(20 / 40)
    assert out2.counts[0].dropped == {"exact_duplicate_indexed": 5}
    assert out2.counts[1].dropped == {"near_duplicate_indexed": 10, "near_duplicate": 5}
    out2.commit_index()
    out2.commit_index()  # idempotent
    assert DedupIndex(index, cfg).documents == 60
    # a rerun after the commit does not deduplicate the dump against itself
    again = run_dedup([f2], str(tmp_path / "w2"), cfg, index, LocalExecutor())
    assert again.removed(f2) == removed and again.dumps[0]["index_documents_before"] == 40


def test_two_dumps_in_one_run_equal_two_runs_with_index(tmp_path):
    f1, f2 = _dumps(tmp_path)
    cfg = DedupConfig(partitions=2)
    both = run_dedup([f1, f2], str(tmp_path / "w"), cfg, None, LocalExecutor())
    assert [d["crawl"] for d in both.dumps] == ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
    assert both.dumps[1]["removed_against_index"] == 15 and both.dumps[1]["dumps_in_index"] == 2
    index = str(tmp_path / "idx")
    run_dedup([f1], str(tmp_path / "w1"), cfg, index, LocalExecutor()).commit_index()
    second = run_dedup([f2], str(tmp_path / "w2"), cfg, index, LocalExecutor())
    assert second.removed(f2) == both.removed(f2)


def test_index_with_other_settings_is_a_user_error(tmp_path):
    f1, _ = _dumps(tmp_path)
    index = str(tmp_path / "idx")
    run_dedup([f1], str(tmp_path / "w"), DedupConfig(partitions=2), index, LocalExecutor()).commit_index()
    with pytest.raises(UserError, match="dedup index"):
        run_dedup([f1], str(tmp_path / "w3"), DedupConfig(num_perm=64), index, LocalExecutor())


def test_index_batch_names_do_not_follow_work_dir_formats():
    """A run's index batch keeps the name the version-3 work dir gave it (values computed by the
    code before the keys files changed format), while its work dir moves with ARTIFACTS: a rerun
    after upgrading still recognizes its own committed batch."""
    from dsllm.curation.dedup.run import ARTIFACTS, BATCH_NAME_VERSION, _fingerprint

    files = ["s3://b/x/docs-0.parquet", "/tmp/y/docs.parquet"]
    assert _fingerprint(DedupConfig(), files, 16, BATCH_NAME_VERSION) == "67c3602f2cf9"
    assert _fingerprint(DedupConfig(verify="jaccard", partitions=4), ["a"], 4, BATCH_NAME_VERSION) == "bc34e026b158"
    assert _fingerprint(DedupConfig(), files, 16, ARTIFACTS) != "67c3602f2cf9"
