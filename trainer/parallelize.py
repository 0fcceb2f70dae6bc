"""Parallelism and compilation applied to the model from outside (torchtitan's shape): the model
file knows nothing of it.

- `world()`: (rank, world size) of the torch.distributed process group, (0, 1) without one;
- `apply_compile`: torch.compile of the whole model in place (`nn.Module.compile`, so state_dict
  names stay LlamaForCausalLM's); inductor fuses the elementwise work around the matmuls;
- `apply_ddp`: DistributedDataParallel (gloo on CPU, nccl on GPU);
- `apply_fsdp`: FSDP2 `fully_shard` per decoder layer, then the root (for models that do not fit
  one worker; the optimizer then sees DTensor shards);
- `grad_sync(model, enabled)`: skip gradient all-reduce on all but the last micro-batch.

Ray Train (`--workers N`, jobs/train_ray.py) sets up the process group; `parallelize` then picks
the strategy.
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# inductor's mode. "max-autotune-no-cudagraphs" (which also benchmarks inductor's GEMM templates
# against oneDNN's) compiled 2-3x longer here (98-135 s vs 31-54 s cold) without a consistent
# speed-up over "default" (bench/RESULTS-train.md)
COMPILE_MODE = "default"


def apply_compile(model: nn.Module, mode: str | None = None) -> nn.Module:
    """torch.compile the model in place (static shapes: every training step has the same ones)."""
    model.compile(mode=mode or COMPILE_MODE, dynamic=False)
    return model


def apply_ddp(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, broadcast_buffers=False)


def apply_fsdp(model: nn.Module, reshard_after_forward: bool = True) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward)
    fully_shard(model)
    return model


def parallelize(model: nn.Module, strategy: str = "ddp", compile: bool | str = False) -> nn.Module:
    """The model to call in the training loop (the unwrapped one stays the one to save)."""
    if compile:
        apply_compile(model, compile if isinstance(compile, str) else None)
    _, n = world()
    if n == 1:
        return model
    if strategy == "fsdp":
        return apply_fsdp(model)
    if strategy == "ddp":
        return apply_ddp(model)
    raise ValueError(f"unknown parallel strategy {strategy!r} (ddp, fsdp)")


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
