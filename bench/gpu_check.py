"""A prepared check of the trainer on one GPU (H100 / H200 / A100), in under 8 minutes; JSON out.

    bench/gpu_check.sh                 # OUT=result.json bench/gpu_check.sh to keep the JSON
    python bench/gpu_check.py --smoke  # the same code path, tiny shapes, on the CPU (no GPU needed)

(a) a DeepSeek-shaped 1B (24 layers × 2048, SwiGLU 5504, MHA 16 heads, vocab 102400) at seq 4096,
    bf16 weights with fp32 master weights, each decoder block compiled, ~50 steps on synthetic
    tokens through the trainer's own step (trainer.train.train_step): tokens/s, MFU against the
    GPU's dense bf16 peak, peak memory (torch.cuda.max_memory_allocated);
(b) a tiny model trained 3 steps on the GPU and on the CPU in fp32 from the same seeded init
    (trainer.model.init_rows draws the same weights on both) on the same batches: loss differences;
(c) DeepSeek-LLM-7B: one training step with full activation checkpointing and bf16 AdamW states
    (fp32 weights, bf16 autocast) when the GPU has the memory for it (an H200), else the memory
    planner's verdict (trainer/memory.py).
Not yet run on a GPU: no GPU was available where it was written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from types import SimpleNamespace

import torch

from dsllm.trainer.config import FLAVORS, ModelConfig
from dsllm.trainer.memory import plan_memory
from dsllm.trainer.metrics import GPU_PEAKS
from dsllm.trainer.optim import MasterWeights, OptimConfig, build_optimizer, clip_gradients
from dsllm.trainer.parallelize import build_model, parallelize
from dsllm.trainer.train import train_step

ONE_B = ModelConfig(
    vocab_size=102400,
    hidden_size=2048,
    intermediate_size=5504,
    num_hidden_layers=24,
    num_attention_heads=16,
    num_key_value_heads=16,
    max_position_embeddings=4096,
)
TINY = ModelConfig(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=352,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)


def _peak(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in GPU_PEAKS.items() if k in name), float("nan"))


def _fast_init(cfg: ModelConfig, device, dtype) -> torch.nn.Module:
    """A model on `device` with N(0, std²) weights drawn there (the values do not matter for speed)."""
    model = build_model(cfg, seed=0, meta=True).to_empty(device=device)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, cfg.initializer_range) if p.ndim == 2 else p.fill_(1.0)
    return model.to(dtype)


def _steps(model, precision, device, batches, compile=False, ac="none", bf16_states=False):
    """Train on `batches` (a list per step of micro-batch id tensors); (losses, seconds per step)."""
    fwd = parallelize(model, "ddp", compile, ac)
    master = MasterWeights(model, precision)
    opt = build_optimizer(master, OptimConfig(lr=3e-4), bf16_states=bf16_states)
    autocast = (
        (lambda: torch.autocast(device.type, torch.bfloat16))
        if precision == "bf16-autocast"
        else contextlib.nullcontext
    )
    losses, times = [], []
    for micro in batches:
        t = time.perf_counter()
        loss = train_step(
            fwd, master, [SimpleNamespace(input_ids=ids, doc_offsets=None) for ids in micro], device, autocast
        )
        clip_gradients(master, 1.0)
        opt.step()
        master.zero_grad(opt)
        master.publish()
        losses.append(float(loss))  # a host sync: the step is done
        times.append(time.perf_counter() - t)
    return losses, times


def check_1b(device, smoke: bool) -> dict:
    cfg, seq, micro, steps = (TINY, 64, 2, 6) if smoke else (ONE_B, 4096, 2, 50)
    warm = 2 if smoke else 5
    model = _fast_init(cfg, device, torch.bfloat16)
    gen = torch.Generator(device="cpu").manual_seed(0)
    batches = [[torch.randint(0, cfg.vocab_size, (micro, seq), generator=gen).to(device)] for _ in range(steps)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    losses, times = _steps(model, "bf16", device, batches, compile=True)
    per_step = sum(times[warm:]) / len(times[warm:])
    tps = micro * seq / per_step
    flops = cfg.train_flops_per_token(seq)
    return {
        "model": "deepseek-1b" if not smoke else "tiny (smoke)",
        "params": cfg.num_parameters(),
        "seq_len": seq,
        "micro_batch": micro,
        "steps": steps,
        "timed_steps": steps - warm,
        "first_step_s": times[0],
        "tokens_per_s": tps,
        "mfu": tps * flops / _peak(device) if device.type == "cuda" else None,
        "peak_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None,
        "first_loss": losses[0],
        "last_loss": losses[-1],
    }


def check_gpu_vs_cpu(device) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(1)
    batches = [[torch.randint(0, TINY.vocab_size, (2, 64), generator=gen)] for _ in range(3)]
    runs = {}
    for key, where in (("device", device), ("cpu", torch.device("cpu"))):
        model = build_model(TINY, seed=7, device=where)
        runs[key] = _steps(model, "fp32", where, [[ids.to(where) for ids in m] for m in batches])[0]
    diffs = [abs(a - b) for a, b in zip(runs["device"], runs["cpu"])]
    return {"device_losses": runs["device"], "cpu_losses": runs["cpu"], "max_abs_diff": max(diffs)}


def check_7b(device, smoke: bool) -> dict:
    gpu = "h200" if device.type == "cuda" and "H200" in torch.cuda.get_device_name(device) else "h100"
    plan = plan_memory(FLAVORS["7b"], 1, gpu, 4096, 1, "full", bf16_optimizer_states=True).as_dict()
    have = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else 0.0
    if smoke or have < 125:  # a one-GPU 7B step needs an H200's 141 GB
        return {"ran": False, "gpu_memory_gib": have, "planner": plan}
    cfg = FLAVORS["7b"]
    model = _fast_init(cfg, device, torch.float32)
    torch.cuda.reset_peak_memory_stats(device)
    ids = torch.randint(0, cfg.vocab_size, (1, 4096), device=device)
    losses, times = _steps(model, "bf16-autocast", device, [[ids]], ac="full", bf16_states=True)
    return {
        "ran": True,
        "loss": losses[0],
        "step_s": times[0],
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "planner": plan,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (checks the script itself)")
    args = ap.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --smoke to run the tiny CPU version)", file=sys.stderr)
        return 2
    device = torch.device("cpu") if args.smoke else torch.device("cuda", 0)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)",
        "torch": torch.__version__,
    }
    t0 = time.perf_counter()
    result["a_1b"] = check_1b(device, args.smoke)
    result["b_gpu_vs_cpu"] = check_gpu_vs_cpu(device)
    result["c_7b"] = check_7b(device, args.smoke)
    result["seconds"] = time.perf_counter() - t0
    text = json.dumps(result, indent=2)
    print(text)
    if os.environ.get("OUT"):
        with open(os.environ["OUT"], "w", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
