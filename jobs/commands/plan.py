"""DeepSeek LLM scaling-law hyperparameters for a compute budget, or a run's memory plan.

    dsllm plan --compute 1e21
    dsllm plan --model 7b --gpus 8 --gpu h100 [--seq-len 4096] [--micro-batch 1]
               [--activation-checkpointing none|selective|full] [--bf16-optimizer-states] [--json]

With --model: parameters, memory per GPU (params, grads, optimizer, activations, total) of the
FSDP2 bf16 layout and whether it fits, and the tokens/s to expect at 40% MFU (trainer/memory.py).
With --compute:

Prints η_opt, B_opt, M_opt and D_opt for C FLOPs (C = M·D, M = non-embedding FLOPs per token,
72·n_layer·d² + 12·n_layer·d·l_seq), a model shape near M_opt, and what the laws give for the
released 7B and 67B models at 2T tokens.
"""

from __future__ import annotations

from dsllm import console


def add_arguments(p) -> None:
    p.add_argument("--compute", default=None, metavar="FLOPS", help="compute budget C in FLOPs, e.g. 1e21 or 3.5e22")
    p.add_argument(
        "--model",
        default=None,
        metavar="{7b,67b,tiny,FILE}",
        help="memory plan of this model (a flavor or a LlamaConfig JSON)",
    )
    p.add_argument("--gpus", type=int, default=1, help="GPUs the model is sharded over (--model)")
    p.add_argument("--gpu", default="h100", choices=("a100", "h100", "h200"), help="GPU kind (--model)")
    p.add_argument("--micro-batch", type=int, default=1, metavar="B", help="sequences per micro-batch")
    p.add_argument("--activation-checkpointing", default="none", choices=("none", "selective", "full"))
    p.add_argument("--bf16-optimizer-states", action="store_true", help="AdamW moments in bf16")
    p.add_argument("--seq-len", type=int, default=4096, help="sequence length l_seq (default 4096)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _parse_compute(text: str) -> float:
    from dsllm.errors import UserError

    try:
        c = float(text)
    except ValueError:
        raise UserError(f"--compute {text!r}: not a number (e.g. 1e21)") from None
    if not c > 0 or c == float("inf"):
        raise UserError(f"--compute {text!r}: must be a positive finite number of FLOPs")
    return c


def run(args) -> int:
    import json

    from dsllm.errors import UserError
    from dsllm.trainer.plan import nearest_shape, plan, released

    if args.seq_len <= 0:
        raise UserError(f"--seq-len {args.seq_len}: must be positive")
    if args.model is not None:
        return _memory(args)
    if args.compute is None:
        raise UserError("give --compute FLOPS (scaling laws) or --model MODEL (memory plan)")
    c = _parse_compute(args.compute)
    p = plan(c)
    n_layer, d = nearest_shape(p.model_flops_per_token, args.seq_len)
    refs = released()
    if args.json:
        out = {
            "compute": c,
            "lr": p.lr,
            "batch_tokens": p.batch_tokens,
            "batch_sequences": p.batch_sequences(args.seq_len),
            "model_flops_per_token": p.model_flops_per_token,
            "data_tokens": p.data_tokens,
            "shape": {"num_hidden_layers": n_layer, "hidden_size": d},
            "released": {
                k: {
                    "compute": r.compute,
                    "lr": r.lr,
                    "batch_tokens": r.batch_tokens,
                    "batch_sequences": r.batch_sequences(),
                    "model_flops_per_token": r.model_flops_per_token,
                }
                for k, r in refs.items()
            },
        }
        console.out(json.dumps(out, indent=2))
        return 0
    console.out(f"compute C = {c:.3e} FLOPs (seq len {args.seq_len})")
    console.out(f"  learning rate   η_opt = 0.3118·C^-0.125  = {p.lr:.3e}")
    console.out(
        f"  batch           B_opt = 0.2920·C^0.3271  = {p.batch_tokens:.3e} tokens "
        f"({p.batch_sequences(args.seq_len):,.0f} sequences)"
    )
    console.out(
        f"  model           M_opt = 0.1715·C^0.5243  = {p.model_flops_per_token:.3e} FLOPs/token "
        f"(≈ {n_layer} layers × d {d})"
    )
    console.out(f"  data            D_opt = 5.8316·C^0.4757  = {p.data_tokens:.3e} tokens")
    console.out("released models at 2T tokens (used: 7B lr 4.2e-4, 2304 seqs; 67B lr 3.2e-4, 4608 seqs):")
    for name, r in refs.items():
        console.out(
            f"  {name:>4}: M = {r.model_flops_per_token:.3e}, C = {r.compute:.3e} → "
            f"η = {r.lr:.3e}, B = {r.batch_sequences():,.0f} sequences"
        )
    return 0


def _memory(args) -> int:
    import json

    from dsllm.errors import UserError
    from dsllm.trainer.config import resolve_model
    from dsllm.trainer.memory import plan_memory

    if args.gpus < 1 or args.micro_batch < 1:
        raise UserError("--gpus and --micro-batch must be positive")
    cfg = resolve_model(args.model)
    p = plan_memory(
        cfg,
        args.gpus,
        args.gpu,
        args.seq_len,
        args.micro_batch,
        args.activation_checkpointing,
        args.bf16_optimizer_states,
    )
    if args.json:
        console.out(json.dumps(p.as_dict(), indent=2))
        return 0
    g = p.per_gpu
    console.out(
        f"{args.model}: {p.params / 1e9:.2f}B parameters on {args.gpus} × {args.gpu} ({p.gpu_gib:.0f} GiB), "
        f"seq {args.seq_len} × micro-batch {args.micro_batch}, activation checkpointing "
        f"{args.activation_checkpointing}, optimizer states {'bf16' if args.bf16_optimizer_states else 'fp32'}"
    )
    console.out(
        f"  per GPU: params {g['params']:.1f} GiB, grads {g['grads']:.1f}, optimizer {g['optimizer']:.1f}, "
        f"activations {g['activations']:.1f}, total {g['total']:.1f} GiB → "
        f"{'fits' if p.fits else 'does NOT fit'} (90% of {p.gpu_gib:.0f} GiB usable)"
    )
    console.out(f"  at 40% MFU: {p.tokens_per_s_per_gpu:,.0f} tokens/s per GPU, {p.tokens_per_s:,.0f} tokens/s in all")
    return 0
