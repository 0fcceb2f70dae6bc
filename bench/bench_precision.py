"""fp32 vs bf16 matmul throughput on this CPU: why `precision = "auto"` picks fp32 where bf16 is emulated.

Run: python bench/bench_precision.py   (best of 5 products of n=1024, 3 interleaved rounds)
"""

import statistics
import time

import torch


def rate(dtype: torch.dtype, n: int = 1024, reps: int = 5) -> float:
    """Best GFLOP/s of an n×n×n product in `dtype` over `reps` tries (after one warm-up)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> None:
    native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    print(torch.__version__, torch.backends.cpu.get_cpu_capability(), "native bf16:", native)
    ratios = []
    for _ in range(3):
        f, h = rate(torch.float32), rate(torch.bfloat16)
        ratios.append(f / h)
        print(f"fp32 {f:.2f} GFLOP/s  bf16 {h:.2f} GFLOP/s  ratio {f / h:.1f}")
    print("median ratio", round(statistics.median(ratios), 1))


if __name__ == "__main__":
    main()
