"""The dedup step of `dsllm curate`, before and after a change: CPU seconds, interleaved runs.

Each repeat runs the whole command once with each interpreter, alternating (A, B, A, B, ...), so
load from other processes on a shared machine hits both alike. Every interpreter is a venv with
dsllm installed editable from one source tree (e.g. a `git worktree` of the commit before the
change, and the change's own tree):

    python bench/bench_dedup_ab.py --before BASE/.venv/bin/python --after .venv/bin/python \\
        --repeats 5 INPUTS...

Reported per side (medians over repeats, with min-max): CPU seconds of the dedup phase (stats.json
`timing`: the driver's plus every task's own CPU, summed over workers) and of the whole command
(its process tree: rusage of the reaped children, cross-checked by sampling, as
bench_curate_e2e.py measures). The outputs of the two sides must be identical: shard checksums,
manifest row counts, the dedup removals (id, row, reason, duplicate_of) and stats.json without its
timings; the script stops if they are not.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_curate_e2e import run_tree  # noqa: E402


def curate(python: str, inputs: list[str], out: str, executor: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    # -P: no current directory on sys.path, so each side imports its own tree (a checkout's `dsllm/`
    # folder in the working directory would otherwise shadow the venv's editable install)
    r = run_tree([python, "-P", "-m", "dsllm.jobs.cli", "curate", *inputs, "-o", out, "--executor", executor])
    stats = json.loads(Path(out, "stats.json").read_text())
    phases = {p["name"]: p["cpu_s"] for p in stats["timing"]["phases"]}
    return {"dedup": phases.get("dedup", 0.0), "whole": max(r["cpu_rusage"], r["cpu_sampled"])}


def outputs(out: str) -> dict:
    """What must not change: everything but timings."""
    import pyarrow.parquet as pq

    manifest = json.loads(Path(out, "manifest.json").read_text())
    stats = json.loads(Path(out, "stats.json").read_text())
    stats.pop("timing", None)
    removed = sorted(glob.glob(os.path.join(out, "_work", "dedup", "dedup-*", "removed", "*.parquet")))
    return {
        "shards": [(s["sha256"], s.get("rows")) for s in manifest["shards"]],
        "stats": stats,
        "removed": [pq.ParquetFile(f).read().to_pylist() for f in removed],
    }


def check_trees(before: str, after: str) -> None:
    """Each interpreter must import dsllm from a different tree."""
    import subprocess

    code = "import dsllm.curation.dedup.run as r; print(r.__file__)"
    files = [
        subprocess.run([py, "-P", "-c", code], capture_output=True, text=True, check=True).stdout
        for py in (before, after)
    ]
    print(f"before: {files[0].strip()}\nafter:  {files[1].strip()}", file=sys.stderr)
    if files[0] == files[1]:
        raise SystemExit("--before and --after import the same source tree")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("inputs", nargs="+", help="curate inputs (WARC paths, globs, directories)")
    ap.add_argument("--before", required=True, help="python of the venv of the tree before the change")
    ap.add_argument("--after", required=True, help="python of the venv of the tree after the change")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--executor", default="local")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    inputs = sorted(f for pattern in args.inputs for f in glob.glob(pattern)) or args.inputs
    check_trees(args.before, args.after)
    work = tempfile.mkdtemp(prefix="bench-dedup-ab-", dir=args.workdir)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        for i in range(args.repeats):
            seen = {}
            for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
                out = os.path.join(work, side)
                runs[side].append(curate(getattr(args, side), inputs, out, args.executor))
                seen[side] = outputs(out)
                print(f"repeat {i + 1} {side}: {json.dumps(runs[side][-1])}", file=sys.stderr, flush=True)
            if seen["before"] != seen["after"]:
                raise SystemExit(f"repeat {i + 1}: the outputs differ between before and after")
        kept = sum(r for _, r in seen["after"]["shards"] if r is not None)
        n_removed = sum(len(t) for t in seen["after"]["removed"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print(f"{len(inputs)} inputs; {kept} documents kept, {n_removed} removed by dedup; outputs identical")
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats} interleaved runs (min-max), CPU s")
    print()
    print("| side | dedup phase CPU s | whole command CPU s |")
    print("|---|---|---|")
    for side in ("before", "after"):
        d, w = [r["dedup"] for r in runs[side]], [r["whole"] for r in runs[side]]
        print(f"| {side} | {med(d):.2f} ({min(d):.2f}-{max(d):.2f}) | {med(w):.2f} ({min(w):.2f}-{max(w):.2f}) |")


if __name__ == "__main__":
    main()
