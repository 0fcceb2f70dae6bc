"""`dsllm tokenizer train`: byte-level BPE trained on a language-balanced sample of curated shards.

    shards ──ShardTextSampler──▶ batches of text ──tokenizers BpeTrainer──▶ DIR/tokenizer.json
                                   (per-language byte budgets,                + tokenizer_config.json
                                    streamed Arrow batches)                   + training.json

Memory: the text is streamed in Arrow batches (read one shard at a time, never held whole);
what grows with the sample is `tokenizers`' table of distinct pre-tokenized words, which grows
sublinearly with the sample for English and faster for Chinese (DeepSeek's pre-tokenizer keeps
runs of CJK characters together). `bench/bench_tokenizer.py` measures it.

Ids follow DeepSeek's layout: 0..255 the byte symbols (all 256, always), then merges up to
`vocab_size`, then BOS and EOS. Unlike DeepSeek's released tokenizer there are no added byte
tokens: every byte is in the base alphabet, so every Unicode string round-trips.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator

from dsllm import console, storage
from dsllm.config import config_to_dict
from dsllm.errors import UserError
from dsllm.tokenizer import deepseek

TRAINING_RECORD = "training.json"
OTHER_LANGS = "*"


@dataclasses.dataclass(frozen=True)
class TokenizerTrainConfig:
    """How to sample text and train (section [train] of configs/tokenizer.toml)."""

    vocab_size: int = 100_000  # ordinary tokens (256 bytes + merges); BOS/EOS come on top
    sample_bytes: int = 1_000_000_000  # UTF-8 bytes of text to train on (DeepSeek used ~24 GB)
    lang_mix: dict = dataclasses.field(default_factory=lambda: {"en": 0.5, "zh": 0.5})  # "*": other langs
    max_token_length: int = 128  # in byte symbols; DeepSeek's longest token has 128; 0 = no limit
    min_frequency: int = 2
    doc_fraction: float = 1.0  # keep each document with this probability (spreads the sample)
    seed: int = 0
    batch_rows: int = 1024  # Arrow batch size when streaming shards

    def __post_init__(self):
        if self.vocab_size < 257:
            raise ValueError(f"vocab_size must exceed the 256 byte symbols, got {self.vocab_size}")
        if self.sample_bytes <= 0:
            raise ValueError(f"sample_bytes must be positive, got {self.sample_bytes}")
        if not self.lang_mix or any(not isinstance(v, (int, float)) or v <= 0 for v in self.lang_mix.values()):
            raise ValueError(f"lang_mix needs positive fractions, got {self.lang_mix}")
        if abs(sum(self.lang_mix.values()) - 1.0) > 1e-6:
            raise ValueError(f"lang_mix fractions must sum to 1, got {sum(self.lang_mix.values())}")
        if not 0 < self.doc_fraction <= 1:
            raise ValueError(f"doc_fraction must be in (0, 1], got {self.doc_fraction}")
        if self.max_token_length < 0 or self.min_frequency < 0 or self.batch_rows <= 0:
            raise ValueError("max_token_length, min_frequency must be >= 0 and batch_rows > 0")

    def budgets(self) -> dict[str, int]:
        """Bytes of text to take per language."""
        return {lang: int(self.sample_bytes * frac) for lang, frac in self.lang_mix.items()}


def shard_files(paths: list[str]) -> list[storage.FileInfo]:
    """Parquet files named by paths: files, directories, globs, S3 prefixes, or curated OUT dirs
    (whose manifest.json lists the shards)."""
    files: list[storage.FileInfo] = []
    for path in paths:
        manifest = storage.join(path, "manifest.json")
        if not path.endswith(".parquet") and storage.exists(manifest):
            m = storage.read_json(manifest)
            if m.get("kind") == "curated":
                files += [
                    storage.FileInfo(storage.join(path, s["path"]), int(s.get("bytes", 0))) for s in m.get("shards", [])
                ]
                continue
        found = [f for f in storage.list_files(path) if f.uri.endswith(".parquet")]
        if not found:
            raise UserError(f"{path}: no Parquet shards there")
        files += found
    return files


def iter_shard_batches(uri: str, columns: list[str], batch_rows: int) -> Iterator:
    """Arrow record batches of one shard (local, s3:// or https://), streamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="dsllm-shard-") as tmp:
        # remote shards are fetched to a temporary file one at a time (Parquet needs seeks)
        local = storage.download(uri, os.path.join(tmp, "shard.parquet")) if storage.is_remote(uri) else uri
        try:
            pf = pq.ParquetFile(local)
        except (pa.ArrowInvalid, OSError) as exc:
            raise UserError(f"{uri}: not a readable Parquet shard: {exc}") from None
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise UserError(f"{uri}: shard lacks column(s) {missing}")
        with pf:
            yield from pf.iter_batches(batch_size=batch_rows, columns=columns)


class ShardTextSampler:
    """Streams text from shards until each language's byte budget is filled.

    Selection is vectorized per Arrow batch: per language, the prefix of (optionally
    subsampled) documents whose cumulative UTF-8 size fits the remaining budget.
    """

    def __init__(self, files: list[storage.FileInfo], cfg: TokenizerTrainConfig, progress: bool = True):
        self.files, self.cfg, self.progress = files, cfg, progress
        self.remaining = cfg.budgets()
        self.taken: dict[str, Counter] = {lang: Counter() for lang in self.remaining}
        self.skipped: Counter = Counter()
        self.inputs: list[dict] = []
        self._last_log = 0.0

    def done(self) -> bool:
        return all(v <= 0 for v in self.remaining.values())

    def __iter__(self) -> Iterator[list[str]]:
        for index, f in enumerate(self.files):
            if self.done():
                break
            used = Counter()
            for batch in iter_shard_batches(f.uri, ["text", "lang"], self.cfg.batch_rows):
                for texts, nbytes, ndocs in self._select(batch, index, used):
                    yield texts
                if self.done():
                    break
            self.inputs.append({"uri": f.uri, "documents": used["documents"], "bytes": used["bytes"]})
            self._log(index, force=True)

    def _select(self, batch, shard_index: int, used: Counter):
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        text, lang = batch.column("text"), batch.column("lang").fill_null("")
        nbytes = pc.binary_length(text.cast(pa.large_binary())).fill_null(0).to_numpy(zero_copy_only=False)
        keep = nbytes > 0
        self.skipped["empty"] += int((~keep).sum())
        if self.cfg.doc_fraction < 1:
            rng = np.random.default_rng([self.cfg.seed, shard_index, used["batches"]])
            sampled = rng.random(len(nbytes)) < self.cfg.doc_fraction
            self.skipped["doc_fraction"] += int((keep & ~sampled).sum())
            keep &= sampled
        used["batches"] += 1
        langs = np.asarray(lang.to_numpy(zero_copy_only=False), dtype=object)
        listed = np.isin(langs, [k for k in self.remaining if k != OTHER_LANGS])
        if OTHER_LANGS not in self.remaining:
            self.skipped["lang_not_in_mix"] += int((keep & ~listed).sum())
        for name in self.remaining:
            mask = keep & (~listed if name == OTHER_LANGS else langs == name)
            idx = np.flatnonzero(mask)
            if len(idx) == 0:
                continue
            fits = np.cumsum(nbytes[idx]) <= self.remaining[name]
            chosen = idx[fits]
            self.skipped["budget_full"] += int((~fits).sum())
            if not fits.all():
                self.remaining[name] = 0  # the next document no longer fits: this language is full
            if len(chosen) == 0:
                continue
            got = int(nbytes[chosen].sum())
            if self.remaining[name] > 0:
                self.remaining[name] -= got
            self.taken[name].update(documents=len(chosen), bytes=got)
            used.update(documents=len(chosen), bytes=got)
            self._log(shard_index)
            yield text.take(pa.array(chosen)).to_pylist(), got, len(chosen)

    def _log(self, shard_index: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.progress or (not force and now - self._last_log < 2.0):
            return
        self._last_log = now
        per = ", ".join(f"{k} {v['bytes'] / 1e6:.1f} MB" for k, v in self.taken.items())
        total = sum(v["bytes"] for v in self.taken.values())
        console.note(
            f"tokenizer train: sampled {total / 1e6:.1f}/{self.cfg.sample_bytes / 1e6:.1f} MB ({per}), "
            f"shard {shard_index + 1}/{len(self.files)}"
        )

    def record(self) -> dict:
        """What was sampled: per language, per input, and why documents were skipped."""
        return {
            "documents": sum(v["documents"] for v in self.taken.values()),
            "bytes": sum(v["bytes"] for v in self.taken.values()),
            "by_lang": {
                k: {"documents": v["documents"], "bytes": v["bytes"], "budget_bytes": self.cfg.budgets()[k]}
                for k, v in self.taken.items()
            },
            "skipped": dict(sorted(self.skipped.items())),
            "inputs": self.inputs,
        }


def bpe_trainer(cfg: TokenizerTrainConfig, show_progress: bool = True):
    """The `tokenizers` BpeTrainer: all 256 byte symbols as the base alphabet, no specials yet
    (BOS/EOS are added after training so that they follow the ordinary tokens, as in DeepSeek's)."""
    from tokenizers import trainers

    return trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        show_progress=show_progress,
        special_tokens=[],
        initial_alphabet=deepseek.byte_alphabet(),
        max_token_length=cfg.max_token_length or None,
    )


def _fingerprint(files: list[storage.FileInfo], cfg: TokenizerTrainConfig) -> str:
    blob = json.dumps({"files": [[f.uri, f.size] for f in files], "config": config_to_dict(cfg)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def train_tokenizer(shards: list[str], out_dir: str, cfg: TokenizerTrainConfig, progress: bool = True) -> dict:
    """Train on the shards and write OUT_DIR/{tokenizer.json, tokenizer_config.json, training.json}.

    A rerun with the same shards and config finds the finished tokenizer and returns its record.
    """
    import tokenizers

    files = shard_files(shards)
    fingerprint = _fingerprint(files, cfg)
    record_uri = storage.join(out_dir, TRAINING_RECORD)
    if storage.exists(record_uri) and storage.exists(storage.join(out_dir, "tokenizer.json")):
        previous = storage.read_json(record_uri)
        if previous.get("fingerprint") == fingerprint:
            return previous | {"resumed": True}
    sampler = ShardTextSampler(files, cfg, progress)
    tok = deepseek.new_tokenizer()
    start = time.perf_counter()
    tok.train_from_iterator(iter(sampler), trainer=bpe_trainer(cfg, progress))
    seconds = time.perf_counter() - start
    sample = sampler.record()
    if sample["bytes"] == 0:
        raise UserError(f"{', '.join(shards)}: no text in the languages {sorted(cfg.lang_mix)} to train on")
    ordinary = tok.get_vocab_size()
    deepseek.add_specials(tok)
    missing = set(deepseek.byte_alphabet()) - set(tok.get_vocab())
    assert not missing, f"byte symbols missing from the trained vocabulary: {sorted(missing)}"
    deepseek.save_tokenizer_dir(tok, out_dir, deepseek.tokenizer_config())
    record = {
        "kind": "tokenizer",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"tokenizers": tokenizers.__version__},
        "config": config_to_dict(cfg),
        "shards": [f.uri for f in files],
        "fingerprint": fingerprint,
        "sample": sample,
        "ordinary_tokens": ordinary,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "bos_id": tok.token_to_id(deepseek.BOS),
        "eos_id": tok.token_to_id(deepseek.EOS),
        "train_seconds": round(seconds, 3),
        "tokenizer_sha256": hashlib.sha256(storage.read_bytes(storage.join(out_dir, "tokenizer.json"))).hexdigest(),
    }
    if ordinary < cfg.vocab_size:
        record["warning"] = (
            f"the sample yields only {ordinary} tokens (< vocab_size {cfg.vocab_size}); "
            "train on more text or lower min_frequency"
        )
    storage.write_json(record_uri, record)
    return record
