"""AdamW with DeepSeek LLM's settings, and the precision policy's master weights.

Weight decay (0.1) applies to every weight matrix: attention and SwiGLU projections, the input
embedding and the output head (Megatron-LM's rule, which DeepSeek's HAI-LLM descends from: decay
what has 2 dimensions). RMSNorm gains are not decayed: they are scales that normalisation would
otherwise have to fight. `decay_embeddings = false` also exempts the embedding and the head.

Precision policies (`precision` in the train config):
- `fp32`:          fp32 weights, fp32 compute;
- `bf16-autocast`: fp32 weights, matmuls in bf16 under torch.autocast;
- `bf16`:          bf16 weights and activations, with fp32 master weights and fp32 gradient
                   accumulation held here (DeepSeek: "bf16 with fp32 gradient accumulation");
- `auto` (the default): `bf16` where the device has bf16 kernels (CUDA; a CPU with at least
                   AVX512 core, AVX512BW/VL/DQ, or the AVX512-BF16/AMX extensions, as oneDNN reports
                   it), else `fp32`. On an AVX2-only CPU bf16 matmuls are emulated: 0.2-0.3 vs 10-21
                   GFLOP/s for fp32 (about 50x slower) on a 2-core AMD EPYC,
                   `python bench/bench_precision.py` (bench/RESULTS-train.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16-autocast", "bf16")
PRECISION_CHOICES = ("auto", *PRECISIONS)


def native_bf16(device_type: str) -> bool:
    """Whether `device_type` computes bf16 matmuls natively (not emulated)."""
    if device_type == "cuda":
        return True
    if device_type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(precision: str, device_type: str) -> tuple[str, str]:
    """The policy a run uses for `precision` on `device_type`, and why (for `auto`)."""
    if precision != "auto":
        return precision, ""
    if native_bf16(device_type):
        return "bf16", f"{device_type} computes bf16 natively"
    capability = torch.backends.cpu.get_cpu_capability() if device_type == "cpu" else device_type
    return "fp32", f"this {device_type} has no native bf16 ({capability}): bf16 would be emulated"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW knobs; `lr` is the peak of the multi-step schedule."""

    lr: float = 4.2e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    decay_embeddings: bool = True

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("optim.beta1 and optim.beta2 must be in [0, 1)")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("optim.weight_decay and optim.grad_clip must be >= 0")


def decays(name: str, param: nn.Parameter, decay_embeddings: bool = True) -> bool:
    """Whether a parameter gets weight decay (see the module docstring)."""
    if param.ndim < 2:
        return False
    if not decay_embeddings and (name.endswith("embed_tokens.weight") or name.startswith("lm_head")):
        return False
    return True


class MasterWeights:
    """The fp32 copy the optimizer updates. For fp32 / autocast it is the model's own parameters;
    for `bf16` it is a separate fp32 copy whose gradients accumulate in fp32 across micro-batches."""

    def __init__(self, model: nn.Module, precision: str):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.separate = precision == "bf16"
        self._fresh = True  # the next accumulate() starts a new step's gradients
        if self.separate:
            self.master = [p.detach().float().clone().requires_grad_(True) for _, p in self.named]
        else:
            self.master = [p for _, p in self.named]

    @torch.no_grad()
    def accumulate(self) -> None:
        """After a micro-batch's backward: move bf16 gradients into the fp32 master gradients
        (buffers kept across steps; the first micro-batch of a step copies, later ones add)."""
        if not self.separate:
            return
        pairs = [(p, m) for (_, p), m in zip(self.named, self.master) if p.grad is not None]
        if not pairs:
            return
        for p, m in pairs:
            if m.grad is None:
                m.grad = torch.zeros_like(m)
        src = [p.grad for p, _ in pairs]
        dst = [m.grad for _, m in pairs]
        if self._fresh:
            stale = [m.grad for (_, p), m in zip(self.named, self.master) if p.grad is None and m.grad is not None]
            if stale:
                torch._foreach_zero_(stale)
            torch._foreach_copy_(dst, src)
        else:
            torch._foreach_add_(dst, src)
        self._fresh = False
        for p, _ in pairs:
            p.grad = None

    @torch.no_grad()
    def publish(self) -> None:
        """After the optimizer step: copy the fp32 master into the (bf16) model weights."""
        self._fresh = True
        if self.separate:
            torch._foreach_copy_([p for _, p in self.named], self.master)

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """After the step: drop the model's gradients; the fp32 master gradient buffers are kept
        (the next step's first micro-batch overwrites them)."""
        if not self.separate:
            optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def load_master(self, tensors: list[torch.Tensor]) -> None:
        if self.separate:
            for m, t in zip(self.master, tensors):
                m.copy_(t)

    def master_state(self) -> list[torch.Tensor] | None:
        return [m.detach() for m in self.master] if self.separate else None


def build_optimizer(master: MasterWeights, cfg: OptimConfig, bf16_states: bool = False) -> torch.optim.Optimizer:
    """AdamW over the master weights, two groups: decayed matrices and undecayed gains.
    `bf16_states`: the two moments in bf16 (`BF16StateAdamW`), half the optimizer's memory."""
    decay, no_decay = [], []
    for (name, p), m in zip(master.named, master.master):
        (decay if decays(name, p, cfg.decay_embeddings) else no_decay).append(m)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if bf16_states:
        return BF16StateAdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    # the fused kernel (one pass over parameters and moments) for plain tensors on CPUs and GPUs
    # (CUDA's fused AdamW); torch's default (foreach) for DTensor shards (FSDP) and other devices
    usual = all(m.device.type in ("cpu", "cuda") for m in master.master)
    plain = usual and all(type(m) in (torch.Tensor, nn.Parameter) for m in master.master)
    kind = {"fused": True} if plain else {"foreach": True} if usual else {}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, **kind)


class BF16StateAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected moments, as torch.optim.AdamW) whose two
    moments are stored in bf16 and updated in fp32 one parameter at a time: 4 bytes of optimizer
    state per parameter instead of 8 (what lets a 7B train on one 141 GB GPU, `dsllm plan`)."""

    def __init__(self, params, lr: float, betas=(0.9, 0.95), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p, dtype=torch.bfloat16)
                    st["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.bfloat16)
                st["step"] += 1
                g = p.grad.float()
                m = st["exp_avg"].float().lerp_(g, 1 - b1)
                v = st["exp_avg_sq"].float().mul_(b2).addcmul_(g, g, value=1 - b2)
                p.mul_(1 - group["lr"] * group["weight_decay"])
                denom = (v / (1 - b2 ** st["step"])).sqrt_().add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / (1 - b1 ** st["step"]))
                st["exp_avg"].copy_(m)
                st["exp_avg_sq"].copy_(v)


def clip_gradients(master: MasterWeights, max_norm: float) -> float:
    """Clip the global gradient norm (of the fp32 master gradients); returns the norm before."""
    params = [m for m in master.master if m.grad is not None]
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.nn.utils.get_total_norm([p.grad for p in params]))
