"""Builders of curated and packed output exactly per INTERFACES.md (for the `dsllm stats` tests),
and tests that the builders themselves keep the contract's invariants.

They write real zstd Parquet shards (curation.document.SCHEMA / the packed columns), manifest.json
with rows, bytes and sha256, and stats.json with a balanced funnel, languages, natural and remixed
domain mixes and multi-dump dedup entries; each returns what it wrote so tests can compute the
expected numbers independently of the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dsllm.curation.document import SCHEMA

WORDS = (
    "the river carried old stories past the mill while children counted boats and the baker "
    "sold bread to travellers who spoke of distant harbours cold winters and bright markets"
).split()
ZH = "春风又绿江南岸明月何时照我还山高水长天地悠悠"
DOMAINS = ("news", "encyclopedia", "forum", "code", "books")
DUMPS = ("CC-MAIN-2023-06", "CC-MAIN-2023-14", "CC-MAIN-2023-23")


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_documents(n: int, seed: int = 0) -> list[dict]:
    """`n` documents with every SCHEMA column; lengths spread over several powers of two."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        lang = "zh" if rng.random() < 0.3 else ("en" if rng.random() < 0.85 else "de")
        length = int(rng.choice([5, 40, 300, 2500]) * (1 + rng.random()))
        if lang == "zh":
            text = "".join(rng.choice(list(ZH), size=length))
        else:
            text = " ".join(rng.choice(WORDS, size=max(1, length // 6)))[:length]
        domain = DOMAINS[int(rng.integers(len(DOMAINS)))]
        crawl = DUMPS[i % len(DUMPS)]
        docs.append(
            {
                "id": hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()[:24],
                "text": text,
                "url": f"https://{domain}.example.org/{i}",
                "crawl": crawl,
                "lang": lang,
                "lang_score": float(np.float32(0.5 + rng.random() / 2)),
                "quality_score": float(np.float32(rng.beta(2, 3))),
                "domain": domain,
                "n_chars": len(text),
                "warc_file": f"{crawl}/seg-{i % 4}.warc.gz",
                "signals": json.dumps({"words": len(text.split())}),
            }
        )
    return docs


def write_curated(
    out: str, shard_rows=(40, 40, 40, 12), seed: int = 0, row_group_size: int = 16, with_stats: bool = True
) -> dict:
    """Curated OUT/ per the contract. Returns {"docs", "shards" (manifest entries), "stats", "manifest"}."""
    docs = make_documents(sum(shard_rows), seed)
    os.makedirs(os.path.join(out, "shards"), exist_ok=True)
    entries, start = [], 0
    for k, n in enumerate(shard_rows):
        rel = f"shards/part-{k:05d}.parquet"
        path = os.path.join(out, rel)
        table = pa.Table.from_pylist(docs[start : start + n], schema=SCHEMA)
        pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)
        entries.append({"path": rel, "rows": n, "bytes": os.path.getsize(path), "sha256": _sha256(path)})
        start += n
    manifest = {
        "kind": "curated",
        "created": "2024-05-01T12:00:00+00:00",
        "versions": {"dsllm": "0.1.0", "pyarrow": pa.__version__},
        "shards": entries,
        "inputs": [
            {"uri": f"/crawl/{d}/seg-{j}.warc.gz", "crawl": d, "status": "done", "error": None, "records": 100}
            for d in DUMPS
            for j in range(2)
        ]
        + [
            {
                "uri": "/crawl/broken.warc.gz",
                "crawl": DUMPS[0],
                "status": "failed",
                "error": "truncated gzip stream",
                "records": 0,
            }
        ],
        "config": {"seed": seed},
    }
    stats = curated_stats(docs)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    if with_stats:
        with open(os.path.join(out, "stats.json"), "w") as f:
            json.dump(stats, f)
    return {"docs": docs, "shards": entries, "stats": stats, "manifest": manifest}


def curated_stats(docs: list[dict]) -> dict:
    """A stats.json whose funnel ends at len(docs), with invariants that hold for every stage."""
    n = len(docs)
    remix_added, remix_dropped = n // 10, n // 20
    before_remix = n - remix_added + remix_dropped
    plan = [
        ("remix", {"downsampled": remix_dropped}, remix_added),
        ("minhash_dedup", {"near_duplicate": 9}, 0),
        ("exact_dedup", {"exact_duplicate": 7}, 0),
        ("pii", {}, 0),
        ("url_filter", {"blocklist": 3}, 0),
        ("quality_model", {"low_score": 11}, 0),
        ("gopher_repetition", {"top_2gram": 4, "dup_lines": 2}, 0),
        ("gopher_quality", {"word_count": 13, "mean_word_length": 1}, 0),
        ("langid", {"low_confidence": 6, "unsupported_language": 5}, 0),
        ("extract", {"empty_text": 17, "not_html": 8}, 0),
        ("read", {"non_response": 30}, 0),
    ]
    stages, out_n = [], n
    for i, (name, dropped, added) in enumerate(plan):
        n_out = out_n
        n_in = n_out + sum(dropped.values()) - added
        if name == "remix":
            n_in = before_remix
        stages.append({"name": name, "in": n_in, "out": n_out, "dropped": dropped, "added": added})
        out_n = n_in
    stages.reverse()
    langs = Counter(d["lang"] for d in docs)
    chars = Counter()
    for d in docs:
        chars[d["lang"]] += d["n_chars"]
    remixed = {
        dom: {
            "documents": sum(1 for d in docs if d["domain"] == dom),
            "chars": sum(d["n_chars"] for d in docs if d["domain"] == dom),
        }
        for dom in DOMAINS
    }
    natural = {
        dom: {
            "documents": v["documents"] + (5 if dom == "forum" else 0) - (3 if dom == "books" else 0),
            "chars": v["chars"],
        }
        for dom, v in remixed.items()
    }
    dumps, index = [], 0
    for j, crawl in enumerate(DUMPS):
        d_in, within, against = 100 + 10 * j, 5 + j, 10 * j
        index_after = index + d_in - within - against
        dumps.append(
            {
                "crawl": crawl,
                "documents_in": d_in,
                "removed_within_dump": within,
                "removed_against_index": against,
                "rate_within_dump": within / d_in,
                "rate_against_index": against / d_in,
                "rate_total": (within + against) / d_in,
                "index_documents_before": index,
                "index_documents_after": index_after,
                "dumps_in_index": j + 1,
            }
        )
        index = index_after
    return {
        "stages": stages,
        "totals": {
            "documents": n,
            "chars": sum(d["n_chars"] for d in docs),
            "bytes": sum(len(d["text"].encode()) for d in docs),
        },
        "languages": {k: {"documents": v, "chars": chars[k]} for k, v in langs.items()},
        "domains": {"natural": natural, "remixed": remixed},
        "dedup": {"dumps": dumps},
    }


def write_packed(
    out: str, shard_rows=(20, 20, 7), seq_len: int = 64, seed: int = 0, eos_id: int = 2, tokenizer: dict | None = None
) -> dict:
    """PACKED/ per the contract: documents of random token ids joined with EOS, the last row of the
    last shard padded. Returns {"rows": [(ids, offsets, n_tokens)], "manifest", "documents"}."""
    rng = np.random.default_rng(seed)
    total_rows = sum(shard_rows)
    documents = 0
    rows, cur, cur_offsets = [], [], []
    while len(rows) < total_rows:
        doc = list(rng.integers(10, 250, size=int(rng.integers(3, 90)))) + [eos_id]
        documents += 1
        while doc and len(rows) < total_rows:
            cur_offsets.append(len(cur))
            take = doc[: seq_len - len(cur)]
            cur += take
            doc = doc[len(take) :]
            if len(cur) == seq_len:
                rows.append((cur, cur_offsets, seq_len))
                cur, cur_offsets = [], []
        if len(rows) == total_rows - 1 and cur and rng.random() < 0.5:
            rows.append((cur + [0] * (seq_len - len(cur)), cur_offsets, len(cur)))  # padded last row
    os.makedirs(out, exist_ok=True)
    schema = pa.schema(
        [("input_ids", pa.list_(pa.int32(), seq_len)), ("doc_offsets", pa.list_(pa.int32())), ("n_tokens", pa.int32())]
    )
    entries, start = [], 0
    for k, n in enumerate(shard_rows):
        part = rows[start : start + n]
        rel = f"part-{k:05d}.parquet"
        path = os.path.join(out, rel)
        table = pa.table(
            {
                "input_ids": pa.FixedSizeListArray.from_arrays(
                    pa.array(np.concatenate([r[0] for r in part]).astype(np.int32)), seq_len
                ),
                "doc_offsets": pa.array([r[1] for r in part], pa.list_(pa.int32())),
                "n_tokens": pa.array([r[2] for r in part], pa.int32()),
            },
            schema=schema,
        )
        pq.write_table(table, path, compression="zstd", row_group_size=8)
        entries.append(
            {
                "path": rel,
                "rows": n,
                "bytes": os.path.getsize(path),
                "sha256": _sha256(path),
                "tokens": int(sum(r[2] for r in part)),
            }
        )
        start += n
    tokens = sum(r[2] for r in rows)
    manifest = {
        "kind": "packed",
        "created": "2024-05-02T08:00:00+00:00",
        "seq_len": seq_len,
        "rows": total_rows,
        "tokens": tokens,
        "pad_tokens": total_rows * seq_len - tokens,
        "documents": documents,
        "tokenizer": tokenizer
        or {"sha256": "ab" * 32, "vocab_size": 256, "eos_id": eos_id, "bos_id": None, "path": "/nonexistent/tokenizer"},
        "bos_policy": "none",
        "shards": entries,
        "source_shards": ["/cur/shards/part-00000.parquet"],
        "config": {"seq_len": seq_len},
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return {"rows": rows, "manifest": manifest, "documents": documents}


# --- the builders keep the contract ----------------------------------------------------------


def test_curated_builder_keeps_invariants(tmp_path):
    built = write_curated(str(tmp_path))
    stages = built["stats"]["stages"]
    assert [s["name"] for s in stages][0] == "read" and stages[-1]["name"] == "remix"
    for prev, s in zip([None] + stages, stages):
        assert s["in"] + s["added"] == s["out"] + sum(s["dropped"].values())
        if prev:
            assert prev["out"] == s["in"]
    assert stages[-1]["out"] == sum(pq.read_metadata(tmp_path / e["path"]).num_rows for e in built["shards"])
    assert pq.read_schema(tmp_path / built["shards"][0]["path"]).equals(SCHEMA)


def test_packed_builder_keeps_invariants(tmp_path):
    built = write_packed(str(tmp_path))
    m = built["manifest"]
    assert m["tokens"] + m["pad_tokens"] == m["rows"] * m["seq_len"]
    t = pq.read_table(tmp_path / "part-00000.parquet")
    assert t.schema.field("input_ids").type.list_size == m["seq_len"]
    assert all(offs[0] == 0 for offs in t.column("doc_offsets").to_pylist())
