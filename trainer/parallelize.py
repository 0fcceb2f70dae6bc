"""Kernels, activation checkpointing, compilation and parallelism applied to the model from outside
(torchtitan's shape): trainer/model.py knows nothing of them. In the order `parallelize` applies
them to a model (built on `meta` for FSDP, see `build_model`):

- `apply_kernels`: the CPU-fused kernels of trainer/kernels.py, by swapping each module's class
  for its fused subclass (same parameters and names); CPUs only, where they were measured faster;
- `apply_activation_checkpointing`: `none` | `selective` (per decoder layer, keep the outputs of
  matmuls and attention, recompute norms, RoPE and activations) | `full` (keep only each layer's
  input, recompute the whole layer in the backward);
- `apply_compile`: torch.compile of each decoder block in place (`nn.Module.compile`, so
  state_dict names stay LlamaForCausalLM's);
- `apply_fsdp`: FSDP2 `fully_shard` per decoder layer, then the root, with a
  `MixedPrecisionPolicy` (bf16 compute, fp32 parameters and gradient reduction) when asked;
  `materialize` then allocates the shards on the run's device and draws each shard's rows of the
  same initial weights a single process draws (trainer.model.init_rows);
- `apply_ddp`: DistributedDataParallel (gloo on CPU, nccl on GPU);
- `grad_sync(model, enabled)`: skip gradient all-reduce on all but the last micro-batch.

Ray Train (`--workers N`, jobs/train_ray.py) or torchrun sets up the process group.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.distributed as dist
from torch import nn

from dsllm.trainer.config import ModelConfig
from dsllm.trainer.model import Transformer, init_rows

AC_MODES = ("none", "selective", "full")


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """The run's device: `cpu`, `cuda` (this worker's GPU: LOCAL_RANK under torchrun, the one Ray
    Train assigned otherwise), or `auto` (CUDA when present). `cuda` without CUDA is a user error."""
    import os

    from dsllm.errors import UserError

    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {name}: must be auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine (no GPU, or a CPU-only torch)")
    # torchrun: every GPU visible, this worker's is LOCAL_RANK; Ray Train: one GPU visible, set
    index = int(os.environ.get("LOCAL_RANK", "0"))
    index = index if index < torch.cuda.device_count() else torch.cuda.current_device()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


# ------------------------------------------------------------------------------- build on meta


def build_model(
    cfg: ModelConfig,
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    meta: bool = False,
) -> Transformer:
    """The model with its initial weights for `seed`: built in place on `device`, or (meta) on the
    `meta` device without storage, to be sharded and then `materialize`d shard by shard."""
    with torch.device("meta" if meta else device):
        model = Transformer(cfg, seed=seed)
    return model if meta else model.to(dtype)


@torch.no_grad()
def materialize(model: Transformer, device: torch.device | str, dtype: torch.dtype = torch.float32) -> Transformer:
    """Allocate a meta-built (possibly FSDP-sharded) model on `device` and draw its initial weights:
    each rank draws only the rows of its own shards (FSDP2 shards dim 0), and the values equal
    those rows of a plain build's weights for the same seed."""
    model.to_empty(device=device)
    for name, p in model.named_parameters():
        local, start = _local_rows(p)
        if p.ndim == 2:
            if local.shape[0]:
                rows = init_rows(
                    name, tuple(p.shape), model.config.initializer_range, model.init_seed, start, start + local.shape[0]
                )
                local.copy_(rows)
        else:
            local.fill_(1.0)
    if dtype != torch.float32:
        model.to(dtype)
    return model


