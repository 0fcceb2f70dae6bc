"""`dsllm mix` planning time on a large packed dataset, and the mixture loader against the packed one.

    python bench/bench_mix.py [--rows 1000000] [--runs 3]

- input: a PACKED of --rows 4-token rows in 4 parts (row groups of 16) whose `domain` column draws 9
  domains with natural shares .02/.03/.01/.05/.06/.10/.03/.10/.60 (the sizes that matter to `mix`
  are rows and domains, not the sequence length);
- mix: `build_mixture` with the shipped default targets (configs/mixture.toml): scan, plan, pick,
  interleave, write order.parquet; wall seconds, median of --runs;
- read: 64-row global batches of the mixture's first positions through `MixtureDataset.read`
  against `PackedDataset.read` of the same number of packed rows in shuffled-chunk order.
Prints markdown table rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

NAMES = ["encyclopedia", "academic", "books", "tech", "forum_qa", "news", "government", "commerce", "other_web"]
SHARES = [0.02, 0.03, 0.01, 0.05, 0.06, 0.10, 0.03, 0.10, 0.60]


def write_packed(root: Path, rows: int, seq: int = 4, parts: int = 4) -> str:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    shards = []
    for i in range(parts):
        n = rows // parts
        dom = np.array(NAMES)[rng.choice(len(NAMES), n, p=SHARES)]
        ids = rng.integers(0, 100, n * seq, dtype=np.int32)
        t = pa.table(
            {
                "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids), seq),
                "n_tokens": pa.array(np.full(n, seq, np.int32)),
                "domain": pa.array(dom),
            }
        )
        path = f"part-{i:05d}.parquet"
        pq.write_table(t, root / path, row_group_size=16)
        shards.append({"path": path, "rows": n, "bytes": (root / path).stat().st_size})
    total = sum(s["rows"] for s in shards)
    (root / "manifest.json").write_text(
        json.dumps(
            {
                "kind": "packed",
                "seq_len": seq,
                "rows": total,
                "tokens": total * seq,
                "pad_tokens": 0,
                "row_group_rows": 16,
                "tokenizer": {"sha256": "bench", "vocab_size": 100},
                "shards": shards,
            }
        )
    )
    return str(root)


def main() -> None:
    from dsllm.config import load_config
    from dsllm.trainer.data import GlobalBatchOrder, PackedDataset
    from dsllm.trainer.mixture import MixConfig, build_mixture
    from dsllm.trainer.mixture_data import open_dataset

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(MixConfig, None, [], default="mixture.toml").mixture
    with tempfile.TemporaryDirectory() as tmp:
        packed = write_packed(Path(tmp) / "packed", args.rows)
        times = []
        for r in range(args.runs):
            t0 = time.perf_counter()
            m = build_mixture([packed], str(Path(tmp) / f"mix{r}"), cfg, log=lambda s: None)
            times.append(time.perf_counter() - t0)
        print(
            f"| mix {m['rows']:,} sequences, {len(m['domains'])} domains | {statistics.median(times):.2f} s "
            f"(runs {', '.join(f'{t:.2f}' for t in times)}) |"
        )
        mix, base = open_dataset(str(Path(tmp) / "mix0")), PackedDataset(packed)
        order = GlobalBatchOrder(base.rows, 0, base.chunk_rows)
        for name, read in (
            ("mixture", lambda p: mix.read(np.arange(p, p + 64))),
            ("packed", lambda p: base.read(order.indices(p, p + 64))),
        ):
            t0 = time.perf_counter()
            for p in range(0, 64 * 200, 64):
                read(p)
            dt = time.perf_counter() - t0
            print(f"| read 200 batches of 64 rows, {name} | {dt:.2f} s ({200 * 64 / dt:,.0f} rows/s) |")


if __name__ == "__main__":
    main()
