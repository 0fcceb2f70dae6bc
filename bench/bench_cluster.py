"""Cluster benchmarks (issue: scale out on a Ray cluster):

1. Submission overhead: `dsllm submit` → the job is RUNNING (and → our entrypoint's first log line),
   against a bare `JobSubmissionClient.submit_job` of `python -c pass` with no working dir (the anchor:
   Ray's own cost).
2. Curate throughput with 1 vs 2 Ray workers: a real `ray start --head` with --num-cpus 1, then 2, and
   `dsllm curate --ray-address` on the same sample crawl (wall time; target ≥ 1.8× for 2 workers).
   The configurations alternate run by run (a fresh head each time), so slow drifts of a shared
   machine hit both alike.
3. The machine's own ceiling for that speed-up, without Ray: the same per-input work
   (`curation.pipeline.process_input`) in one process pinned to core 0 over all WARCs, against two
   processes pinned to cores 0 and 1 over half of them each.

Every Ray process is bound to 127.0.0.1 and stopped by its own temp dir (never `ray stop`).

    python bench/bench_cluster.py [--warcs 4] [--records 150] [--runs 3] [--pin]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = dict(
    os.environ,
    RAY_AUTH_MODE="disabled",
    RAY_USAGE_STATS_ENABLED="0",
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Head:
    """A `ray start --head` of our own, on loopback, stopped by its temp dir."""

    def __init__(self, num_cpus: int, pin: bool = False):
        self.temp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
        self.gcs, self.dash = free_port(), free_port()
        # --pin: the head and every process it starts get exactly num_cpus cores (taskset), so
        # "1 worker" cannot borrow the second core through library thread pools
        self.prefix = ["taskset", "-c", ",".join(map(str, range(num_cpus)))] if pin else []
        subprocess.run(
            [
                *self.prefix,
                str(BIN / "ray"),
                "start",
                "--head",
                f"--port={self.gcs}",
                "--node-ip-address=127.0.0.1",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dash}",
                f"--temp-dir={self.temp}",
                f"--num-cpus={num_cpus}",
                "--disable-usage-stats",
                # every port of our own, so a head being torn down cannot collide
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
            ],
            env=ENV,
            check=True,
            capture_output=True,
            timeout=180,
        )
        self.url, self.address = f"http://127.0.0.1:{self.dash}", f"127.0.0.1:{self.gcs}"
        import requests

        for _ in range(120):
            try:
                if requests.get(f"{self.url}/api/version", timeout=5).ok:
                    break
            except requests.RequestException:
                time.sleep(1)

    def stop(self) -> None:
        import psutil

        procs = [p for p in psutil.process_iter(["cmdline"]) if self.temp in " ".join(p.info["cmdline"] or [])]
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)


def submit_bare(client) -> str:
    deadline = time.time() + 120
    while time.time() < deadline:  # a fresh head answers 500 until its dashboard agent is up
        try:
            return client.submit_job(entrypoint="python -c pass")
        except RuntimeError as exc:
            if "No available agent" not in str(exc):
                raise
            time.sleep(1)
    raise RuntimeError("the head's dashboard agent did not come up")


def submission_overhead(head: Head, runs: int) -> tuple[float, float]:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.url)

    def until_running(job_id: str) -> None:
        while str(client.get_job_status(job_id)).split(".")[-1] == "PENDING":
            time.sleep(0.05)

    ours, bare = [], []
    until_running(submit_bare(client))  # warm-up: the agent is up
    for _ in range(runs):
        t = time.perf_counter()
        job = submit_bare(client)
        until_running(job)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run(
            [str(BIN / "dsllm"), "submit", "pack", "--address", head.url, "--", "--help"],
            env=ENV,
            capture_output=True,
            text=True,
            check=True,
        )
        until_running(out.stdout.strip())
        ours.append(time.perf_counter() - t)
    return statistics.median(ours), statistics.median(bare)


def curate_wall(head: Head, crawl: str, out: str) -> tuple[float, float]:
    """(whole command wall s, per-input phase wall s as the runner reports it)."""
    import re

    t = time.perf_counter()
    res = subprocess.run(
        [
            *head.prefix,
            str(BIN / "dsllm"),
            "curate",
            "cc:CC-MAIN-2024-10",
            "--cc-base",
            crawl,
            "--output",
            out,
            "--ray-address",
            head.address,
            "--skip",
            "minhash_dedup",
        ],
        env=ENV,
        check=True,
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    wall = time.perf_counter() - t
    # the last progress line of the per-input map: "[curate/inputs] N/N tasks on W worker(s) (100%) | … | 14.6s"
    phase = re.findall(r"^\[curate/inputs\] (\d+)/\1 tasks on \d+ worker\(s\).* \| ([\d.]+)s$", res.stderr, re.M)
    return wall, float(phase[-1][1]) if phase else float("nan")


ANCHOR = """
import sys, time
from dsllm.curation.config import CurateConfig
from dsllm.curation.pipeline import process_input, replace_skip
from dsllm.curation.sources import resolve_inputs
from dsllm.config import load_config
cfg = replace_skip(load_config(CurateConfig, None, [], default="curate.toml"), ["minhash_dedup"])
for spec in resolve_inputs(sys.argv[2:], None, None):
    process_input(spec, cfg, sys.argv[1])
