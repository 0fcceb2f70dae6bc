"""Loader throughput against what the trainer consumes on this machine.

    python bench/bench_loader.py [--runs 3] [--seq-len 1024]

- loader: `trainer.data.DataLoader` over a local PACKED (written with tokenizer/pack.py's own row
  writer: zstd, row groups of 16 rows, Zipf-distributed ids over a 102,400 vocabulary, 4,096 rows),
  global batch 32, micro batch 4, rank 0 of 1 and of 2; tokens/s delivered as torch LongTensors.
- anchor: the trainer's consumption: trainer/model.py `Transformer` (flavor `tiny`) forward +
  backward + AdamW step, micro-batch 1 (tokens/s, median of 3 steps after a warm-up). G's training
  loop is not measured here; this is the model's step cost, which bounds what the loop can consume.
Prints markdown table rows (medians over --runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from dsllm import storage  # noqa: E402
from dsllm.tokenizer.pack import PackConfig, RowWriter, rows_table  # noqa: E402
from dsllm.trainer.data import DataLoader, PackedDataset  # noqa: E402


def write_dataset(root: Path, seq_len: int, rows: int, per_shard: int = 1024) -> str:
    rng = np.random.default_rng(0)
    cfg = PackConfig(seq_len=seq_len)
    shards = []
    for k in range(rows // per_shard):
        tokens = np.minimum(rng.zipf(1.2, size=per_shard * seq_len), 102399).astype(np.int32)
        starts = np.sort(rng.choice(len(tokens), size=len(tokens) // 800, replace=False))
        w = RowWriter(cfg)
        w.write(rows_table(tokens, starts, seq_len))
        path = f"part-{k:05d}.parquet"
        shards.append(dict(w.publish(str(root / path)), path=path))
    storage.write_json(
        str(root / "manifest.json"),
        {
            "kind": "packed",
            "seq_len": seq_len,
            "rows": rows,
            "tokens": rows * seq_len,
            "pad_tokens": 0,
            "documents": 0,
            "row_group_rows": cfg.row_group_rows,
            "shards": shards,
        },
    )
    return str(root)


def loader_rate(uri: str, world: int, steps: int) -> float:
    ds = PackedDataset(uri)
    loader = DataLoader(ds, 32, 4, seed=1, rank=0, world_size=world, start_sequences=4096 * 3)
    it = iter(loader)
    next(it)  # start-up (footers) excluded
    t0, n = time.perf_counter(), 0
    for _ in range(steps * 8 // world):
        n += next(it).input_ids.numel()
    loader.close()
    return n / (time.perf_counter() - t0)


def trainer_rate(uri: str, seq_len: int, steps: int) -> float:
    import torch

    from dsllm.trainer.config import FLAVORS
    from dsllm.trainer.model import Transformer

    torch.manual_seed(0)
    model = Transformer(FLAVORS["tiny"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = iter(DataLoader(PackedDataset(uri), 32, 1, seed=1))
    times = []
    for _ in range(steps + 1):
        ids = next(batches).input_ids
        t0 = time.perf_counter()
        _, loss = model(ids, labels=ids)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return ids.numel() / statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=1024)
    args = ap.parse_args()
    import torch

    root = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    uri = write_dataset(root, args.seq_len, 4096)
    train = trainer_rate(uri, args.seq_len, 3)  # median of 3 steps after a warm-up step
    for world in (1, 2):
        load = statistics.median(loader_rate(uri, world, 40) for _ in range(args.runs))
        print(
            f"| loader rank 0 of {world} (local zstd Parquet, seq {args.seq_len}, micro 4) vs tiny model "
            f"fwd+bwd+AdamW ({torch.get_num_threads()} threads) | {load / 1e6:.2f}M tok/s | "
            f"{train:,.0f} tok/s | {load / train:,.0f}× | ≥ 10× |"
        )


if __name__ == "__main__":
    main()
