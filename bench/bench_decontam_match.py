"""CPU cost of the `decontaminate` stage's lookup (`DecontamIndex.match`, bundled index) on the
extracted text of real pages, against another checkout of dsllm (e.g. the commit before a change)
in the same run, interleaved.

    python bench/bench_decontam_match.py INPUTS... [--anchor-checkout PATH] [--repeats 5]

INPUTS are WARC files or directories (as `dsllm curate` takes them); their pages are extracted once
(resiliparse, the curate defaults) and every text is looked up, in batches of `decontaminate.
batch_docs`. Prints per repeat and median CPU seconds, the first-lookup set-up (filters built from
the loaded index), and checks that both checkouts name the same benchmark for every page.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TIMER = r"""
import json, sys, time
import pyarrow.parquet as pq
from dsllm.curation.decontam.stage import DecontamConfig, load_index
texts = pq.read_table(sys.argv[1]).column("text").to_pylist()
index = load_index("", 10)
c = time.process_time(); index.match(["warm up " * 20]); setup = time.process_time() - c
b = DecontamConfig().batch_docs
c = time.process_time()
hits = []
for i in range(0, len(texts), b):
    hits += index.match(texts[i : i + b])
print(json.dumps({"cpu_s": time.process_time() - c, "setup_s": setup, "hits": hits}))
"""


def extract(inputs: list[str], out: str) -> int:
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsllm import storage
    from dsllm.curation.config import PER_INPUT_STAGES, REQUIRED_STAGES, CurateConfig
    from dsllm.curation.pipeline import run_stages
    from dsllm.curation.sources import resolve_inputs
    from dsllm.curation.stage import StageCounts

    skip = tuple(s for s in PER_INPUT_STAGES if s not in REQUIRED_STAGES and s != "quality_model")
    cfg = dataclasses.replace(CurateConfig(), skip=skip)
    texts = []
    for spec in resolve_inputs(inputs):
        counts = {n: StageCounts(n) for n in REQUIRED_STAGES}
        with storage.open_read(spec.uri) as stream:
            texts += [d.text for d in run_stages(cfg, stream, spec.uri, "bench", "", counts)]
    pq.write_table(pa.table({"text": texts}), out)
    return len(texts)


def timed(checkout: Path, pages: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    # cwd: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH
    r = subprocess.run(
        [sys.executable, "-c", TIMER, pages], capture_output=True, text=True, env=env, cwd=checkout, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("--anchor-checkout", default=None, help="another dsllm checkout timed alongside")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        pages = os.path.join(tmp, "pages.parquet")
        n = extract(args.inputs, pages)
        runs: dict[str, list[dict]] = {"this checkout": []}
        if args.anchor_checkout:
            runs["anchor"] = []
        for _ in range(args.repeats):
            runs["this checkout"].append(timed(ROOT, pages))
            if args.anchor_checkout:
                runs["anchor"].append(timed(Path(args.anchor_checkout), pages))
    print(f"{n} pages, {args.repeats} repeats, load average {os.getloadavg()[0]:.1f}")
    print("| code | match CPU s (median) | runs | ms per page | filter set-up CPU s | pages with a hit |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        cpu = statistics.median(r["cpu_s"] for r in rs)
        each = " / ".join(f"{r['cpu_s']:.3f}" for r in rs)
        setup = statistics.median(r["setup_s"] for r in rs)
        hits = sum(h is not None for h in rs[0]["hits"])
        print(f"| {name} | {cpu:.3f} | {each} | {cpu / n * 1000:.3f} | {setup:.3f} | {hits} |")
    if args.anchor_checkout:
        same = runs["this checkout"][0]["hits"] == runs["anchor"][0]["hits"]
        print(f"same benchmark named for every page: {same}")
        ratio = statistics.median(r["cpu_s"] for r in runs["anchor"]) / statistics.median(
            r["cpu_s"] for r in runs["this checkout"]
        )
        print(f"anchor CPU / this CPU: {ratio:.2f}x")


if __name__ == "__main__":
    main()
