"""`dsllm tokenizer eval`: bytes per token by source and language, for one or two tokenizers.

Each `--data` PATH is a source: curated shards (an OUT dir, a shard dir, a Parquet file, a glob
or an s3:// prefix; grouped by their `lang` column) or a UTF-8 text file (language from
`text_lang`, default "unknown"). Up to `max_bytes` of text is encoded per (source, language),
in batches (`encode_batch`, parallel in Rust), without BOS/EOS. Higher bytes per token means
a more compact encoding.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator

from dsllm import storage
from dsllm.errors import UserError
from dsllm.tokenizer.io import load_tokenizer
from dsllm.tokenizer.train import iter_shard_batches, shard_files

TEXT_CHUNK_BYTES = 1 << 16


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Section [eval] of configs/tokenizer.toml."""

    max_bytes: int = 50_000_000  # text encoded per (source, language)
    batch_rows: int = 256
    text_lang: str = "unknown"  # language label of plain-text sources

    def __post_init__(self):
        if self.max_bytes <= 0 or self.batch_rows <= 0:
            raise ValueError("max_bytes and batch_rows must be positive")


def is_parquet_source(path: str) -> bool:
    if path.endswith(".parquet") or storage.exists(storage.join(path, "manifest.json")):
        return True
    if storage.is_s3(path) or any(c in path for c in "*?[") or not storage.exists(path):
        return any(f.uri.endswith(".parquet") for f in storage.list_files(path))
    return False


def _text_file_chunks(path: str) -> Iterator[str]:
    """Chunks of about 64 KB of a text file, cut at line ends (streamed)."""
    with storage.open_read(path) as f:
        while True:
            block = f.read(TEXT_CHUNK_BYTES)
            if not block:
                return
            block += f.readline()
            try:
                yield block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def source_batches(path: str, cfg: EvalConfig) -> Iterator[tuple[str, list[str]]]:
    """(language, texts) batches from one source."""
    import numpy as np
    import pyarrow as pa

    if not is_parquet_source(path):
        if not storage.exists(path):
            raise UserError(f"{path}: no such file")
        batch: list[str] = []
        for chunk in _text_file_chunks(path):
            batch.append(chunk)
            if len(batch) >= cfg.batch_rows:
                yield cfg.text_lang, batch
                batch = []
        if batch:
            yield cfg.text_lang, batch
        return
    for f in shard_files([path]):
        for rb in iter_shard_batches(f.uri, ["text", "lang"], cfg.batch_rows):
            langs = np.asarray(rb.column("lang").fill_null("unknown").to_numpy(zero_copy_only=False), dtype=object)
            for lang in np.unique(langs):
                idx = np.flatnonzero(langs == lang)
                yield str(lang), rb.column("text").take(pa.array(idx)).to_pylist()


def _count_tokens(tok, texts: list[str]) -> int:
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    return sum(len(e.ids) for e in encode(texts, add_special_tokens=False))


def evaluate(dirs: list[str], data: list[str], cfg: EvalConfig) -> list[dict]:
    """Rows {source, lang, documents, bytes, chars, tokens[i], bytes_per_token[i]} for each
    (source, language) and an "all" row per source; index i follows `dirs`."""
    toks = [load_tokenizer(d)[0] for d in dirs]
    rows = []
    for source in data:
        stats: dict[str, dict] = defaultdict(
            lambda: {"documents": 0, "bytes": 0, "chars": 0, "tokens": [0] * len(toks)}
        )
        for lang, texts in source_batches(source, cfg):
            s = stats[lang]
            if s["bytes"] >= cfg.max_bytes:
                if all(v["bytes"] >= cfg.max_bytes for v in stats.values()):
                    break
                continue
            texts = [t for t in texts if t]
            s["documents"] += len(texts)
            s["bytes"] += sum(len(t.encode("utf-8")) for t in texts)
            s["chars"] += sum(len(t) for t in texts)
            for i, tok in enumerate(toks):
                s["tokens"][i] += _count_tokens(tok, texts)
        if not stats:
            raise UserError(f"{source}: no text found")
        total = {"documents": 0, "bytes": 0, "chars": 0, "tokens": [0] * len(toks)}
        for lang in sorted(stats):
            s = stats[lang]
            rows.append(_row(source, lang, s))
            for k in ("documents", "bytes", "chars"):
                total[k] += s[k]
            total["tokens"] = [a + b for a, b in zip(total["tokens"], s["tokens"])]
        if len(stats) > 1:
            rows.append(_row(source, "all", total))
    return rows


def _row(source: str, lang: str, s: dict) -> dict:
    return {
        "source": source,
        "lang": lang,
        "documents": s["documents"],
        "bytes": s["bytes"],
        "chars": s["chars"],
        "tokens": list(s["tokens"]),
        "bytes_per_token": [round(s["bytes"] / t, 4) if t else None for t in s["tokens"]],
    }


def format_table(rows: list[dict], dirs: list[str]) -> str:
    """A markdown table, tokenizers side by side (and the token ratio for two)."""
    head = ["source", "lang", "docs", "MB"] + [f"bytes/token {d}" for d in dirs]
    if len(dirs) == 2:
        head.append("tokens 2nd / 1st")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["source"], r["lang"], str(r["documents"]), f"{r['bytes'] / 1e6:.2f}"]
        cells += [f"{b:.3f}" if b else "-" for b in r["bytes_per_token"]]
        if len(dirs) == 2:
            a, b = r["tokens"]
            cells.append(f"{b / a:.3f}" if a else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
