"""End to end per core: megabytes of .warc.gz per second through the per-input curate stages
(read → extract → langid → Gopher/C4/FineWeb → URL filter → PII → zstd Parquet), ours (resiliparse)
against the same chain with trafilatura extraction, and against the floor: FastWARC reading and
decompressing every record without any processing. One process = one core; times are the process's
CPU seconds (the benchmark machine is shared, so wall time would measure the neighbours). Dedup is
measured by its own benchmarks. Prints markdown table rows (medians over --repeats runs).

    python bench/bench_curate.py [--warcs 2] [--records 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsllm.curation.config import CurateConfig  # noqa: E402
from dsllm.curation.pipeline import process_input  # noqa: E402
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl  # noqa: E402
from dsllm.curation.sources import resolve_inputs  # noqa: E402


def floor(paths: list[str]) -> float:
    from fastwarc.warc import ArchiveIterator

    start = time.process_time()
    for p in paths:
        with open(p, "rb") as f:
            for record in ArchiveIterator(f, parse_http=False, fsspec_args=False):
                record.reader.read()
    return time.process_time() - start


def chain(specs, cfg: CurateConfig, workdir: str) -> float:
    start = time.process_time()
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        for spec in specs:
            assert process_input(spec, cfg, out)["status"] == "done"
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warcs", type=int, default=2)
    ap.add_argument("--records", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--inputs", nargs="*", default=None, help="real WARC files instead of a sample crawl")
    ap.add_argument("--langid-max-chars", type=int, default=None, help="override langid.max_chars (both chains)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.inputs:
            specs = resolve_inputs(args.inputs)
        else:
            write_sample_crawl(tmp, SampleCrawlConfig(warcs=args.warcs, records=args.records, seed=11))
            specs = resolve_inputs([tmp])
        mb = sum(os.path.getsize(s.uri) for s in specs) / 1e6
        ours_cfg = CurateConfig()
        if args.langid_max_chars:
            ours_cfg = dataclasses.replace(
                ours_cfg, langid=dataclasses.replace(ours_cfg.langid, max_chars=args.langid_max_chars)
            )
        traf_cfg = dataclasses.replace(
            ours_cfg, extract=dataclasses.replace(ours_cfg.extract, extractor="trafilatura", timeout_s=60)
        )
        chain(specs, ours_cfg, tmp)  # warm-up: model loads, imports
        chain(specs, traf_cfg, tmp)
        runs = []
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits all three alike
            runs.append((floor([s.uri for s in specs]), chain(specs, ours_cfg, tmp), chain(specs, traf_cfg, tmp)))
        t_floor, t_ours, t_traf = (statistics.median(r[i] for r in runs) for i in range(3))
        ratios = sorted(r[2] / r[1] for r in runs)
    print(
        "| input | floor: read+decompress MB/s/core | ours MB/s/core | trafilatura chain MB/s/core | ours vs trafilatura | ours vs floor |"
    )
    print("|---|---|---|---|---|---|")
    what = "real CC WARC excerpts" if args.inputs else "sample WARCs"
    print(
        f"| {len(specs)} {what}, {mb:.2f} MB .warc.gz | {mb / t_floor:.1f} | {mb / t_ours:.2f} | "
        f"{mb / t_traf:.2f} | {t_traf / t_ours:.1f}× (runs {ratios[0]:.1f}–{ratios[-1]:.1f}×) | {t_floor / t_ours:.2f}× |"
    )


if __name__ == "__main__":
    main()
