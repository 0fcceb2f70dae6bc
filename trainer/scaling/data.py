"""The held-out split no run trains on, and bits per byte on it.

`split_packed(PACKED, SWEEP/data)` cuts PACKED once, at a row-group boundary, into
  SWEEP/data/train/    every row before the cut (whole shards are referenced where they are, the
                       one shard the cut falls in is rewritten up to the cut), what every run trains on;
  SWEEP/data/heldout/  the rows after the cut (`heldout_rows`), only ever evaluated;
both packed-data directories with a manifest, so `dsllm train`/`dsllm eval` read them as they are.
`heldout.json` records the split and the UTF-8 bytes its predicted tokens stand for.

Bits per byte = (sum of next-token losses in nats) / ln 2 / (UTF-8 bytes of the predicted tokens):
a token's bytes are its byte-level BPE symbols (one byte each); special tokens (EOS) stand for no
text and count 0 bytes, so the figure compares across tokenizers (DeepSeek reports bits per byte).
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from dsllm import storage
from dsllm.errors import UserError


def token_bytes(tokenizer_dir: str) -> np.ndarray:
    """UTF-8 bytes each token id stands for, from a byte-level BPE `tokenizer.json`."""
    from tokenizers import Tokenizer

    from dsllm.tokenizer.deepseek import byte_alphabet

    path = Path(tokenizer_dir) / "tokenizer.json" if Path(tokenizer_dir).is_dir() else Path(tokenizer_dir)
    if not path.exists():
        raise UserError(
            f"{tokenizer_dir}: no tokenizer.json (bits per byte needs the data's tokenizer: --tokenizer DIR)"
        )
    spec = json.loads(path.read_text(encoding="utf-8"))
    if (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise UserError(f"{path}: not a byte-level BPE tokenizer (bits per byte needs one)")
    tok = Tokenizer.from_file(str(path))
    vocab = tok.get_vocab(with_added_tokens=True)
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    alphabet = set(byte_alphabet())
    out = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    for text, i in vocab.items():  # once per vocabulary entry, not per token of data
        if i not in special:
            out[i] = len(text) if set(text) <= alphabet else len(text.encode("utf-8"))
    return out


def _manifest(uri: str) -> dict:
    from dsllm.trainer.evaluate import packed_manifest

    return packed_manifest(uri)


def _write_rows(table, path: Path, row_group_rows: int, seq_len: int) -> dict:
    """Rows of the shard the cut falls in, as a shard of their own (its manifest entry)."""
    import hashlib

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group_rows, compression="zstd")
    data = buf.getvalue()
    storage.write_bytes(str(path), data)
    return {
        "path": path.name,
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tokens": table.num_rows * seq_len,
    }


def split_packed(packed: str, out: str, heldout_rows: int = 0, tokenizer: str | None = None) -> dict:
    """Cut PACKED into OUT/train and OUT/heldout (once; a rerun reuses the split). Returns heldout.json."""
    import pyarrow.parquet as pq

    out_dir = Path(out)
    info_path = out_dir / "heldout.json"
    if storage.is_remote(packed):
        raise UserError(f"--data {packed}: a sweep reads PACKED from a local (or shared) filesystem")
    src = Path(packed).resolve()
    if info_path.exists():
        info = json.loads(info_path.read_text())
        if info["source"] != str(src):
            raise UserError(f"{out}: this sweep was split from {info['source']}, not {src}")
        return info
    m = _manifest(str(src))
    rows, group, seq = int(m["rows"]), int(m.get("row_group_rows") or 1), int(m["seq_len"])
    want = heldout_rows or min(max(rows // 50, 64), 2048)
    cut = (rows - want) // group * group
    if cut <= 0 or cut >= rows:
        raise UserError(f"--data {packed}: {rows} rows are too few to hold out {want} and train on the rest")
    train_shards, held_shards, start = [], [], 0
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    (out_dir / "heldout").mkdir(parents=True, exist_ok=True)
    for s in m["shards"]:
        n, where = int(s["rows"]), str(src / s["path"])
        if start + n <= cut:
            train_shards.append({**s, "path": _link(out_dir / "train", where)})
        elif start >= cut:
            held_shards.append({**s, "path": _link(out_dir / "heldout", where)})
        else:  # the cut falls inside this shard: rewrite its two parts
            table = pq.read_table(where)
            k = cut - start
            train_shards.append(_write_rows(table.slice(0, k), out_dir / "train" / "part-cut.parquet", group, seq))
            held_shards.append(_write_rows(table.slice(k), out_dir / "heldout" / "part-cut.parquet", group, seq))
        start += n
    for name, shards, n_rows in (("train", train_shards, cut), ("heldout", held_shards, rows - cut)):
        view = {**m, "rows": n_rows, "tokens": n_rows * int(m["seq_len"]), "shards": shards, "split_of": str(src)}
        storage.write_json(str(out_dir / name / "manifest.json"), view)
    tok = tokenizer or (m.get("tokenizer") or {}).get("path")
    if not tok:
        raise UserError(f"--data {packed}: its manifest names no tokenizer; pass --tokenizer DIR for bits per byte")
    info = {
        "source": str(src),
        "rows": rows,
        "train_rows": cut,
        "heldout_rows": rows - cut,
        "tokenizer": str(tok),
        **heldout_targets(str(out_dir / "heldout"), token_bytes(str(tok))),
    }
    storage.write_json(str(info_path), info)
    return info


def _link(folder: Path, target: str) -> str:
    """A symlink inside `folder` to a source shard: the split's manifests name only files inside their
    own directory (manifest entries never point outside it, see dsllm.storage.check_relative)."""
    link = folder / Path(target).name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path(target).resolve())
    return link.name


def heldout_targets(heldout: str, byte_table: np.ndarray) -> dict:
    """Predicted positions and their UTF-8 bytes, counted as dsllm.trainer.evaluate counts them."""
    from dsllm.trainer.evaluate import read_packed

    tokens = nbytes = 0
    for ids, n_tok in read_packed(heldout):
        target = ids[:, 1:]
        real = np.arange(1, ids.shape[1])[None, :] < n_tok[:, None]  # (rows, seq_len − 1)
        if target.size and int(target.max()) >= len(byte_table):
            raise UserError(f"{heldout}: token id {int(target.max())} is not in the tokenizer")
        tokens += int(real.sum())
        nbytes += int(byte_table[target][real].sum())
    if nbytes == 0:
        raise UserError(f"{heldout}: the held-out rows hold no text bytes")
    return {"heldout_tokens": tokens, "heldout_bytes": nbytes}


def bits_per_byte(loss_sum_nats: float, nbytes: int) -> float:
    return loss_sum_nats / math.log(2) / nbytes
