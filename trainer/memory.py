"""`dsllm plan --model ... --gpus N --gpu ...`: memory per GPU and expected throughput of a run.

The layout planned is the one `--set strategy=fsdp` trains with on GPUs (trainer/parallelize.py):
FSDP2 fully sharded over the N GPUs, fp32 parameters (the master weights) and fp32 gradients
sharded 1/N each, AdamW's two moments sharded (fp32, or bf16 with `bf16_optimizer_states`), bf16
compute through a MixedPrecisionPolicy (two decoder layers gathered in bf16 at a time: the one
computing and the one prefetched), bf16 activations of one micro-batch.

Activations per token of one decoder layer, in bf16 (2 bytes), with flash attention (no T × T
scores kept; its log-sum-exp is negligible):
- `none`: what autograd keeps: both norms' inputs and outputs (4d), q, k, v (d + 2·kv), the
  attention output (d), gate, up, silu(gate) and their product (4f);
- `selective`: the layer input plus the matmul and attention outputs (q, k, v, attention, o_proj,
  gate, up, down: d + (d + 2·kv) + d + d + 2f + d);
- `full`: the layer input (d), plus one layer's `none` activations while it is recomputed.
Plus the head: the fused loss's (tokens × vocab) bf16 buffer and the embedding output.
`fits` leaves 10% of the GPU's memory for the CUDA context, NCCL buffers and fragmentation.
Estimates, not measurements: `bench/gpu_check.sh` measures the 1B's peak memory on a real GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsllm.trainer.config import ModelConfig

GIB = float(1 << 30)
# memory (bytes, as sold) and dense bf16 peak (FLOP/s) of the GPUs the planner knows
GPUS = {"a100": (80e9, 312e12), "h100": (80e9, 989e12), "h200": (141e9, 989e12)}
AC_MODES = ("none", "selective", "full")
HEADROOM = 0.9  # the share of a GPU's memory a plan may use
PLAN_MFU = 0.40  # the model FLOPs utilisation tokens/s are quoted at


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU by kind, and the verdict."""

    params: int
    per_gpu: dict[str, float]  # GiB: params, grads, optimizer, activations, total
    gpu_gib: float
    fits: bool
    tokens_per_s_per_gpu: float
    tokens_per_s: float

    def as_dict(self) -> dict:
        return {
            "params": self.params,
            "per_gpu_gib": self.per_gpu,
            "gpu_gib": self.gpu_gib,
            "fits": self.fits,
            "mfu": PLAN_MFU,
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "tokens_per_s": self.tokens_per_s,
        }


def activation_bytes_per_token(cfg: ModelConfig, mode: str) -> float:
    """bf16 activation bytes one token keeps across all decoder layers (see the module docstring)."""
    if mode not in AC_MODES:
        raise ValueError(f"activation checkpointing must be one of {', '.join(AC_MODES)}, got {mode!r}")
    d, f, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = cfg.num_key_value_heads * cfg.head_dim
    whole = 4 * d + (d + 2 * kv) + d + 4 * f
    if mode == "none":
        per_layer, extra = whole, 0
    elif mode == "selective":
        per_layer, extra = d + (d + 2 * kv) + d + d + 2 * f + d, 0
    else:
        per_layer, extra = d, whole
    return 2.0 * (L * per_layer + extra)


def plan_memory(
    cfg: ModelConfig,
    gpus: int,
    gpu: str,
    seq_len: int = 4096,
    micro_batch: int = 1,
    activation_checkpointing: str = "none",
    bf16_optimizer_states: bool = False,
) -> MemoryPlan:
    """Memory per GPU and tokens/s at `PLAN_MFU` for `cfg` on `gpus` × `gpu`."""
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r} ({', '.join(GPUS)})")
    if gpus < 1 or seq_len < 1 or micro_batch < 1:
        raise ValueError("gpus, seq_len and micro_batch must be positive")
    memory, peak = GPUS[gpu]
    n = cfg.num_parameters()
    d, f = cfg.hidden_size, cfg.intermediate_size
    kv = cfg.num_key_value_heads * cfg.head_dim
    layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
    params = 4.0 * n / gpus + 2 * 2.0 * layer  # fp32 shard + two bf16 gathered layers
    grads = 4.0 * n / gpus + 2.0 * layer  # fp32 shard + one bf16 unsharded layer's
    optimizer = (2 if bf16_optimizer_states else 4) * 2.0 * n / gpus
    tokens = seq_len * micro_batch
    activations = tokens * (activation_bytes_per_token(cfg, activation_checkpointing) + 2.0 * cfg.vocab_size + 2.0 * d)
    per_gpu = {"params": params, "grads": grads, "optimizer": optimizer, "activations": activations}
    per_gpu["total"] = sum(per_gpu.values())
    per_gpu = {k: round(v / GIB, 2) for k, v in per_gpu.items()}
    tps = PLAN_MFU * peak / cfg.train_flops_per_token(seq_len)
    return MemoryPlan(
        params=n,
        per_gpu=per_gpu,
        gpu_gib=round(memory / GIB, 2),
        fits=per_gpu["total"] <= HEADROOM * memory / GIB,
        tokens_per_s_per_gpu=round(tps, 1),
        tokens_per_s=round(tps * gpus, 1),
    )
