"""Training metrics: `RUN/metrics.jsonl`, throughput, MFU against a documented or measured peak, and
a progress line in the terminal.

MFU = achieved training FLOP/s ÷ peak FLOP/s, and every record names where its peak came from
(`peak_source`). The peak is, in order: `DSLLM_PEAK_FLOPS` (env); a GPU's documented dense bf16 peak;
on a CPU, a matmul micro-benchmark of this host in the training dtype (the best of several short
rounds, so a busy moment does not set it, bounded to about 2 s), cached in `~/.cache/dsllm/peak_flops.json` per (CPU,
threads, torch, dtype) and re-measured when older than a week. A peak below what the training step
itself achieves is implausible: it is re-measured, and if the step is still faster the peak is raised
to the step's own throughput, so MFU never exceeds 100%.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from dsllm import console

# dense bf16 tensor-core peaks (FLOP/s) of common accelerators
GPU_PEAKS = {
    "H100": 989e12,
    "H800": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "4090": 165e12,
    "V100": 125e12,
}


def _cache_file() -> Path:
    return Path(os.environ.get("DSLLM_CACHE", Path.home() / ".cache" / "dsllm")) / "peak_flops.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


STALE_SECONDS = 7 * 24 * 3600


def measure_matmul_peak(
    dtype: torch.dtype,
    n: int = 2048,
    repeats: int = 4,
    rounds: int = 3,
    budget_s: float | None = None,
) -> float:
    """Best FLOP/s of an n×n×n matmul in `dtype` on this host over `rounds` short rounds.

    With `budget_s` (what training uses) the measurement is bounded in time: the size starts at 256
    and doubles up to `n` only while one product takes under 20 ms, and the rounds stop once the
    budget is spent. Without it (the benchmarks) it runs every round at size `n`. On a CPU whose
    `dtype` matmul is emulated, or on a busy machine, a fixed 2048³ bf16 product can take seconds
    each; the bounded form costs about `budget_s` wherever it runs.
    """
    start = time.perf_counter()
    size = n if budget_s is None else min(256, n)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    t = time.perf_counter()
    a @ b  # warm-up (kernel selection, page faults)
    took = time.perf_counter() - t
    while budget_s is not None and size < n and took < 0.02:
        size *= 2
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        t = time.perf_counter()
        a @ b
        took = time.perf_counter() - t
    best = took
    for r in range(rounds):
        if r:
            time.sleep(0.05)  # a short gap: another process's burst on this core passes
        for _ in range(repeats):
            if budget_s is not None and time.perf_counter() - start > budget_s:
                return 2.0 * size**3 / best
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2.0 * size**3 / best


class PeakFlops:
    """The peak FLOP/s of one rank's device for MFU, with where it came from (`source`)."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16, device: str = "cpu"):
        self.dtype, self.device = dtype, device
        self.value, self.source = self._lookup()

    def _key(self) -> str:
        return f"{_cpu_name()}|threads={torch.get_num_threads()}|torch={torch.__version__}|{self.dtype}"

    def _lookup(self, force: bool = False) -> tuple[float, str]:
        if os.environ.get("DSLLM_PEAK_FLOPS"):
            return float(os.environ["DSLLM_PEAK_FLOPS"]), "DSLLM_PEAK_FLOPS"
        if self.device == "cuda" and torch.cuda.is_available():
            name = torch.cuda.get_device_name()
            for key, value in GPU_PEAKS.items():
                if key in name:
                    return value, f"documented dense bf16 peak of {key}"
        cache = _read_cache()
        entry = cache.get(self._key())
        fresh = isinstance(entry, dict) and time.time() - float(entry.get("measured_at", 0)) < STALE_SECONDS
        if force or not fresh:
            entry = {"flops": measure_matmul_peak(self.dtype, budget_s=2.0), "measured_at": time.time()}
            cache[self._key()] = entry
            _write_cache(cache)
            return float(entry["flops"]), f"matmul benchmark of this host ({self.dtype}), measured now"
        return float(entry["flops"]), f"matmul benchmark of this host ({self.dtype}), cached"

    def mfu(self, achieved_flops: float) -> float:
        """MFU of `achieved_flops` (one rank's FLOP/s). A measured peak below it is re-measured, then
        raised to it: MFU is at most 1 by construction."""
        if achieved_flops > self.value and self.source.startswith("matmul"):
            self.value, self.source = self._lookup(force=True)
            if achieved_flops > self.value:
                self.value = achieved_flops
                self.source += ", raised to the training step's own throughput"
                cache = _read_cache()
                cache[self._key()] = {"flops": self.value, "measured_at": time.time()}
                _write_cache(cache)
        return min(1.0, achieved_flops / self.value) if self.value > 0 else 0.0


def _read_cache() -> dict:
    try:
        cache = json.loads(_cache_file().read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time


def peak_flops(dtype: torch.dtype = torch.bfloat16, device: str = "cpu") -> float:
    """Peak FLOP/s for MFU (see the module docstring and `PeakFlops`)."""
    return PeakFlops(dtype, device).value


class MetricsLog:
    """Appends one JSON object per logged step to `RUN/metrics.jsonl` and prints progress.

    Only one process of a run may own the file (`write=True` on rank 0): several ranks appending
    to one shared file duplicate every line, and one rank's truncation on resume (a rename over
    the file) would strand another rank's open handle on the replaced file, losing its lines."""

    def __init__(
        self, run_dir: str | Path, max_steps: int, resume_step: int = 0, quiet: bool = False, write: bool = True
    ):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.max_steps, self.quiet = max_steps, quiet
        self._file = None
        if write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._truncate_after(resume_step)
            self._file = self.path.open("a", encoding="utf-8")
        self._start = time.monotonic()
        self._start_step = resume_step

    def _truncate_after(self, step: int) -> None:
        """Drop lines logged after the checkpoint a run resumes from (they will be logged again)."""
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                continue  # a line cut short by a crash
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def log(self, record: dict) -> None:
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if not self.quiet:
            console.note(self.progress_line(record))

    def progress_line(self, r: dict) -> str:
        if "val_loss" in r and "loss" not in r:
            return f"step {r['step']:>6}/{self.max_steps} | val loss {r['val_loss']:.4f}"
        done = r["step"] - self._start_step
        elapsed = time.monotonic() - self._start
        eta = elapsed / done * (self.max_steps - r["step"]) if done > 0 else 0.0
        return (
            f"step {r['step']:>6}/{self.max_steps} | loss {r['loss']:.4f} | lr {r['lr']:.2e} | "
            f"grad {r['grad_norm']:.3f} | {r['tokens_per_s']:,.0f} tok/s | mfu {r['mfu'] * 100:.1f}% | "
            f"eta {_duration(eta)}"
        )

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
