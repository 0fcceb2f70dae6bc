"""Training throughput and MFU: dsllm's Transformer against transformers' LlamaForCausalLM.

Same config (default: hidden 512, 8 layers, 8/2 heads, FFN 1376, vocab 32000, seq 512, batch 4),
same batch, same initial weights, full training steps (forward, backward, clip 1.0, AdamW). Each
variant runs in a process of its own, as each tool runs for its users (in one shared process the
allocator state one model leaves behind changed the other's step time by up to 50%); the parent
steps them round by round, one at a time, so a busy machine slows all alike. In a round each
variant runs `--steps` steps back to back, as in a training run, and the first is not timed: it
follows the other processes' work (cold caches, memory handed back to the kernel), which slowed
transformers' step by up to 50% and ours by up to 30% here. The table reports medians over rounds
of the per-step times and of the per-round ratios. MFU uses the bf16 matmul peak measured here, in this
run (`trainer.metrics.measure_matmul_peak`).

Our side runs what `dsllm train` runs: the fused head + loss (`return_logits=False`), fused AdamW
(also given to transformers: it is its Trainer's default optimizer on torch >= 2.8), and for the
`bf16` policy bf16 weights with fp32 master weights and gradients. `--compile` adds
`trainer.parallelize.apply_compile` (what `--set compile=true` does) in two inductor modes and
prints each one's compile time (the first step); set TORCHINDUCTOR_CACHE_DIR to an empty folder to
measure a cold compile.

    python bench/bench_train.py [--rounds 7] [--steps 4] [--compile] [--only "dsllm bf16"]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dsllm.trainer.model as tm  # noqa: E402
from dsllm.trainer.config import ModelConfig  # noqa: E402
from dsllm.trainer.metrics import measure_matmul_peak  # noqa: E402
from dsllm.trainer.optim import MasterWeights, OptimConfig, build_optimizer, clip_gradients  # noqa: E402


class Variant:
    """One contestant: a model, its precision policy and optimizer, stepping on the same batch."""

    def __init__(self, name, model, precision, call):
        self.name, self.model, self.precision, self.call = name, model, precision, call
        if precision == "bf16":
            model.to(torch.bfloat16)
        self.master = MasterWeights(model, precision)
        self.opt = build_optimizer(self.master, OptimConfig(lr=1e-3))
        self.times, self.losses = [], []

    def step(self, ids) -> None:
        ctx = torch.autocast("cpu", torch.bfloat16) if self.precision == "bf16-autocast" else contextlib.nullcontext()
        t = time.perf_counter()
        with ctx:
            loss = self.call(self.model, ids)
        loss.backward()
        self.master.accumulate()
        clip_gradients(self.master, 1.0)
        self.opt.step()
        self.master.zero_grad(self.opt)
        self.master.publish()
        self.times.append(time.perf_counter() - t)
        self.losses.append(loss.item())


def hf_loss(model, ids):
    return model(input_ids=ids, labels=ids).loss


def our_loss(model, ids):
    return model(ids, labels=ids, return_logits=False)[1]


NAMES = [
    "transformers fp32",
    "dsllm fp32",
    "transformers bf16 autocast",
    "dsllm bf16 autocast",
    "transformers bf16 weights + fp32 master",
    "dsllm bf16 weights + fp32 master",
]
COMPILED = [
    "dsllm bf16 weights + torch.compile (default)",
    "dsllm bf16 weights + torch.compile (max-autotune-no-cudagraphs)",
]


def make_variant(name: str, cfg: ModelConfig) -> Variant:
    """One contestant, built from the same seeded weights in whatever process calls this."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf_cfg = LlamaConfig(**cfg.to_hf_dict("float32"))
    hf_cfg._attn_implementation = "sdpa"
    ref = LlamaForCausalLM(hf_cfg)
    ref.apply(
        lambda m: (
            torch.nn.init.normal_(m.weight, std=cfg.initializer_range)
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))
            else None
        )
    )
    if name.startswith("transformers"):
        model, call = ref.train(), hf_loss
    else:
        from dsllm.trainer.parallelize import apply_kernels

        model, call = apply_kernels(tm.Transformer(cfg)), our_loss  # the CPU kernels, as train does
        model.load_state_dict(ref.state_dict())
        model.train()
    precision = "fp32" if "fp32" in name.split()[1] else "bf16-autocast" if "autocast" in name else "bf16"
    variant = Variant(name, model, precision, call)
    if "torch.compile" in name:
        from dsllm.trainer.parallelize import apply_compile

        apply_compile(model, name.split("(")[1].rstrip(")"))  # what `--set compile=true` does
    return variant