"""


def without_ray(crawl: str, work: str, run: int) -> tuple[float, float]:
    """(one process on core 0 over every WARC, two processes on cores 0 and 1 over half each), wall s."""
    warcs = sorted(str(p) for p in Path(crawl).rglob("*.warc.gz"))

    def proc(core: int, out: str, files: list[str]):
        return subprocess.Popen(
            ["taskset", "-c", str(core), sys.executable, "-c", ANCHOR, out, *files],
            env=ENV,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
        )

    t = time.perf_counter()
    assert proc(0, os.path.join(work, f"anchor1-{run}"), warcs).wait() == 0
    one = time.perf_counter() - t
    t = time.perf_counter()
    pair = [
        proc(0, os.path.join(work, f"anchor2-{run}"), warcs[0::2]),
        proc(1, os.path.join(work, f"anchor2-{run}"), warcs[1::2]),
    ]
    assert all(p.wait() == 0 for p in pair)
    return one, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warcs", type=int, default=4)
    ap.add_argument("--records", type=int, default=150)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pin", action="store_true", help="pin each configuration to its cores with taskset")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dsllm-bench-cluster-")
    crawl = os.path.join(work, "crawl")
    subprocess.run(
        [str(BIN / "dsllm"), "sample-crawl", crawl, "--warcs", str(args.warcs), "--records", str(args.records)],
        env=ENV,
        check=True,
        capture_output=True,
    )
    walls: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    anchors: list[tuple[float, float]] = []
    overhead = None
    for r in range(args.runs):  # alternate the configurations run by run
        for cpus in (1, 2):
            head = Head(cpus, pin=args.pin)
            try:
                if cpus == 2 and overhead is None:
                    overhead = submission_overhead(head, args.runs)
                walls[cpus].append(curate_wall(head, crawl, os.path.join(work, f"out-{cpus}-{r}")))
            finally:
                head.stop()
            print(
                f"run {r + 1}: {cpus} worker(s): whole {walls[cpus][-1][0]:.1f} s, per-input phase "
                f"{walls[cpus][-1][1]:.1f} s",
                file=sys.stderr,
            )
        anchors.append(without_ray(crawl, work, r))
        print(
            f"run {r + 1}: without Ray: 1 process {anchors[-1][0]:.1f} s, 2 processes {anchors[-1][1]:.1f} s",
            file=sys.stderr,
        )
    one, two = (statistics.median(w for w, _ in walls[n]) for n in (1, 2))
    p1, p2 = (statistics.median(p for _, p in walls[n]) for n in (1, 2))
    a1, a2 = statistics.median(a for a, _ in anchors), statistics.median(b for _, b in anchors)
    ratios = [a / b for (_, a), (_, b) in zip(walls[1], walls[2])]
    print(f"| submission → RUNNING | dsllm submit {overhead[0]:.2f} s | bare submit_job {overhead[1]:.2f} s |")
    print(
        f"| curate {args.warcs}×{args.records} records, whole command | 1 worker {one:.1f} s | 2 workers {two:.1f} s | "
        f"speed-up {one / two:.2f}× |"
    )
    print(
        f"| curate, per-input phase (read → … → pii, Ray tasks) | 1 worker {p1:.1f} s | 2 workers {p2:.1f} s | "
        f"speed-up {p1 / p2:.2f}× (per run: {', '.join(f'{x:.2f}' for x in ratios)}) |"
    )
    print(
        f"| the same per-input work without Ray (ceiling) | 1 process {a1:.1f} s | 2 processes {a2:.1f} s | "
        f"speed-up {a1 / a2:.2f}× (per run: {', '.join(f'{a / b:.2f}' for a, b in anchors)}) |"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
