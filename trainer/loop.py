"""The small components `train()` calls: data, run directory, evaluation, throughput, checkpoints.

Each owns one concern of the loop in trainer/train.py, which reads as: set up, then per step run
the micro-batches, update, `Throughput.record` / `Evaluator` / `RunCheckpoints.save` when due.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dsllm import storage
from dsllm.config import config_to_dict
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import native as ckpt_io
from dsllm.trainer.config import ModelConfig
from dsllm.trainer.model import segments_from_offsets


class RowRange:
    """Rows [start, stop) of a PackedDataset, seen as a dataset (train / held-out split)."""

    def __init__(self, dataset, start: int, stop: int):
        self.base, self.start, self.rows = dataset, start, stop - start
        self.seq_len, self.manifest = dataset.seq_len, dataset.manifest
        self.chunk_rows = dataset.chunk_rows
        self.ordered = getattr(dataset, "ordered", False)  # a mixture: read in order (mixture_data.py)

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        return self.base.read_rows(np.asarray(indices, dtype=np.int64) + self.start)

    def read(self, indices: np.ndarray, segments: bool = False):
        return self.base.read(np.asarray(indices, dtype=np.int64) + self.start, segments=segments)


def open_data(uri: str, cfg: ModelConfig):
    """The packed dataset or mixture, checked against the model (vocabulary, context)."""
    from dsllm.trainer.mixture_data import open_dataset

    ds = open_dataset(uri)
    vocab = (ds.manifest.get("tokenizer") or {}).get("vocab_size")
    if vocab is not None and int(vocab) > cfg.vocab_size:
        raise UserError(
            f"{uri}: tokenizer vocabulary {vocab} is larger than the model's vocab_size "
            f"{cfg.vocab_size} (use a model with vocab_size >= {vocab})"
        )
    if ds.seq_len > cfg.max_position_embeddings:
        raise UserError(
            f"{uri}: sequence length {ds.seq_len} exceeds the model context "
            f"max_position_embeddings {cfg.max_position_embeddings}"
        )
    if ds.seq_len < 2:
        raise UserError(f"{uri}: sequence length {ds.seq_len} is too short to train on")
    return ds


def global_batch_sequences(cfg, seq_len: int, world_size: int) -> int:
    """The global batch in sequences, checked to divide into workers × micro-batches."""
    n = cfg.batch_size
    if cfg.batch_tokens:
        if cfg.batch_tokens % seq_len:
            raise UserError(f"batch_tokens {cfg.batch_tokens} is not a multiple of the sequence length {seq_len}")
        n = cfg.batch_tokens // seq_len
    if n % (world_size * cfg.micro_batch_size):
        raise UserError(
            f"global batch of {n} sequences does not divide into {world_size} worker(s) × "
            f"micro-batches of {cfg.micro_batch_size}"
        )
    return n


@dataclass
class TrainData:
    """The packed data of one run: the train / held-out split and the batch geometry."""

    uri: str
    dataset: object
    train_rows: RowRange
    val_rows: RowRange
    global_batch: int  # sequences per optimizer step, all workers
    n_micro: int  # micro-batches per step on one worker
    tokens_per_step: int

    @classmethod
    def open(cls, uri: str, model_cfg: ModelConfig, cfg, world_size: int) -> TrainData:
        ds = open_data(uri, model_cfg)
        global_batch = global_batch_sequences(cfg, ds.seq_len, world_size)
        n_val = min(cfg.eval_rows, ds.rows // 10) if cfg.eval_every > 0 else 0
        return cls(
            uri,
            ds,
            RowRange(ds, 0, ds.rows - n_val),
            RowRange(ds, ds.rows - n_val, ds.rows),
            global_batch,
            global_batch // world_size // cfg.micro_batch_size,
            global_batch * ds.seq_len,
        )

    @property
    def seq_len(self) -> int:
        return self.dataset.seq_len

    def loader(self, cfg, rank: int, world_size: int, start_sequences: int):
        """This worker's micro-batches from `start_sequences` on (exact resume)."""
        from dsllm.trainer.data import DataLoader

        return DataLoader(
            self.train_rows,
            self.global_batch,
            cfg.micro_batch_size,
            cfg.seed,
            rank,
            world_size,
            start_sequences=start_sequences,
            chunk_rows=self.dataset.chunk_rows,
            segments=cfg.document_mask,
        )

    def check_vocabulary(self, batch, vocab_size: int) -> None:
        """A micro-batch's token ids must lie in the model's vocabulary."""
        ids = batch.input_ids
        if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
            raise UserError(
                f"{self.uri}: token id {int(ids.max())} is outside the model's vocabulary [0, {vocab_size})"
            )


