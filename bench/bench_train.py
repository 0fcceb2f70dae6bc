"""Training throughput and MFU: dsllm's Transformer against transformers' LlamaForCausalLM.

Same config (default: hidden 512, 8 layers, 8/2 heads, FFN 1376, vocab 32000, seq 512, batch 4),
same batch, same initial weights, full training steps (forward, backward, clip 1.0, AdamW). The
variants run interleaved round by round in one process, so a busy machine slows all alike; the
table reports medians of the per-step times. MFU uses the bf16 matmul peak measured here, in this
run (`trainer.metrics.measure_matmul_peak`).

Our side runs what `dsllm train` runs: the fused head + loss (`return_logits=False`), fused AdamW
(also given to transformers: it is its Trainer's default optimizer on torch >= 2.8), and for the
`bf16` policy bf16 weights with fp32 master weights and gradients. `--compile` adds
`trainer.parallelize.apply_compile` (what `--set compile=true` does) in two inductor modes and
prints each one's compile time (the first step); set TORCHINDUCTOR_CACHE_DIR to an empty folder to
measure a cold compile.

    /work/venv/bin/python bench/bench_train.py [--rounds 7] [--compile] [--only "dsllm bf16"]
"""

from __future__ import annotations

import argparse
import os
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trainer.model as tm  # noqa: E402
from trainer.config import ModelConfig  # noqa: E402
from trainer.metrics import measure_matmul_peak  # noqa: E402
from trainer.optim import MasterWeights, OptimConfig, build_optimizer, clip_gradients  # noqa: E402


class Variant:
    """One contestant: a model, its precision policy and optimizer, stepping on the same batch."""

    def __init__(self, name, model, precision, call, gqa_native=False):
        self.name, self.model, self.precision, self.call = name, model, precision, call
        self.gqa_native = gqa_native
        if precision == "bf16":
            model.to(torch.bfloat16)
        self.master = MasterWeights(model, precision)
        self.opt = build_optimizer(self.master, OptimConfig(lr=1e-3))
        self.times, self.losses = [], []

    def step(self, ids) -> None:
        tm.GQA_NATIVE = self.gqa_native
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


def build(cfg: ModelConfig, compile_: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf_cfg = LlamaConfig(**cfg.to_hf_dict("float32"))
    hf_cfg._attn_implementation = "sdpa"
    ref = LlamaForCausalLM(hf_cfg)
    ref.apply(lambda m: torch.nn.init.normal_(m.weight, std=cfg.initializer_range)
              if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)) else None)
    weights = ref.state_dict()

    def hf():
        m = LlamaForCausalLM(hf_cfg)
        m.load_state_dict(weights)
        return m.train()

    def ours():
        m = tm.Transformer(cfg)
        m.load_state_dict(weights)
        return m.train()

    variants = [
        Variant("transformers fp32", hf(), "fp32", hf_loss),
        Variant("dsllm fp32", ours(), "fp32", our_loss),
        Variant("transformers bf16 autocast", hf(), "bf16-autocast", hf_loss),
        Variant("dsllm bf16 autocast", ours(), "bf16-autocast", our_loss),
        Variant("transformers bf16 weights + fp32 master", hf(), "bf16", hf_loss),
        Variant("dsllm bf16 weights + fp32 master", ours(), "bf16", our_loss),
    ]
    if compile_:
        from trainer.parallelize import COMPILE_MODE, apply_compile

        for mode in (COMPILE_MODE, "max-autotune-no-cudagraphs"):
            m = ours().to(torch.bfloat16)
            apply_compile(m, mode)  # what `--set compile=true` does
            variants.append(Variant(f"dsllm bf16 weights + torch.compile ({mode})", m, "bf16", our_loss))
    return variants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--compile", action="store_true", help="add a torch.compile variant (slow to compile)")
    ap.add_argument("--only", default="", help="comma-separated substrings: keep the matching variants "
                    "(the anchors and dsllm fp32 are always kept)")
    args = ap.parse_args()
    cfg = ModelConfig(vocab_size=args.vocab, hidden_size=512, intermediate_size=1376, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=args.seq,
                      bos_token_id=1, eos_token_id=2)
    variants = build(cfg, args.compile)
    if args.only:
        keys = args.only.split(",")
        variants = [v for v in variants if v.name in ("transformers fp32", "dsllm fp32", "transformers bf16 autocast")
                    or any(k in v.name for k in keys)]
    load_before = os.getloadavg()
    torch.manual_seed(1)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq)) for _ in range(args.rounds + 1)]
    t0 = time.perf_counter()
    for v in variants:  # warm-up step (excluded); for compile this is the compile time
        t = time.perf_counter()
        v.step(batches[0])
        if "compile" in v.name:
            print(f"torch.compile first step (compile time): {time.perf_counter() - t:.0f} s", file=sys.stderr)
    peaks = []
    for r in range(1, args.rounds + 1):
        peaks.append(measure_matmul_peak(torch.bfloat16, repeats=3))
        for v in variants:
            v.step(batches[r])
        print(f"round {r}/{args.rounds} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    peak = statistics.median(peaks)
    tokens = args.batch * args.seq
    flops = cfg.train_flops_per_token(args.seq)
    by_name = {v.name: v for v in variants}
    print(f"\nconfig: d 512, 8 layers, 8/2 heads, FFN 1376, vocab {args.vocab}, seq {args.seq}, batch {args.batch}; "
          f"{flops / 1e6:.0f} MFLOP/token; measured bf16 matmul peak {peak / 1e9:.0f} GFLOP/s "
          f"(median of {len(peaks)}); {torch.get_num_threads()} threads; load average (1 min) "
          f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after\n")
    print("| variant | median step (s) | tokens/s | vs transformers (fp32 / bf16 autocast): ratio of medians | "
          "median of per-round ratios | MFU vs bf16 peak | loss after |")
    print("|---|---|---|---|---|---|---|")
    for v in variants:
        med = statistics.median(v.times[1:])
        ref = by_name["transformers fp32" if v.precision == "fp32" else "transformers bf16 autocast"]
        # the anchor's step of the same round ran seconds apart: the ratio cancels slow load drifts
        paired = statistics.median(a / b for a, b in zip(ref.times[1:], v.times[1:]))
        print(f"| {v.name} | {med:.3f} | {tokens / med:,.0f} | {statistics.median(ref.times[1:]) / med:.2f}× | "
              f"{paired:.2f}× | {tokens / med * flops / peak * 100:.1f}% | {v.losses[-1]:.4f} |")
    diffs = [abs(a - b) for a, b in zip(by_name["transformers fp32"].losses, by_name["dsllm fp32"].losses)]
    print(f"\nsame loss curve: fp32 losses of dsllm vs transformers over {len(diffs)} steps differ by at most "
          f"{max(diffs):.2e}")


if __name__ == "__main__":
    main()
