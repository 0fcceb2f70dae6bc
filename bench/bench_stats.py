"""Benchmark: `dsllm stats` on generated curated output (small text), 10,000 documents per shard.

Target (issue #5): 1,000 shards holding 10 million documents, without --sample, under 10 s here.
Anchors, measured in the same run on the same files:
  - pyarrow.dataset scanning the two columns the report reads (quality_score, n_chars) with its own
    thread pool: roughly the floor for reading those columns from Python;
  - pyarrow.dataset reading every column (text included): what a report that read documents would pay.
`dsllm stats` is timed end to end as a user runs it (a subprocess: interpreter start, imports,
manifest + stats.json, every footer, the two columns, the terminal rendering or JSON).

    python bench/bench_stats.py                    # 100 / 300 / 1000 shards
    python bench/bench_stats.py --shards 1000 --runs 5
    python bench/bench_stats.py --s3 100          # the same on a local moto S3 server

Data is generated once under --workdir (default /tmp/dsllm-bench-stats) and reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dsllm.curation.document import SCHEMA  # noqa: E402

LOREM = (
    "the river carried old stories past the mill while children counted boats and the baker sold "
    "bread to travellers who spoke of distant harbours cold winters and bright markets "
) * 40


def _shard(path: str, k: int, rows: int, rng) -> None:
    n_chars = np.clip(rng.lognormal(4.0, 0.6, rows).astype(np.int32), 8, 1000)
    base = np.frombuffer(LOREM.encode(), dtype=np.uint8)
    starts = rng.integers(0, len(base) - 1000, rows)
    data = np.concatenate([base[s : s + n] for s, n in zip(starts, n_chars)])  # small text
    offsets = np.concatenate([[0], np.cumsum(n_chars, dtype=np.int64)])
    text = pa.LargeStringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))
    ids = pa.array([f"{k:05d}{i:019d}" for i in range(rows)])
    crawl = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 3, rows).astype(np.int32)), ["CC-MAIN-2023-06", "CC-MAIN-2023-14", "CC-MAIN-2023-23"]
    ).cast(pa.string())
    lang = pa.DictionaryArray.from_arrays(pa.array((rng.random(rows) < 0.3).astype(np.int32)), ["en", "zh"]).cast(
        pa.string()
    )
    domain = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 4, rows).astype(np.int32)), ["news", "forum", "encyclopedia", "code"]
    ).cast(pa.string())
    table = pa.Table.from_arrays(
        [
            ids,
            text,
            pa.array(np.full(rows, "https://example.org/p", dtype=object)),
            crawl,
            lang,
            pa.array(rng.uniform(0.6, 1.0, rows).astype(np.float32)),
            pa.array(rng.beta(2, 3, rows).astype(np.float32)),
            domain,
            pa.array(n_chars),
            pa.array(np.full(rows, "seg.warc.gz", dtype=object)),
            pa.array(np.full(rows, "{}", dtype=object)),
        ],
        schema=SCHEMA,
    )
    pq.write_table(table, path, compression="zstd", row_group_size=5000)


def generate(workdir: str, shards: int, rows: int) -> str:
    """`workdir/all` holds the shards; `workdir/nN` is curated output over the first N (symlinks)."""
    full = os.path.join(workdir, "all", "shards")
    os.makedirs(full, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(shards):
        path = os.path.join(full, f"part-{k:05d}.parquet")
        if not os.path.exists(path):
            tmp = path + ".tmp"
            _shard(tmp, k, rows, rng)
            os.replace(tmp, path)
    out = os.path.join(workdir, f"n{shards}")
    if os.path.exists(os.path.join(out, "manifest.json")):
        return out
    os.makedirs(os.path.join(out, "shards"), exist_ok=True)
    entries = []
    for k in range(shards):
        rel = f"shards/part-{k:05d}.parquet"
        src = os.path.join(full, f"part-{k:05d}.parquet")
        if not os.path.lexists(os.path.join(out, rel)):
            os.symlink(src, os.path.join(out, rel))
        with open(src, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        entries.append({"path": rel, "rows": rows, "bytes": os.path.getsize(src), "sha256": digest})
    total = shards * rows
    stages, n = [], total
    for name, drop in (
        ("remix", 0),
        ("minhash_dedup", total // 9),
        ("exact_dedup", total // 20),
        ("quality_model", total // 5),
        ("langid", total // 7),
        ("extract", total // 4),
        ("read", total // 10),
    ):
        stages.append(
            {"name": name, "in": n + drop, "out": n, "dropped": {"filtered": drop} if drop else {}, "added": 0}
        )
        n += drop
    stats = {
        "stages": stages[::-1],
        "totals": {"documents": total},
        "languages": {
            "en": {"documents": total * 7 // 10, "chars": 0},
            "zh": {"documents": total * 3 // 10, "chars": 0},
        },
        "domains": {"natural": {}, "remixed": {}},
        "dedup": {"dumps": []},
    }
    manifest = {
        "kind": "curated",
        "created": "2024-01-01T00:00:00+00:00",
        "versions": {},
        "shards": entries,
        "inputs": [],
        "config": {},
    }
    for name, obj in (("stats.json", stats), ("manifest.json", manifest)):
        with open(os.path.join(out, name), "w") as f:
            json.dump(obj, f)
    return out


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench(out: str, runs: int) -> dict:
    import pyarrow.dataset as ds

    files = sorted(os.path.join(out, "shards", f) for f in os.listdir(os.path.join(out, "shards")))
    cmd = [sys.executable, "-m", "dsllm.jobs.cli", "stats", out]

    def cli(*extra):
        proc = subprocess.run(cmd + list(extra), capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    report = json.loads(cli("--json").stdout)
    assert report["totals"]["documents"] == len(files) * 10_000, report["totals"]
    return {
        "stats_terminal": timed(cli, runs),
        "stats_json": timed(lambda: cli("--json"), runs),
        "anchor_two_columns": timed(lambda: ds.dataset(files).to_table(columns=["quality_score", "n_chars"]), runs),
        "anchor_all_columns": timed(lambda: ds.dataset(files).to_table(), max(1, runs // 2)),
        "docs": report["totals"]["documents"],
        "bytes": report["totals"]["shard_bytes"],
    }


def bench_s3(out: str, runs: int) -> tuple[float, float]:
    """The same output uploaded to moto's S3 server on 127.0.0.1 (a single-process Python server:
    it, not the client, is the bottleneck); returns (median seconds of `dsllm stats --json`, upload s)."""
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.update(env)
    try:
        from dsllm import storage

        storage.s3_client().create_bucket(Bucket="bench")
        t = time.perf_counter()
        for f in storage.list_files(out):
            storage.upload_file(os.path.realpath(f.uri), "s3://bench/out/" + os.path.relpath(f.uri, out))
        upload = time.perf_counter() - t

        def cli():
            proc = subprocess.run(
                [sys.executable, "-m", "dsllm.jobs.cli", "stats", "s3://bench/out", "--json"],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]

        return timed(cli, runs), upload
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--rows", type=int, default=10_000, help="documents per shard")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/dsllm-bench-stats")
    ap.add_argument("--s3", type=int, metavar="SHARDS", help="instead: time SHARDS shards on a local moto S3 server")
    args = ap.parse_args()
    if args.s3:
        out = generate(args.workdir, args.s3, args.rows)
        seconds, upload = bench_s3(out, args.runs)
        print(
            f"| {args.s3:,} shards on moto S3 (127.0.0.1) | {args.s3 * args.rows:,} documents | "
            f"`dsllm stats --json` {seconds:.2f} s | (upload {upload:.1f} s) |"
        )
        return
    print(
        "| shards | documents | shard bytes | `dsllm stats` (tables) | `dsllm stats --json` | "
        "anchor: pyarrow.dataset 2 columns | anchor: pyarrow.dataset all columns |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    points = []
    for n in args.shards:
        t = time.perf_counter()
        out = generate(args.workdir, n, args.rows)
        print(f"<!-- generated/checked {n} shards in {time.perf_counter() - t:.1f} s -->", file=sys.stderr)
        r = bench(out, args.runs)
        print(
            f"| {n:,} | {r['docs']:,} | {r['bytes'] / 2**20:,.0f} MiB | {r['stats_terminal']:.2f} s | "
            f"{r['stats_json']:.2f} s | {r['anchor_two_columns']:.2f} s | {r['anchor_all_columns']:.2f} s |",
            flush=True,
        )
        points.append((n, r["stats_terminal"]))
    if len(points) > 1:
        slope, fixed = np.polyfit([p[0] for p in points], [p[1] for p in points], 1)
        print(
            f"\nlinear fit of `dsllm stats` (tables): {fixed:.2f} s fixed + {1000 * slope:.2f} s per 1,000 shards "
            f"of {args.rows:,} documents"
        )


if __name__ == "__main__":
    main()
