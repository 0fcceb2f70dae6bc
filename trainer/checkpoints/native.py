"""Native checkpoints: `RUN/checkpoints/step-NNNNNNNN/{config.json, model.safetensors, optimizer.pt,
trainer_state.json}`, written atomically and off the training thread, keeping the last K.

`SHA256SUMS` (`sha256sum` format) records the SHA-256 of the four files; loading a step folder checks
it (`integrity.verify_folder`), so a flipped bit is one clear error naming the file.

`model.safetensors` holds the weights under `LlamaForCausalLM` names in the training dtype (so
`transformers` loads the folder as it is); `optimizer.pt` holds AdamW's state and, for the `bf16`
policy, the fp32 master weights; `trainer_state.json` the step, tokens seen, data position and RNG.

Saving snapshots every tensor on the training thread (a memory copy), then serialises in a
background thread into `checkpoints/.tmp-step-N-PID/` and renames it to `step-N` (a rename within
one directory is atomic), so a crash never leaves a half-written `step-N`. One save runs at a
time; its error (a full disk, say) is raised on the training thread at the next `save`/`wait`.
"""

from __future__ import annotations

import base64
import collections
import errno
import io
import json
import os
import random
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import torch

from dsllm.errors import UserError
from dsllm.trainer.checkpoints import integrity

STEP_DIR = re.compile(r"^step-(\d{8,})$")


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete native checkpoints of a run, oldest first (a `step-N` exists only once complete)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def is_native(path: str | Path) -> bool:
    """A step folder with optimizer state and trainer state (exact resume possible)."""
    p = Path(path)
    return all(
        (p / name).is_file() for name in ("config.json", "model.safetensors", "optimizer.pt", "trainer_state.json")
    )


# ------------------------------------------------------------------------------------------ RNG


def rng_state() -> dict:
    """Every RNG a step may consume, JSON-ready (torch's state is base64 bytes)."""
    state = {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "python": repr(random.getstate()),
        "numpy": None,
    }
    np_state = np.random.get_state()
    state["numpy"] = [
        np_state[0],
        base64.b64encode(np_state[1].tobytes()).decode(),
        *map(int, np_state[2:4]),
        float(np_state[4]),
    ]
    return state


def set_rng_state(state: dict) -> None:
    import ast

    torch.set_rng_state(torch.from_numpy(np.frombuffer(base64.b64decode(state["torch"]), dtype=np.uint8).copy()))
    random.setstate(_tuples(ast.literal_eval(state["python"])))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.frombuffer(base64.b64decode(keys), dtype=np.uint32).copy(), pos, has_gauss, gauss))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------------------- saving