def segment_kwargs(doc_offsets, seq_len: int, device: torch.device | str = "cpu") -> dict:
    """Model kwargs restricting attention to each packed document (`document_mask`), else none."""
    if doc_offsets is None:
        return {}
    segment_ids, positions = segments_from_offsets(doc_offsets, seq_len)
    return {"segment_ids": segment_ids.to(device), "positions": positions.to(device)}


def open_run(run_dir: str, rank: int, keep_last: int):
    """(local run directory, mirror or None): an s3:// run trains in a local staging directory
    mirrored up (trainer/checkpoints/mirror.py), pulling what the bucket already holds."""
    if not storage.is_remote(run_dir):
        return Path(run_dir), None
    from dsllm.trainer.checkpoints.mirror import RunMirror, staging_dir

    if not storage.is_s3(run_dir):
        raise UserError(f"--output {run_dir}: a run directory is local or s3://")
    run = staging_dir(run_dir, rank)
    run.mkdir(parents=True, exist_ok=True)
    mirror = RunMirror(run_dir, run, keep_last)
    mirror.pull()
    return run, mirror


def autocast_for(precision: str, device_type: str = "cpu"):
    """A context factory: bf16 autocast on the run's device for `bf16-autocast`, else nothing."""
    if precision == "bf16-autocast":
        return lambda: torch.autocast(device_type, torch.bfloat16)
    return contextlib.nullcontext


class Evaluator:
    """Validation loss on the held-out tail, every `every` steps and at the last step."""

    def __init__(self, rows: RowRange, every: int, micro: int, autocast, document_mask: bool):
        self.rows, self.every, self.micro = rows, every, micro
        self.autocast, self.document_mask = autocast, document_mask

    def due(self, step: int, last: bool) -> bool:
        return self.rows.rows > 0 and (step % self.every == 0 or last)

    @torch.no_grad()
    def __call__(self, model) -> float:
        """Mean next-token loss over the held-out rows (masked per document like training when asked)."""
        model.eval()
        rows, losses = self.rows, []
        for start in range(0, rows.rows, self.micro):
            got = rows.read(np.arange(start, min(start + self.micro, rows.rows)), segments=self.document_mask)
            device = next(model.parameters()).device
            ids = torch.from_numpy(got.input_ids.astype(np.int64)).to(device)
            kwargs = segment_kwargs(got.doc_offsets, rows.seq_len, device) if self.document_mask else {}
            # called, not .forward: an FSDP2 root gathers its own shards (embedding, norm, head) in its
            # forward hooks; compile applies to each decoder block, which is called either way
            with self.autocast():
                losses.append(model(ids, labels=ids, return_logits=False, **kwargs)[1].float() * len(ids))
        model.train()
        return float(torch.stack(losses).sum() / rows.rows)


