"""The whole `dsllm curate` command per core, against the single-core trafilatura chain and datatrove.

Same pages for all three: a sample crawl (`dsllm sample-crawl`, realistic EN and ZH pages) plus
the real Common Crawl excerpts named with --real. Each repeat runs, back to back (interleaved, so
load changes on a shared machine hit all alike):

- ours: `dsllm curate INPUTS -o OUT` as a user runs it (a fresh process: imports, Ray start,
  per-input stages, dedup, shards, statistics, publish, Ray shutdown). CPU = the command's process
  tree (its own and its reaped children's rusage, cross-checked by sampling every descendant with
  psutil; the larger is used). "net of start-up" = the CPU stats.json attributes to the run's
  phases after start-up (inputs, dedup, shards, stats, publish); the rest is start-up and teardown.
- chain: the per-input stages with trafilatura extraction (FastWARC → trafilatura → lid.176 →
  Gopher/C4/FineWeb → URL filter → PII → Parquet), in one process on one core, as in
  bench/bench_curate.py; its start-up (imports, model loads) is measured separately on a tiny input.
- datatrove (with --datatrove-python): bench/datatrove_curate.py in datatrove's own venv
  (WarcReader → Trafilatura → LanguageFilter → Gopher/C4/FineWeb filters → ParquetWriter), one task
  per WARC over --workers processes; CPU of its process tree (rusage).

Per core = pages per CPU-second. Prints a markdown table (medians over --repeats).

    python bench/bench_curate_e2e.py --warcs 4 --records 350 --real CC_EXCERPTS... --repeats 3 \\
        [--datatrove-python DTVENV/bin/python] [--workdir SCRATCH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tree_cpu_sampler(pid: int, stop: threading.Event, seen: dict) -> None:
    """Latest user+system CPU of every descendant of `pid` (and itself), sampled every 50 ms."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                t = p.cpu_times()
                seen[(p.pid, p.create_time())] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        stop.wait(0.05)