def _local_rows(p: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(this rank's local tensor, its first global row): the whole tensor for a plain one; for an
    FSDP2 DTensor sharded on dim 0 (Shard(0): rank r holds rows [r·⌈n/W⌉, …), possibly none)."""
    from torch.distributed.tensor import DTensor

    if not isinstance(p, DTensor):
        return p.data, 0
    local = p.to_local()
    chunk = -(-p.shape[0] // p.device_mesh.size())
    return local, min(p.device_mesh.get_local_rank() * chunk, p.shape[0])


# ------------------------------------------------------------------------------------ kernels


def apply_kernels(model: nn.Module) -> nn.Module:
    """Swap in the CPU-fused kernels (trainer/kernels.py): each module whose class has a fused
    subclass becomes one, in place (parameters, buffers and names unchanged)."""
    from dsllm.trainer.kernels import FUSED

    for module in model.modules():
        fused = FUSED.get(type(module))
        if fused is not None:
            module.__class__ = fused
    return model


# ------------------------------------------------------------------------ activation checkpointing

# ops whose outputs selective checkpointing keeps (the expensive ones); everything else in a
# decoder layer (norms, RoPE, SiLU, products, reshapes) is recomputed in the backward
_SAVED_OPS = {
    torch.ops.aten.mm.default,
    torch.ops.aten.addmm.default,
    torch.ops.aten.bmm.default,
    torch.ops.aten.baddbmm.default,
    torch.ops.aten.linear.default,
    torch.ops.aten._scaled_dot_product_flash_attention.default,
    torch.ops.aten._scaled_dot_product_efficient_attention.default,
    torch.ops.aten._scaled_dot_product_cudnn_attention.default,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
}


def _selective_policy(ctx, op, *args, **kwargs):
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def apply_activation_checkpointing(model: Transformer, mode: str) -> Transformer:
    """Checkpoint every decoder layer (`full`) or its cheap ops (`selective`); `none` leaves it.
    The layer's forward is replaced on the instance, so names and hooks stay as they are."""
    if mode not in AC_MODES:
        raise ValueError(f"activation_checkpointing must be one of {', '.join(AC_MODES)}, got {mode!r}")
    if mode == "none":
        return model
    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

    context_fn = (
        functools.partial(create_selective_checkpoint_contexts, _selective_policy) if mode == "selective" else None
    )
    for layer in model.model.layers:
        plain = layer.forward

        def forward(*args, _plain=plain, **kwargs):
            kw = {"context_fn": context_fn} if context_fn else {}
            return checkpoint(_plain, *args, use_reentrant=False, **kw, **kwargs)

        layer.forward = forward
    return model


# ------------------------------------------------------------------------------------ compile

# inductor's mode. "max-autotune-no-cudagraphs" (which also benchmarks inductor's GEMM templates
# against oneDNN's) compiled 2-3x longer here (98-135 s vs 31-54 s cold) without a consistent
# speed-up over "default" (bench/RESULTS-train.md)
COMPILE_MODE = "default"


def apply_compile(model: Transformer, mode: str | None = None) -> Transformer:
    """torch.compile each decoder block in place (static shapes: every step has the same ones);
    the blocks are identical, so one compiled graph serves them all."""
    for layer in model.model.layers:
        layer.compile(mode=mode or COMPILE_MODE, dynamic=False)
    return model


# --------------------------------------------------------------------------------- data parallel


def apply_ddp(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, broadcast_buffers=False)


def apply_fsdp(model: Transformer, mixed_bf16: bool = False, reshard_after_forward: bool = True) -> Transformer:
    """FSDP2 per decoder layer, then the root (embedding, final norm, head). `mixed_bf16`: the
    parameters stay fp32 (the optimizer's master weights), gathered as bf16 for compute, and
    gradients are reduced in fp32 (MixedPrecisionPolicy)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kw = {}
    if mixed_bf16:
        kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward, **kw)
    fully_shard(model, **kw)
    return model


def parallelize(
    model: Transformer,
    strategy: str = "ddp",
    compile: bool | str = False,
    activation_checkpointing: str = "none",
    kernels: bool | None = None,
    mixed_bf16: bool = False,
) -> nn.Module:
    """The model to call in the training loop (the unwrapped one stays the one to save).
    `kernels`: swap in the CPU-fused kernels (default: when the model lives on a CPU)."""
    on_cpu = next(model.parameters()).device.type in ("cpu", "meta")
    if kernels if kernels is not None else on_cpu:
        apply_kernels(model)
    apply_activation_checkpointing(model, activation_checkpointing)
    if compile:
        apply_compile(model, compile if isinstance(compile, str) else None)
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"unknown parallel strategy {strategy!r} (ddp, fsdp)")
    _, n = world()
    if n == 1:
        return model
    return apply_fsdp(model, mixed_bf16) if strategy == "fsdp" else apply_ddp(model)


def grad_sync(model: nn.Module, enabled: bool):
    """Context for one micro-batch's backward: all-reduce gradients only when `enabled`."""
    if not enabled and hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a scalar over workers (the logged loss)."""
    _, n = world()
    if n > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= n
    return value


# ------------------------------------------------------------------ FSDP2 ↔ the native checkpoint


def is_fsdp(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(model state_dict, optimizer state_dict) as one process holds them: for an FSDP2 model the
    shards are gathered (a collective: every rank calls it; the full tensors land on the CPU) and
    the optimizer state is given the ids a plain `optimizer.state_dict()` uses (parameters numbered
    in param-group order), so a checkpoint resumes at any worker count."""
    if not is_fsdp(model):
        return model.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    if not osd:  # full state dicts land on rank 0 only
        return model_sd, osd
    ids = {fqn: i for i, fqn in enumerate(f for g in osd["param_groups"] for f in g["params"])}
    groups = [{**g, "params": [ids[f] for f in g["params"]]} for g in osd["param_groups"]]
    return model_sd, {"state": {ids[f]: s for f, s in osd["state"].items()}, "param_groups": groups}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a plain (id-keyed, full-tensor) optimizer state_dict, into FSDP2 shards when sharded."""
    if not is_fsdp(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = {p: n for n, p in model.named_parameters()}
    fqns = [names[p] for g in optimizer.param_groups for p in g["params"]]
    groups = [{**g, "params": [fqns[i] for i in g["params"]]} for g in state["param_groups"]]
    fqn_state = {"state": {fqns[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, fqn_state, options=StateDictOptions(full_state_dict=True))
