"""run_dedup on real prose with planted near duplicates: recall, precision, survivors, determinism."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import pytest

from dsllm.curation.dedup import DedupConfig, run_dedup
from dsllm.curation.dedup.synthetic import (
    chinese_pieces,
    english_pieces,
    near_duplicate,
    pairwise_max_jaccard,
    write_documents,
)
from dsllm.curation.executor import LocalExecutor
from dsllm.jobs.runner import RayExecutor
from tests.curation.shingle_oracle import oracle_shingles


class ThreadExecutor:
    """An executor running tasks concurrently, results in item order."""

    def __init__(self, workers: int):
        self.parallelism = workers
        self.pool = ThreadPoolExecutor(workers)

    def map(self, fn, items, label=None):
        return list(self.pool.map(fn, list(items)))


def _corpus(pieces, n_base, every, chinese, seed):
    """Base pieces plus near duplicates (true Jaccard >= 0.8) of every `every`-th one."""
    rng = random.Random(seed)
    ids, texts, quality, planted = [], [], [], {}
    for i, t in enumerate(pieces[:n_base]):
        ids.append(f"b{i:04d}")
        texts.append(t)
        quality.append(rng.random())
    for i in range(0, n_base, every):
        dup, j = near_duplicate(pieces[i], 0.8, rng, chinese)
        ids.append(f"d{i:04d}")
        texts.append(dup)
        quality.append(rng.random())
        planted[f"d{i:04d}"] = f"b{i:04d}"
    return ids, texts, quality, planted


def _write(tmp_path, ids, texts, quality, n_files=3, crawl="CC-MAIN-2024-10"):
    order = list(range(len(ids)))
    random.Random(0).shuffle(order)
    files = []
    for k in range(n_files):
        sel = order[k::n_files]
        files.append(
            write_documents(
                str(tmp_path / f"in-{crawl}-{k}.parquet"),
                [ids[i] for i in sel],
                [texts[i] for i in sel],
                crawl,
                [quality[i] for i in sel],
            )
        )
    return files


def _removed(outcome, files):
    return set().union(*(outcome.removed(f) for f in files))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_planted_near_duplicates_recall_and_precision(tmp_path, lang):
    pieces = english_pieces() if lang == "en" else chinese_pieces()
    ids, texts, quality, planted = _corpus(pieces, 240, 3, lang == "zh", seed=3)
    files = _write(tmp_path, ids, texts, quality)
    out = run_dedup(files, str(tmp_path / "work"), DedupConfig(partitions=4), None, LocalExecutor())
    removed = _removed(out, files)
    # each planted pair must lose exactly one member (the lower quality one)
    found = sum(1 for d, b in planted.items() if (d in removed) != (b in removed))
    assert found / len(planted) >= 0.95
    qual = dict(zip(ids, quality))
    for d, b in planted.items():
        if (d in removed) != (b in removed):
            loser = d if d in removed else b
            assert qual[loser] <= qual[b if loser == d else d]
    # documents with true Jaccard < 0.5 (of the independent oracle's shingles) to every other document
    # are never removed
    best = pairwise_max_jaccard(texts, oracle_shingles)
    lonely = [i for i, j in zip(ids, best) if j < 0.5]
    assert len(lonely) > 100
    assert sum(1 for i in lonely if i in removed) <= 0.001 * len(lonely)
    (ex, mh) = out.counts
    assert ex.balanced() and mh.balanced() and mh.n_in == ex.n_out
    assert mh.dropped["near_duplicate"] == len(removed)


def test_exact_duplicates_keep_best_quality_then_smallest_id(tmp_path):
    base = english_pieces()[:6]
    variants = [base[0], base[0].upper(), "  " + base[0].replace(" ", "   ") + " !!", base[1], base[1], base[2]]
    ids = ["z", "y", "x", "b", "a", "c"]
    quality = [0.2, 0.9, 0.9, 0.5, 0.5, 0.1]
    files = _write(tmp_path, ids, variants, quality, n_files=2)
    out = run_dedup(files, str(tmp_path / "w"), DedupConfig(minhash=False, partitions=3), None, LocalExecutor())
    assert _removed(out, files) == {"z", "y", "b"}  # x beats y (same quality, smaller id); a beats b
    assert out.counts[0].dropped == {"exact_duplicate": 3}
    assert out.counts[1].n_in == 3 and out.counts[1].n_out == 3


@pytest.mark.parametrize("verify", ["none", "jaccard"])
def test_verify_modes_find_planted(tmp_path, verify):
    ids, texts, quality, planted = _corpus(english_pieces(), 60, 3, False, seed=5)
    files = _write(tmp_path, ids, texts, quality, n_files=2)
    out = run_dedup(files, str(tmp_path / "w"), DedupConfig(verify=verify, partitions=2), None, LocalExecutor())
    removed = _removed(out, files)
    assert sum((d in removed) != (b in removed) for d, b in planted.items()) >= 0.95 * len(planted)
    assert len(removed) <= len(planted) + 1


def test_same_survivors_for_any_executor(tmp_path, ray_local):
    ids, texts, quality, _ = _corpus(english_pieces(), 90, 2, False, seed=7)
    zh_ids, zh_texts, zh_q, _ = _corpus(chinese_pieces(), 60, 2, True, seed=8)
    files = _write(tmp_path, ids + zh_ids, texts + zh_texts, quality + zh_q, n_files=4)
    results = []
    # the production executor on the session's in-process Ray (tasks in worker processes)
    for name, ex in [("local", LocalExecutor()), ("threads", ThreadExecutor(4)), ("ray", RayExecutor(quiet=True))]:
        out = run_dedup(files, str(tmp_path / f"work-{name}"), DedupConfig(partitions=5), None, ex)
        results.append(({f: sorted(out.removed(f)) for f in files}, [c.to_json() for c in out.counts]))
    assert results[0] == results[1] == results[2]
    assert sum(len(v) for v in results[0][0].values()) >= 70


def test_rerun_resumes_from_artifacts(tmp_path):
    ids, texts, quality, _ = _corpus(english_pieces(), 30, 2, False, seed=9)
    files = _write(tmp_path, ids, texts, quality, n_files=2)
    first = run_dedup(files, str(tmp_path / "w"), DedupConfig(partitions=2), None, LocalExecutor())
    calls = []

    class Counting(LocalExecutor):
        def map(self, fn, items, label=None):
            items = list(items)
            calls.append((fn.__name__, len(items)))
            return super().map(fn, items)

    again = run_dedup(files, str(tmp_path / "w"), DedupConfig(partitions=2), None, Counting())
    assert [sorted(again.removed(f)) for f in files] == [sorted(first.removed(f)) for f in files]
    assert not any(name.endswith("partition_task") for name, _ in calls)  # dump results reused
    assert np.all([c.balanced() for c in again.counts])


def test_keys_files_hold_each_partition_in_its_batch(tmp_path):
    """keys/file-NNNNN-{exact,bands}.arrow: batch p holds exactly the document keys with
    key % partitions == p, with the document's gid, crawl key (and for exact keys quality and id);
    the keys themselves recomputed here document by document."""
    from dsllm.curation.dedup.components import gid
    from dsllm.curation.dedup.minhash import MinhashSignature
    from dsllm.curation.dedup.signatures import BAND, EXACT, FileTask, crawl_key, read_keys, signature_task

    ids, texts, quality, _ = _corpus(english_pieces(), 40, 4, False, seed=11)
    (f,) = _write(tmp_path, ids, texts, quality, n_files=1)
    cfg = DedupConfig(partitions=5)
    signature_task(FileTask(3, f, str(tmp_path / "w"), cfg, 5))
    stored = pq.read_table(f)
    mh = MinhashSignature(cfg)
    gids = gid(3, np.arange(stored.num_rows))
    ck = crawl_key("CC-MAIN-2024-10")
    expected = {EXACT: set(), BAND: set()}
    for row, (doc_id, text, q) in enumerate(
        zip(*(stored.column(c).to_pylist() for c in ("id", "text", "quality_score")))
    ):
        exact, hashes, offsets = mh.text_hashes([text])
        expected[EXACT].add((int(exact[0]), int(gids[row]), ck, round(float(q), 5), doc_id))
        for key in mh.band_keys(mh.from_hashes(hashes, offsets))[0].tolist():
            expected[BAND].add((key, int(gids[row]), ck))
    for kind in (EXACT, BAND):
        seen = set()
        for p in range(5):
            t = read_keys(str(tmp_path / "w"), 3, kind, (p,))
            rows = t.to_pylist()
            assert all(r["key"] % 5 == p for r in rows)
            for r in rows:
                rec = (r["key"], r["gid"], r["crawl_key"])
                seen.add(rec + (round(r["quality"], 5), r["id"]) if kind == EXACT else rec)
        assert seen == expected[kind]
    assert read_keys(str(tmp_path / "w"), 3, BAND, (1, 3)).num_rows == sum(
        read_keys(str(tmp_path / "w"), 3, BAND, (p,)).num_rows for p in (1, 3)
    )


def test_partition_groups_cover_every_partition_once():
    from dsllm.curation.dedup.partitions import KEYS_PER_TASK, partition_groups

    for partitions, rows, par in [(16, 0, 1), (16, 100, 2), (16, 5 * KEYS_PER_TASK, 2), (3, 10**12, 8), (7, 0, 64)]:
        groups = partition_groups(partitions, rows, par)
        assert [p for g in groups for p in g] == list(range(partitions))
        assert len(groups) == min(partitions, max(par, -(-rows // KEYS_PER_TASK), 1))
        assert max(map(len, groups)) - min(map(len, groups)) <= 1


def test_grouped_partition_tasks_decide_as_one_task_per_partition(tmp_path, monkeypatch):
    """Partitions sharing a task (the default for small inputs) remove the same documents, with the
    same reasons and survivors, as one task per partition, within a run and against an index."""
    from dsllm.curation.dedup import partitions as parts_mod

    ids, texts, quality, _ = _corpus(english_pieces(), 120, 2, False, seed=13)
    zh_ids, zh_texts, zh_q, _ = _corpus(chinese_pieces(), 60, 2, True, seed=14)
    ids, texts, quality = ids + zh_ids, texts + zh_texts, quality + zh_q
    texts[5] = texts[7]  # an exact duplicate too
    half = len(ids) // 2
    dump1 = _write(tmp_path, ids[:half], texts[:half], quality[:half], n_files=2, crawl="CC-MAIN-2024-10")
    dump2 = _write(tmp_path, ids[half:], texts[half:], quality[half:], n_files=2, crawl="CC-MAIN-2024-18")
    cfg = DedupConfig(partitions=6)
    results = {}
    for name, per_task in [("one-per-partition", 1), ("grouped", parts_mod.KEYS_PER_TASK)]:
        monkeypatch.setattr(parts_mod, "KEYS_PER_TASK", per_task)
        index = str(tmp_path / f"index-{name}")
        first = run_dedup(dump1, str(tmp_path / f"w1-{name}"), cfg, index, LocalExecutor())
        first.commit_index()
        both = run_dedup(dump1 + dump2, str(tmp_path / f"w2-{name}"), cfg, None, LocalExecutor())
        second = run_dedup(dump2, str(tmp_path / f"w3-{name}"), cfg, index, LocalExecutor())
        results[name] = [
            [pq.read_table(o.removed_rows_uri(i)).to_pylist() for i in range(len(o.files))]
            for o in (first, both, second)
        ]
        assert sum(len(t) for t in results[name][1]) > 20
        reasons = {r["reason"] for run in results[name] for t in run for r in t}
        assert {"minhash_dedup:near_duplicate_indexed", "exact_dedup:exact_duplicate"} <= reasons
    assert results["one-per-partition"] == results["grouped"]