def serve(name: str, cfg: ModelConfig, args, conn) -> None:
    """A variant in a process of its own (as each tool runs for its users): step on command."""
    torch.set_num_threads(args.threads)
    variant = make_variant(name, cfg)
    torch.manual_seed(1)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq)) for _ in range(args.rounds + 1)]
    conn.send("ready")
    while (r := conn.recv()) is not None:
        for _ in range(args.steps):  # back to back, as in a training run
            variant.step(batches[r])
        # the round's first step follows other processes' work (cold caches, memory handed back
        # to the kernel): a training run never sees that, so it is not timed
        timed = variant.times[-(args.steps - 1) :] if args.steps > 1 else variant.times[-1:]
        conn.send((statistics.median(timed), variant.losses[-1]))


def config(args) -> ModelConfig:
    return ModelConfig(
        vocab_size=args.vocab,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=args.seq,
        bos_token_id=1,
        eos_token_id=2,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument(
        "--steps", type=int, default=3, help="consecutive steps per variant and round (the first is not timed)"
    )
    ap.add_argument("--compile", action="store_true", help="add the torch.compile variants (slow to compile)")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated substrings: keep the matching variants (the anchors and dsllm fp32 are always kept)",
    )
    args = ap.parse_args()
    args.threads = torch.get_num_threads()
    cfg = config(args)
    names = NAMES + (COMPILED if args.compile else [])
    if args.only:
        keys = args.only.split(",")
        names = [
            n
            for n in names
            if n in ("transformers fp32", "dsllm fp32", "transformers bf16 autocast") or any(k in n for k in keys)
        ]
    ctx = mp.get_context("spawn")
    procs, conns = [], []
    for name in names:  # one process per variant, started one after the other
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(name, cfg, args, child), daemon=True)
        proc.start()
        if parent.recv() != "ready":
            raise SystemExit(f"{name}: did not start")
        procs.append(proc)
        conns.append(parent)
    times = {n: [] for n in names}
    losses = {n: [] for n in names}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    for name, conn in zip(names, conns):  # warm-up step (excluded); for compile this is the compile time
        t = time.perf_counter()
        conn.send(0)
        conn.recv()
        if "compile" in name:
            print(f"{name}: first step (compile time) {time.perf_counter() - t:.0f} s", file=sys.stderr)
    peaks = []
    for r in range(1, args.rounds + 1):  # round by round, one variant at a time: no contention
        peaks.append(measure_matmul_peak(torch.bfloat16, repeats=3))
        for name, conn in zip(names, conns):
            conn.send(r)
            step, loss = conn.recv()
            times[name].append(step)
            losses[name].append(loss)
        print(f"round {r}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    for conn in conns:
        conn.send(None)
    for proc in procs:
        proc.join(timeout=30)
    peak = statistics.median(peaks)
    tokens = args.batch * args.seq
    flops = cfg.train_flops_per_token(args.seq)
    print(
        f"\nconfig: d 512, 8 layers, 8/2 heads, FFN 1376, vocab {args.vocab}, seq {args.seq}, batch {args.batch}; "
        f"{flops / 1e6:.0f} MFLOP/token; measured bf16 matmul peak {peak / 1e9:.0f} GFLOP/s "
        f"(median of {len(peaks)}); {args.threads} threads; each variant in a process of its own; load average "
        f"(1 min) {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n"
    )
    print(
        "| variant | median step (s) | tokens/s | vs transformers (fp32 / bf16 autocast): ratio of medians | "
        "median of per-round ratios | MFU vs bf16 peak | loss after |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        med = statistics.median(times[name])
        anchor = "transformers fp32" if name.split()[1] == "fp32" else "transformers bf16 autocast"
        # the anchor's step of the same round ran seconds apart: the ratio cancels slow load drifts
        paired = statistics.median(a / b for a, b in zip(times[anchor], times[name]))
        print(
            f"| {name} | {med:.3f} | {tokens / med:,.0f} | {statistics.median(times[anchor]) / med:.2f}× | "
            f"{paired:.2f}× | {tokens / med * flops / peak * 100:.1f}% | {losses[name][-1]:.4f} |"
        )
    diffs = [abs(a - b) for a, b in zip(losses["transformers fp32"], losses["dsllm fp32"])]
    print(
        f"\nsame loss curve: fp32 losses of dsllm vs transformers at the end of each of {len(diffs)} rounds "
        f"({args.steps} steps each) differ by at most {max(diffs):.2e} (the first round: {diffs[0]:.1e})"
    )


if __name__ == "__main__":
    main()
