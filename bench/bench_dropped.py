"""What keeping dropped documents costs the per-input curate chain: CPU seconds of `process_input`
(read → … → pii → Parquet, plus OUT/_work/inputs/<key>/dropped.parquet) with `dropped.keep = 0`
(nothing kept: the anchor, the chain as it was), the default `keep = 5` and `--keep-dropped all`,
interleaved in one process, medians over --repeats runs. One process = one core; CPU time, since the
machine is shared. Prints a markdown table.

    python bench/bench_dropped.py [--warcs 2] [--records 300] [--repeats 5] [--inputs WARC...]
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
from dsllm.curation.dropped import DroppedConfig  # noqa: E402
from dsllm.curation.pipeline import process_input  # noqa: E402
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl  # noqa: E402
from dsllm.curation.sources import resolve_inputs  # noqa: E402


def chain(specs, cfg: CurateConfig, workdir: str) -> tuple[float, int]:
    """(CPU seconds, dropped rows written) of the per-input stages over `specs`."""
    start = time.process_time()
    rows = 0
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        for spec in specs:
            result = process_input(spec, cfg, out)
            assert result["status"] == "done"
            rows += sum(result["dropped_rows"].values())
    return time.process_time() - start, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warcs", type=int, default=2)
    ap.add_argument("--records", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inputs", nargs="*", default=None, help="real WARC files instead of a sample crawl")
    args = ap.parse_args()
    base = dataclasses.replace(CurateConfig(), skip=("decontaminate",))
    modes = {
        "keep 0 (anchor)": DroppedConfig(keep=0),
        "keep 5 (default)": DroppedConfig(keep=5),
        "all": DroppedConfig(all=True),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.inputs:
            specs = resolve_inputs(args.inputs)
        else:
            write_sample_crawl(tmp, SampleCrawlConfig(warcs=args.warcs, records=args.records, seed=11))
            specs = resolve_inputs([tmp])
        mb = sum(os.path.getsize(s.uri) for s in specs) / 1e6
        cfgs = {name: dataclasses.replace(base, dropped=d) for name, d in modes.items()}
        chain(specs, cfgs["all"], tmp)  # warm-up: model loads, imports
        runs: dict[str, list[float]] = {name: [] for name in modes}
        rows: dict[str, int] = {}
        for _ in range(args.repeats):  # interleaved: a change in the machine's load hits every mode alike
            for name, cfg in cfgs.items():
                t, rows[name] = chain(specs, cfg, tmp)
                runs[name].append(t)
    anchor = statistics.median(runs["keep 0 (anchor)"])
    print(f"{len(specs)} input(s), {mb:.2f} MB .warc.gz, {args.repeats} runs")
    print("| dropped.keep | CPU s (median) | runs | vs keep 0 | dropped rows written |")
    print("|---|---|---|---|---|")
    for name in modes:
        med = statistics.median(runs[name])
        spread = ", ".join(f"{t:.2f}" for t in sorted(runs[name]))
        print(f"| {name} | {med:.3f} | {spread} | {med / anchor:.3f}× | {rows[name]} |")


if __name__ == "__main__":
    main()
