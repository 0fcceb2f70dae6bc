"""`dsllm eval`: mean next-token loss and perplexity of checkpoints on packed data.

Rows are read in file order (the manifest's shard order, then row order), never shuffled, so two
checkpoints see exactly the same tokens and a loss-by-step table compares like with like. A
position counts when it and the token it predicts are both real tokens of the row (padding past
`n_tokens` is ignored); attention is plain causal over the packed row, as in pretraining.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import numpy as np

from dsllm import storage
from dsllm.errors import UserError


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Loss of one checkpoint on the first `rows` rows of PACKED."""

    checkpoint: str
    step: int | None
    trained_tokens: int | None
    rows: int
    tokens: int  # predicted positions counted in the mean
    loss: float
    perplexity: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def packed_manifest(uri: str) -> dict:
    """PACKED/manifest.json, checked (call before loading models: a bad --data fails fast)."""
    uri = str(uri).rstrip("/")
    path = storage.join(uri, "manifest.json")
    if not storage.exists(path):
        raise UserError(f"{uri}: no manifest.json (not packed data, or packing did not finish)")
    manifest = storage.read_json(path)
    if not isinstance(manifest, dict) or manifest.get("kind") != "packed":
        raise UserError(f"{path}: not packed data (kind != 'packed')")
    if not isinstance(manifest.get("seq_len"), int) or not isinstance(manifest.get("shards"), list):
        raise UserError(f"{path}: malformed manifest (seq_len / shards)")
    return manifest


def read_packed(uri: str, max_rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(input_ids (n, seq_len) int32, n_tokens (n,) int64) batches of PACKED in file order."""
    import pyarrow.parquet as pq

    uri = str(uri).rstrip("/")
    manifest = packed_manifest(uri)
    seq_len, left = int(manifest["seq_len"]), max_rows if max_rows is not None else int(manifest.get("rows", 1 << 62))
    for shard in manifest["shards"]:
        if left <= 0:
            return
        path = storage.join(uri, shard["path"])
        with storage.open_random(path, size=shard.get("bytes")) as f:
            try:
                pf = pq.ParquetFile(f)
            except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
                raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
            cols = ["input_ids"] + (["n_tokens"] if "n_tokens" in pf.schema_arrow.names else [])
            for batch in pf.iter_batches(batch_size=256, columns=cols):
                ids = batch.column("input_ids").values.to_numpy(zero_copy_only=False).reshape(-1, seq_len)
                n_tok = (
                    batch.column("n_tokens").to_numpy().astype(np.int64)
                    if "n_tokens" in cols
                    else np.full(len(ids), seq_len, dtype=np.int64)
                )
                ids, n_tok = ids[:left], n_tok[:left]
                left -= len(ids)
                yield ids, n_tok
                if left <= 0:
                    return


def evaluate_model(
    model, packed: str, max_rows: int | None = None, batch_size: int = 4, progress: Callable[[int], None] | None = None
) -> tuple[float, int, int]:
    """(sum of losses, predicted positions, rows) of `model` on PACKED."""
    import torch
    import torch.nn.functional as F

    vocab = model.config.vocab_size
    total, count, rows = 0.0, 0, 0
    model.eval()
    with torch.inference_mode():
        for ids, n_tok in read_packed(packed, max_rows):
            if ids.size and int(ids.max()) >= vocab:
                raise UserError(
                    f"{packed}: token id {int(ids.max())} is outside the model's vocabulary "
                    f"({vocab}); was the data packed with another tokenizer?"
                )
            for lo in range(0, len(ids), batch_size):
                x = torch.from_numpy(ids[lo : lo + batch_size].astype(np.int64))  # (B, T)
                n = torch.from_numpy(n_tok[lo : lo + batch_size])
                labels = x.masked_fill(torch.arange(x.shape[1])[None, :] >= n[:, None], -100)
                logits = model(x)  # (B, T, V)
                loss = F.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
                )
                total += float(loss)
                count += int((labels[:, 1:] != -100).sum())
                rows += len(x)
                if progress:
                    progress(rows)
    return total, count, rows


def evaluate_checkpoint(
    ckpt, packed: str, max_rows: int | None = None, batch_size: int = 4, dtype=None, name: str | None = None
) -> EvalResult:
    """Build the checkpoint's model (meta device, shard-by-shard load) and evaluate it."""
    from dsllm.trainer.checkpoints.hf import build_model

    model = build_model(ckpt, dtype=dtype)
    total, count, rows = evaluate_model(model, packed, max_rows, batch_size)
    if count == 0:
        raise UserError(f"{packed}: no tokens to evaluate (empty data or --max-rows 0)")
    mean = total / count
    return EvalResult(
        checkpoint=name or ckpt.source,
        step=ckpt.step,
        trained_tokens=ckpt.tokens,
        rows=rows,
        tokens=count,
        loss=mean,
        perplexity=math.exp(min(mean, 700.0)),
    )


def format_table(results: list[EvalResult]) -> str:
    """A loss-by-step table (one row per checkpoint, in the order evaluated)."""
    head = f"{'checkpoint':<40} {'step':>10} {'trained tokens':>15} {'rows':>7} {'tokens':>10} {'loss':>8} {'ppl':>10}"
    lines = [head, "-" * len(head)]
    for r in results:
        step = "-" if r.step is None else str(r.step)
        tok = "-" if r.trained_tokens is None else _human(r.trained_tokens)
        name = r.checkpoint if len(r.checkpoint) <= 40 else "…" + r.checkpoint[-39:]
        lines.append(f"{name:<40} {step:>10} {tok:>15} {r.rows:>7} {r.tokens:>10} {r.loss:>8.4f} {r.perplexity:>10.2f}")
    return "\n".join(lines)


def _human(n: int) -> str:
    for unit, size in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)
