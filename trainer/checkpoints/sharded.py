"""Sharded checkpoints with `torch.distributed.checkpoint` (DCP): every rank writes its own shards.

Layout: `RUN/checkpoints/step-NNNNNNNN/{config.json, trainer_state.json, sharded/}` where `sharded/`
is a DCP folder (`.metadata` + one `__R_0.distcp` file per rank). What it holds, under
`LlamaForCausalLM` names (FQNs):

- `model.<name>`: the weights in the precision the optimizer updates (fp32 master weights for the
  `bf16` policy, so nothing is lost; the parameters themselves otherwise, DTensor shards under FSDP2);
- `optim.<name>.<state>`: AdamW's moments and step count for that weight.

The trainer state (step, tokens, data position, RNG) is rank 0's, as in a native checkpoint. Because
DCP records each tensor's global shape and every rank's chunk, a checkpoint written by N ranks loads
into M ranks (any FSDP2 sharding) or into one plain process: `load` asks for the tensors it holds
locally and DCP reads the overlapping bytes.

Atomic publication: all ranks write into `checkpoints/.tmp-step-N/`; once DCP has finished (its
coordinator writes `.metadata` after every rank's data is written), rank 0 adds the JSON files and
renames the folder to `step-N`. `async_save` (train config `async_checkpoint`) copies the tensors
to CPU memory on the training thread and writes in a background thread; its collectives run on a
separate gloo process group so they never interleave with the training loop's.

Nothing here imports the rest of trainer/checkpoints (hf and export import this module).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import torch

from dsllm.errors import UserError

log = logging.getLogger(__name__)

DCP_DIR = "sharded"
FORMAT = "dcp"


def is_sharded(path: str | Path) -> bool:
    """A step folder holding a DCP checkpoint (config, trainer state, DCP metadata)."""
    p = Path(path)
    return (p / DCP_DIR / ".metadata").is_file() and (p / "config.json").is_file()


def read_metadata(path: str | Path):
    """The DCP `Metadata` of a sharded step folder (every tensor's global shape and dtype)."""
    from torch.distributed.checkpoint import FileSystemReader

    try:
        return FileSystemReader(str(Path(path) / DCP_DIR)).read_metadata()
    except (OSError, EOFError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: unreadable sharded checkpoint metadata ({exc})") from None


def model_shapes(path: str | Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{weight name: (shape, dtype)} of the model tensors a sharded checkpoint holds."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    out = {}
    for key, meta in read_metadata(path).state_dict_metadata.items():
        if key.startswith("model.") and isinstance(meta, TensorStorageMetadata):
            out[key.removeprefix("model.")] = (tuple(meta.size), meta.properties.dtype)
    return out


def read_tensors(path: str | Path, targets: dict[str, torch.Tensor]) -> None:
    """Read model weights `targets` ({name: destination tensor, full shape}) from a sharded
    checkpoint in this process alone (no collectives): only those tensors' bytes are read."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    with _quiet():
        dcp.load(
            {"model": targets},
            storage_reader=FileSystemReader(str(Path(path) / DCP_DIR)),
            planner=DefaultLoadPlanner(allow_partial_load=True),
            no_dist=True,
        )


@contextlib.contextmanager
def _quiet():
    """DCP warns on every single-process call that it assumes a single process: meant, so hidden.
    A process-wide filter for that one message (an async save warns from its writer thread, which
    `warnings.catch_warnings` does not reach)."""
    warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
    yield


# ------------------------------------------------------------------------------- state ↔ tensors


def _init_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Create the optimizer's state tensors (zero moments) without changing any weight: one step
    with zero gradients at lr 0, as torch.distributed.checkpoint.state_dict does before a load."""
    if optimizer.state:
        return
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    optimizer.step()
    for g, lr in zip(optimizer.param_groups, lrs):
        g["lr"] = lr
    for p in params:
        p.grad = None


def state_tensors(named_master: list[tuple[str, torch.Tensor]], optimizer: torch.optim.Optimizer) -> dict:
    """{"model": {name: weight}, "optim": {name: {state: tensor}}} for the (name, optimizer
    parameter) pairs: the tensors themselves, not copies (DTensor shards under FSDP2)."""
    model, optim = {}, {}
    for name, p in named_master:
        model[name] = p.detach()
        state = optimizer.state.get(p)
        if state:
            optim[name] = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    return {"model": model, "optim": optim}


# ------------------------------------------------------------------------------------- loading


def load(path: str | Path, named_master: list[tuple[str, torch.Tensor]], optimizer: torch.optim.Optimizer) -> None:
    """Load weights and optimizer state from a sharded step folder into this rank's tensors, in
    place (any number of ranks: under a process group every rank calls it; alone, no collectives)."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    _init_optimizer_state(optimizer)
    dest = state_tensors(named_master, optimizer)
    have = read_metadata(path).state_dict_metadata
    missing = [k for k in _flat_keys(dest) if k not in have]
    if missing:
        raise UserError(f"{path}: the sharded checkpoint lacks {len(missing)} tensor(s) (first: {missing[0]})")
    alone = not (dist.is_available() and dist.is_initialized())
    with torch.no_grad(), _quiet():
        dcp.load(dest, storage_reader=FileSystemReader(str(Path(path) / DCP_DIR)), no_dist=alone)


def _flat_keys(state: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in state.items():
        if isinstance(v, dict):
            out += _flat_keys(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def read_trainer_state(path: str | Path) -> dict:
    try:
        return json.loads((Path(path) / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"checkpoint {path}: unreadable trainer state ({exc})") from None


# -------------------------------------------------------------------------------------- saving


class ShardedWriter:
    """Writes sharded checkpoints; every rank calls `start` and `finish` for each one.

    `start` hands the tensors to DCP (blocking, or `async_save` when `use_async`); `finish` waits
    for the write and, on rank 0, writes the JSON files and publishes the folder. Returns the
    published folder on rank 0 (None elsewhere)."""

    def __init__(self, root: Path, rank: int, world_size: int, use_async: bool):
        self.root, self.rank, self.world_size, self.use_async = root, rank, world_size, use_async
        self._pending: tuple | None = None  # (future or None, step, tmp, final, trainer_state, config)
        self._group = None
        if use_async and world_size > 1:
            import torch.distributed as dist

            # collective on every rank, once: the background writer's own gloo group
            self._group = dist.new_group(backend="gloo")

    def start(self, step: int, state: dict, trainer_state: dict, config_json: dict) -> None:
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp

        final = self.root / f"step-{step:08d}"  # native.step_dir_name (native imports this module)
        tmp = self.root / f".tmp-{final.name}"
        distributed = self.world_size > 1
        if self.rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        if distributed:
            dist.barrier()  # the folder exists before any rank writes into it
        target = str(tmp / DCP_DIR)
        snapshot = (json.loads(json.dumps(trainer_state)), dict(config_json))
        try:
            with _quiet():
                if self.use_async:
                    future = dcp.async_save(
                        state, checkpoint_id=target, process_group=self._group, no_dist=not distributed
                    )
                else:
                    dcp.save(state, checkpoint_id=target, no_dist=not distributed)
                    future = None
        except OSError as exc:
            raise UserError(f"checkpoint {final}: {exc.strerror or exc}") from None
        self._pending = (future, step, tmp, final, *snapshot)

    def busy(self) -> bool:
        return self._pending is not None

    def finish(self) -> Path | None:
        """Wait for the checkpoint in flight; publish it (rank 0). None when nothing was in flight
        or on other ranks."""
        if self._pending is None:
            return None
        future, step, tmp, final, trainer_state, config_json = self._pending
        self._pending = None
        try:
            if future is not None:
                future.result()
        except OSError as exc:
            raise UserError(f"checkpoint {final}: {exc.strerror or exc}") from None
        if self.rank != 0:
            return None
        (tmp / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
        (tmp / "trainer_state.json").write_text(json.dumps({**trainer_state, "format": FORMAT}, indent=2) + "\n")
        if final.exists():  # a rerun reaching the same step: replace the older copy
            shutil.rmtree(final)
        os.replace(tmp, final)
        log.info("sharded checkpoint %s published", final)
        return final