def run_tree(cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd`; wall seconds and CPU seconds of its process tree."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)  # files: orphans can't block us
        stop, seen = threading.Event(), {}
        sampler = threading.Thread(target=tree_cpu_sampler, args=(proc.pid, stop, seen), daemon=True)
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - w0
        stop.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rusage = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{stderr[-3000:]}")
    return {"wall_s": wall, "cpu_rusage": rusage, "cpu_sampled": sum(seen.values()), "stdout": stdout}


def ours(inputs: list[str], out: str, executor: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = run_tree([sys.executable, "-m", "dsllm.jobs.cli", "curate", *inputs, "-o", out, "--executor", executor], env)
    stats = json.loads(Path(out, "stats.json").read_text())
    phases = {p["name"]: p for p in stats["timing"]["phases"]}
    cpu = max(r["cpu_rusage"], r["cpu_sampled"])
    in_run = sum(p["cpu_s"] for n, p in phases.items() if n != "startup")
    return {
        "wall_s": r["wall_s"],
        "cpu_s": cpu,
        "cpu_rusage": r["cpu_rusage"],
        "cpu_sampled": r["cpu_sampled"],
        "cpu_in_run": in_run,
        "wall_in_run": sum(p["wall_s"] for n, p in phases.items() if n != "startup"),
        "phases": {n: (p["wall_s"], p["cpu_s"]) for n, p in phases.items()},
        "stages": {s["name"]: s["cpu_s"] for s in stats["timing"]["stages"]},
        "pages": next(s["in"] for s in stats["stages"] if s["name"] == "extract"),
        "kept": stats["totals"]["documents"],
        "shards": [m["sha256"] for m in json.loads(Path(out, "manifest.json").read_text())["shards"]],
    }


def chain_cpu(specs, cfg, workdir: str) -> float:
    from dsllm.curation.pipeline import process_input

    start = time.process_time()
    with tempfile.TemporaryDirectory(dir=workdir) as out:
        for spec in specs:
            assert process_input(spec, cfg, out)["status"] == "done"
    return time.process_time() - start


def datatrove(python: str, inputs: list[str], out: str, workers: int) -> dict:
    """datatrove over a flat folder holding the same WARC files."""
    flat = out + "-in"
    shutil.rmtree(out, ignore_errors=True)
    if not os.path.isdir(flat):
        os.makedirs(flat)
        for i, f in enumerate(inputs):
            os.symlink(os.path.abspath(f), os.path.join(flat, f"{i:04d}-{os.path.basename(f)}"))
    from dsllm.fasttext_compat import lid176_path

    script = str(ROOT / "bench" / "datatrove_curate.py")
    r = run_tree([python, script, flat, out, "--lid", lid176_path(), "--workers", str(workers)])
    own = json.loads(r["stdout"].strip().splitlines()[-1])
    return {"wall_s": r["wall_s"], "cpu_s": max(r["cpu_rusage"], r["cpu_sampled"]), "kept": own["kept"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warcs", type=int, default=4)
    ap.add_argument("--records", type=int, default=350)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--real", nargs="*", default=[], help="real WARC files to add to the sample crawl")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--datatrove-python", default=None, help="python of a venv with datatrove")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="datatrove worker processes")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-chain", action="store_true", help="skip the chain anchor (profiling ours only)")
    ap.add_argument(
        "--executors", nargs="+", default=["local", "ray"], help="`dsllm curate --executor` values to measure"
    )
    args = ap.parse_args()

    from dsllm.curation.config import CurateConfig
    from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
    from dsllm.curation.sources import resolve_inputs

    work = tempfile.mkdtemp(prefix="bench-e2e-", dir=args.workdir)
    try:
        crawl = os.path.join(work, "crawl")
        write_sample_crawl(crawl, SampleCrawlConfig(warcs=args.warcs, records=args.records, seed=args.seed))
        specs = resolve_inputs([crawl] + list(args.real))
        inputs = [s.uri for s in specs]
        traf = dataclasses.replace(
            CurateConfig(), extract=dataclasses.replace(CurateConfig().extract, extractor="trafilatura", timeout_s=60)
        )
        tiny = os.path.join(work, "tiny")
        write_sample_crawl(tiny, SampleCrawlConfig(warcs=1, records=40, seed=1))
        c0 = time.process_time()
        if not args.no_chain:
            chain_cpu(resolve_inputs([tiny]), traf, work)  # chain start-up: imports, model loads
        chain_startup = time.process_time() - c0
        runs: list[dict] = []
        for i in range(args.repeats):
            run: dict = {f"ours-{e}": ours(inputs, os.path.join(work, f"out-{e}"), e) for e in args.executors}
            shas = {tuple(run[f"ours-{e}"]["shards"]) for e in args.executors}
            assert len(shas) == 1, f"executors wrote different shards: {shas}"  # same outputs whatever runs them
            if not args.no_chain:
                run["chain"] = chain_cpu(specs, traf, work)
            if args.datatrove_python:
                run["datatrove"] = datatrove(args.datatrove_python, inputs, os.path.join(work, "dt"), args.workers)
            runs.append(run)
            print(f"repeat {i + 1}: " + json.dumps(run, default=str), file=sys.stderr, flush=True)
        report(args, runs, chain_startup, sum(os.path.getsize(f) for f in inputs) / 1e6)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(args, runs: list[dict], chain_startup: float, mb: float) -> None:
    med = statistics.median
    first = runs[0][f"ours-{args.executors[0]}"]
    pages = first["pages"]
    print(f"pages {pages} ({mb:.1f} MB .warc.gz), ours kept {first['kept']}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| run | wall s | CPU s (all cores) | pages/CPU-s | chain CPU s ÷ this CPU s (runs) |")
    print("|---|---|---|---|---|")
    ch = med(r["chain"] for r in runs) if "chain" in runs[0] else None

    def row(name, key, sub, wall_key="wall_s"):
        xs = [r[key] for r in runs]
        cpu = med(x[sub] for x in xs)
        if ch is None:
            ratio = "—"
        else:
            rs = sorted(r["chain"] / r[key][sub] for r in runs)
            ratio = f"{ch / cpu:.2f}× ({rs[0]:.2f}–{rs[-1]:.2f})"
        print(f"| {name} | {med(x[wall_key] for x in xs):.1f} | {cpu:.1f} | {pages / cpu:.0f} | {ratio} |")

    if ch is not None:
        print(
            f"| trafilatura chain, 1 process (its start-up, {chain_startup:.1f} CPU-s, not included) | — | "
            f"{ch:.1f} | {pages / ch:.0f} | 1.00× |"
        )
    for e in args.executors:
        row(f"`dsllm curate --executor {e}`, whole command", f"ours-{e}", "cpu_s")
        row(f"`dsllm curate --executor {e}`, net of start-up", f"ours-{e}", "cpu_in_run", "wall_in_run")
    if "datatrove" in runs[0]:
        row(f"datatrove, whole run ({args.workers} workers; kept {runs[0]['datatrove']['kept']})", "datatrove", "cpu_s")
    for e in args.executors:
        o = [r[f"ours-{e}"] for r in runs]
        cpu, net = med(x["cpu_s"] for x in o), med(x["cpu_in_run"] for x in o)
        print()
        print(
            f"--executor {e}, where the CPU goes (medians, CPU s): whole command {cpu:.2f} (rusage "
            f"{med(x['cpu_rusage'] for x in o):.2f}, sampled {med(x['cpu_sampled'] for x in o):.2f}); outside "
            f"the run's phases after start-up (imports, executor start/stop, worker boot) {cpu - net:.2f}"
        )
        for name in o[0]["phases"]:
            print(
                f"  phase {name}: wall {med(x['phases'][name][0] for x in o):.2f}, "
                f"CPU {med(x['phases'][name][1] for x in o):.2f}"
            )
        for name in o[0]["stages"]:
            print(f"    stage {name}: CPU {med(x['stages'][name] for x in o):.2f}")


if __name__ == "__main__":
    main()