class Checkpointer:
    """Saves checkpoints of one run every N steps / M minutes in a background thread."""

    def __init__(
        self, run_dir: str | Path, every_steps: int, every_minutes: float, keep_last: int, on_publish=None, mirror=None
    ):
        self.on_publish, self.mirror = on_publish, mirror  # mirror: trainer.mirror.RunMirror (S3 runs)
        # several workers: announcements happen only where every rank takes part (train.py)
        self.collective_announce = False
        self._saves = False
        self.root = Path(run_dir) / "checkpoints"
        self.every_steps, self.every_minutes, self.keep_last = every_steps, every_minutes, keep_last
        self.last_time = time.monotonic()
        self.last_good: Path | None = latest_checkpoint(run_dir)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._saving_step: int | None = None
        self._published: collections.deque[tuple[int, Path]] = collections.deque()  # not yet announced
        self._sharded = None  # a sharded.ShardedWriter when the run writes DCP checkpoints (`use_sharded`)

    def use_sharded(self, rank: int, world_size: int, use_async: bool) -> None:
        """Write sharded (DCP) checkpoints with `save_sharded`: every rank writes its shards, rank 0
        publishes (called on every rank: with `use_async` it creates a process group)."""
        from dsllm.trainer.checkpoints.sharded import ShardedWriter

        self._sharded = ShardedWriter(self.root, rank, world_size, use_async)

    def save_sharded(self, step: int, state: dict, trainer_state: dict, config_json: dict, block: bool = False) -> None:
        """Every rank: write this rank's shards of `state` (sharded.state_tensors) for `step`; in the
        background with async save unless `block`. Rank 0 publishes `step-N` once all are written."""
        assert self._sharded is not None, "use_sharded() first"
        self._saves = self._sharded.rank == 0
        self.wait()
        self.last_time = time.monotonic()
        self._saving_step = step
        self._sharded.start(step, state, trainer_state, config_json)
        if block or not self._sharded.use_async:
            self._finish_sharded()

    def _finish_sharded(self) -> None:
        if self._sharded is None or not self._sharded.busy():
            return
        step = self._saving_step
        final = self._sharded.finish()
        if final is None:  # not rank 0
            return
        self.last_good = final
        if self.mirror is not None:
            self.mirror.push(step, final)
        self._published.append((step, final))
        self._prune()

    def pending(self) -> list[tuple[int, str]]:
        """The checkpoints published and not announced yet: [(step, absolute path)], oldest first."""
        return [(step, str(path.resolve())) for step, path in list(self._published)]

    def announce(self, published: list[tuple[int, str]] | None = None) -> None:
        """Call `on_publish(step, path)` for every checkpoint published since the last call (or for
        `published`: rank 0's `pending()` shared with every rank), oldest first, on the calling
        (training) thread; they are kept from pruning until then."""
        items = self.pending() if published is None else published
        for step, path in items:
            if self.on_publish is not None:
                self.on_publish(step, path)
        if items and self.collective_announce:  # every rank's callback is done before any pruning
            import torch.distributed as dist

            dist.barrier()
        for _ in range(min(len(items), len(self._published))):
            self._published.popleft()
        if items and self._saves:  # only the rank that writes checkpoints prunes them
            self._prune()

    def due(self, step: int) -> bool:
        """Whether the policy asks for a checkpoint after `step`."""
        if self.every_steps > 0 and step % self.every_steps == 0:
            return True
        return self.every_minutes > 0 and time.monotonic() - self.last_time >= self.every_minutes * 60

    def save(
        self,
        step: int,
        model_state: dict[str, torch.Tensor],
        optim_state: dict,
        trainer_state: dict,
        config_json: dict,
        block: bool = False,
    ) -> None:
        """Snapshot now, write in the background (or here when `block`)."""
        self._saves = True
        self.wait()
        snapshot = (
            {k: v.detach().clone().contiguous() for k, v in model_state.items()},
            _clone(optim_state),
            json.loads(json.dumps(trainer_state)),
            dict(config_json),
        )
        self.last_time = time.monotonic()
        self._saving_step = step
        if block:
            self._write(step, *snapshot)
            return
        self._thread = threading.Thread(
            target=self._run, args=(step, *snapshot), name=f"checkpoint-{step}", daemon=False
        )
        self._thread.start()

    def wait(self) -> None:
        """Finish the save in flight; raise its error as a one-line UserError."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._finish_sharded()
        if not self.collective_announce:
            self.announce()
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def _run(self, step, *snapshot) -> None:
        try:
            self._write(step, *snapshot)
        except BaseException as exc:  # noqa: BLE001 - handed to the training thread by wait()
            self._error = exc

    def _write(self, step: int, model_state, optim_state, trainer_state, config_json) -> None:
        from safetensors.torch import save_file

        final = self.root / step_dir_name(step)
        tmp = self.root / f".tmp-{step_dir_name(step)}-{os.getpid()}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            sums: dict[str, str] = {}
            blob = (json.dumps(config_json, indent=2) + "\n").encode()
            (tmp / "config.json").write_bytes(blob)
            sums["config.json"] = integrity.sha256_bytes(blob)
            save_file(model_state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            # safetensors writes the file itself: hashed by reading it back (from the page cache)
            sums["model.safetensors"] = integrity.sha256_file(tmp / "model.safetensors")
            buf = io.BytesIO()
            torch.save(optim_state, buf)
            (tmp / "optimizer.pt").write_bytes(buf.getbuffer())
            sums["optimizer.pt"] = integrity.sha256_bytes(buf.getbuffer())
            blob = (json.dumps(trainer_state, indent=2) + "\n").encode()
            (tmp / "trainer_state.json").write_bytes(blob)
            sums["trainer_state.json"] = integrity.sha256_bytes(blob)
            (tmp / integrity.SUMS).write_text(integrity.format_sums(sums))
            if final.exists():  # a rerun reaching the same step: replace the older copy
                shutil.rmtree(final)
            os.replace(tmp, final)
        except Exception as exc:  # OSError, or safetensors' own error wrapping one
            shutil.rmtree(tmp, ignore_errors=True)
            full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
            if not full and not isinstance(exc, OSError):
                raise
            last = f"; last good checkpoint: {self.last_good}" if self.last_good else "; no earlier checkpoint"
            reason = "no space left on device" if full else (exc.strerror or str(exc))
            raise UserError(f"checkpoint {final}: {reason}{last}") from None
        self.last_good = final
        if self.mirror is not None:  # an S3 run: published once uploaded (its errors are one line)
            self.mirror.push(step, final)
        self._published.append((step, final))
        self._prune()

    def _prune(self) -> None:
        """Keep the last K checkpoints; one not announced yet is kept until it is."""
        if self.keep_last <= 0:
            return
        unannounced = {path for _, path in list(self._published)}
        for old in list_checkpoints(self.root.parent)[: -self.keep_last]:
            if old not in unannounced:
                shutil.rmtree(old, ignore_errors=True)


def _clone(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


# --------------------------------------------------------------------------------------- loading


def load_native(path: str | Path) -> tuple[dict, dict]:
    """(optimizer.pt contents, trainer_state.json) of a native step folder."""
    p = Path(path)
    try:
        optim = torch.load(p / "optimizer.pt", map_location="cpu", weights_only=True)
        state = json.loads((p / "trainer_state.json").read_text())
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"checkpoint {p}: unreadable optimizer or trainer state ({exc})") from None
    return optim, state