class Throughput:
    """Tokens/s and MFU over the steps since the last logged record."""

    def __init__(self, peak, flops_per_token: float, world_size: int, device: torch.device | None = None):
        self.peak, self.flops_per_token, self.world_size = peak, flops_per_token, world_size
        self.device = device
        self.start, self.tokens = 0.0, 0
        self.restart()

    def restart(self) -> None:
        self.start, self.tokens = time.perf_counter(), 0

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def record(self) -> dict:
        """{tokens_per_s, mfu, peak_source} of the window (`restart` begins the next one)."""
        tps = self.tokens / (time.perf_counter() - self.start)
        out = {
            "tokens_per_s": tps,
            "mfu": self.peak.mfu(tps * self.flops_per_token / self.world_size),
            "peak_source": self.peak.source,
        }
        if self.device is not None and self.device.type == "cuda":  # not yet run on a GPU
            out["tokens_per_s_per_gpu"] = tps / self.world_size
            out["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        return out


class RunCheckpoints:
    """Checkpoint cadence of a run: what a native checkpoint holds besides tensors, when it is due,
    and `on_checkpoint` announced on every rank at the same step boundary."""

    def __init__(
        self,
        checkpointer: ckpt_io.Checkpointer,
        rank: int,
        world_size: int,
        run_facts: dict,
        hf_config: dict,
        remote_run: str | None,
        sharded: bool = False,
        async_save: bool = False,
    ):
        self.checkpointer, self.rank, self.world_size = checkpointer, rank, world_size
        self.run_facts, self.hf_config, self.remote_run = run_facts, hf_config, remote_run
        checkpointer.collective_announce = world_size > 1
        self.sharded = sharded  # every rank writes its shards (trainer/checkpoints/sharded.py)
        if sharded:
            checkpointer.use_sharded(rank, world_size, async_save)

    def due(self, step: int) -> bool:
        return self.checkpointer.due(step)

    def save(self, progress, model, optimizer, master, loader, block: bool) -> None:
        """Rank 0 writes weights, AdamW (+ fp32 master) state, data position and RNG; for a sharded
        checkpoint every rank writes its shards of the (master) weights and AdamW state."""
        state = {
            "step": progress.step,
            "tokens": progress.tokens,
            "data": loader.state(),
            "rng": ckpt_io.rng_state(),
            "resume_tokens": progress.resume_tokens,
            **self.run_facts,
        }
        if self.sharded:
            from dsllm.trainer.checkpoints.sharded import state_tensors

            names = [n for n, _ in master.named]
            tensors = state_tensors(list(zip(names, master.master)), optimizer)
            self.checkpointer.save_sharded(progress.step, tensors, state, self.hf_config, block=block)
            return
        from dsllm.trainer.parallelize import full_state

        model_sd, optim_sd = full_state(model, optimizer)  # FSDP: a collective on every rank
        if self.rank == 0:
            self.checkpointer.save(
                progress.step,
                model_sd,
                {"optimizer": optim_sd, "master": master.master_state()},
                state,
                self.hf_config,
                block=block,
            )

    def announce(self) -> None:
        """Run `on_checkpoint` for the checkpoints rank 0 has published; with several workers every
        rank calls it at the same step boundary with the same (step, path), since Ray Train's report()
        is a barrier that every worker must reach equally often."""
        if self.world_size == 1:
            self.checkpointer.announce()
            return
        import torch.distributed as dist

        shared = [self.checkpointer.pending() if dist.get_rank() == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        self.checkpointer.announce(shared[0])

    def finish(self) -> None:
        """Wait for the background writer, then announce what it published."""
        self.checkpointer.wait()
        self.announce()

    def last_good(self) -> str | None:
        """The last published checkpoint as the user knows it (S3 URI for an S3 run)."""
        self.checkpointer.wait()
        return shown(self.checkpointer.last_good, self.remote_run)


def run_facts(cfg, data: TrainData, world_size: int, total_tokens: int) -> dict:
    """The run's fixed facts every checkpoint records (resume checks, `--resume-from` config)."""
    return {
        "precision": cfg.precision,
        "global_batch_sequences": data.global_batch,
        "seq_len": data.seq_len,
        "world_size": world_size,
        "data_uri": data.uri,
        "total_tokens": total_tokens,
        "train_config": config_to_dict(cfg),
    }


def shown(path: Path | None, remote_run: str | None) -> str | None:
    """A checkpoint as the user knows it: its S3 URI for an S3 run, else the local path."""
    if path is None:
        return None
    return storage.join(remote_run, "checkpoints", path.name) if remote_run else str(path)
