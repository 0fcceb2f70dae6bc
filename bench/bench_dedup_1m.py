"""Wall time and peak memory of run_dedup on N synthetic ~2 KB documents (default 1M).

    python bench/bench_dedup_1m.py --docs 1000000 [--workers 1] [--dup-rate 0.1]
    python bench/bench_dedup_1m.py --docs 200000 --dumps 2     # cross-dump, via an index

Documents are Zipf word salad (curation.dedup.synthetic.word_salad) written to Parquet files of
20K rows; a `--dup-rate` share of them are near duplicates (3% of words substituted, true Jaccard
about 0.83 on word 3-grams) of other documents. With `--dumps 2` the odd files form a second dump
whose near duplicates copy documents of the preceding (first-dump) file; the first dump is
deduplicated and committed to a local index, then the second is deduplicated against it
(verified against the index's signatures) and committed. Memory is this process tree's peak RSS
(ru_maxrss of self + children). Prints a markdown table row per phase and a total row.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


class ProcessExecutor:
    """executor.map over a process pool (2 cores here); results in item order."""

    def __init__(self, workers: int):
        self.parallelism = workers
        self.pool = ProcessPoolExecutor(workers)

    def map(self, fn, items, label=None):
        return list(self.pool.map(fn, list(items)))


def generate(tmp: str, n_docs: int, dup_rate: float, rows_per_file: int, seed: int = 0, dumps: int = 1) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsllm.curation.document import SCHEMA

    rng = np.random.default_rng(seed)
    vocab, per_doc = 50_000, 330
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    words = np.array(["".join(rng.choice(letters, size=n)) for n in rng.integers(2, 10, vocab)])
    files, prev = [], None
    for start in range(0, n_docs, rows_per_file):
        n = min(rows_per_file, n_docs - start)
        k = start // rows_per_file
        ranks = np.minimum(rng.zipf(1.2, size=(n, per_doc)), vocab) - 1
        ranks = (ranks + rng.integers(0, vocab, size=(n, 1)) * (ranks > 50)) % vocab
        dup = rng.random(n) < dup_rate
        cross = dumps > 1 and k % 2 == 1 and prev is not None
        pool = prev if cross else ranks  # near duplicate of a doc in this file
        src = rng.integers(0, len(pool), n)  # (second dump: of the first dump's file)
        ranks[dup] = pool[src[dup]]
        edit = (rng.random((n, per_doc)) < 0.03) & dup[:, None]
        ranks[edit] = rng.integers(0, vocab, int(edit.sum()))
        texts = [" ".join(words[r]) for r in ranks]
        ids = [f"{start + i:09d}" for i in range(n)]
        prev = ranks.copy()
        crawl = f"CC-BENCH-{k % dumps}"
        t = pa.table(
            {
                "id": ids,
                "text": pa.array(texts, pa.large_string()),
                "url": [""] * n,
                "crawl": [crawl] * n,
                "lang": ["en"] * n,
                "lang_score": pa.array(np.ones(n, np.float32)),
                "quality_score": pa.array(rng.random(n).astype(np.float32)),
                "domain": [""] * n,
                "n_chars": pa.array([len(x) for x in texts], pa.int32()),
                "warc_file": [""] * n,
                "signals": ["{}"] * n,
            },
            schema=SCHEMA,
        )
        path = os.path.join(tmp, f"in-{start // rows_per_file:05d}.parquet")
        pq.write_table(t, path, compression="zstd")
        files.append(path)
    return files


def cpu_seconds() -> float:
    """User + system CPU of this process and its (finished) children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime  # children: once reaped


def peak_rss_gib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 2**20


def du_mib(path: str) -> float:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs) / 2**20


def cross_dump(tmp, files, args, ex, t_gen, mb) -> None:
    """Dump 1 → index; dump 2 against the index (verified); one table row per dump."""
    from dsllm.curation.dedup import DedupConfig, run_dedup

    cfg, index = DedupConfig(partitions=args.partitions), os.path.join(tmp, "index")
    print(
        f"\n{args.docs:,} docs in {len(files)} files ({mb:.0f} MiB zstd), 2 dumps, generated in {t_gen:.0f}s; "
        f"workers {args.workers}\n"
    )
    print(
        "| dump | docs | dedup wall s | CPU s | commit wall s | peak RSS GiB | removed within | removed against index "
        "| index MiB after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d, part in enumerate((files[0::2], files[1::2])):
        t0, c0 = time.perf_counter(), cpu_seconds()
        out = run_dedup(part, os.path.join(tmp, f"work{d}"), cfg, index, ex)
        t_dedup, c_dedup = time.perf_counter() - t0, cpu_seconds() - c0
        t0 = time.perf_counter()
        out.commit_index()
        t_commit = time.perf_counter() - t0
        (s,) = out.dumps
        print(
            f"| {d + 1} | {s['documents_in']:,} | {t_dedup:.0f} | {c_dedup:.0f} | {t_commit:.0f} | {peak_rss_gib():.2f} "
            f"| {s['removed_within_dump']:,} | {s['removed_against_index']:,} | {du_mib(index):.0f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--dup-rate", type=float, default=0.1)
    ap.add_argument("--rows-per-file", type=int, default=20_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--dumps", type=int, default=1, choices=(1, 2))
    args = ap.parse_args()
    from dsllm.curation.dedup import DedupConfig, run_dedup
    from dsllm.curation.executor import LocalExecutor

    tmp = tempfile.mkdtemp(prefix="bench-dedup-", dir=args.tmp)
    try:
        t0 = time.perf_counter()
        files = generate(tmp, args.docs, args.dup_rate, args.rows_per_file, dumps=args.dumps)
        t_gen = time.perf_counter() - t0
        mb = sum(os.path.getsize(f) for f in files) / 2**20
        rss_gen = peak_rss_gib()
        ex = LocalExecutor() if args.workers == 1 else ProcessExecutor(args.workers)
        if args.dumps == 2:
            cross_dump(tmp, files, args, ex, t_gen, mb)
            return
        t0, c0 = time.perf_counter(), cpu_seconds()
        out = run_dedup(files, os.path.join(tmp, "work"), DedupConfig(partitions=args.partitions), None, ex)
        if args.workers > 1:
            ex.pool.shutdown(wait=True)  # reaped workers count in RUSAGE_CHILDREN (CPU, peak RSS)
        t_dedup, c_dedup = time.perf_counter() - t0, cpu_seconds() - c0
        work_mb = (
            sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(tmp, "work")) for f in fs)
            / 2**20
        )
        ex_c, mh_c = out.counts
        print(
            f"\n{args.docs:,} docs in {len(files)} files ({mb:.0f} MiB zstd), generated in {t_gen:.0f}s "
            f"(peak RSS after generation {rss_gen:.2f} GiB); workers {args.workers}\n"
        )
        print(
            "| docs | workers | dedup wall s | CPU s | docs per CPU s | peak RSS GiB | artifacts MiB | exact removed "
            "| near-dup removed | planted rate |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {args.docs:,} | {args.workers} | {t_dedup:.0f} | {c_dedup:.0f} | {args.docs / c_dedup:,.0f} | {peak_rss_gib():.2f} "
            f"| {work_mb:.0f} | {sum(ex_c.dropped.values()):,} | {sum(mh_c.dropped.values()):,} | {args.dup_rate} |"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
