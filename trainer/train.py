"""The training loop: packed data → model → loss → AdamW with the multi-step LR → checkpoints.

Reads top to bottom: `train()` sets up (data, model, precision, optimizer, resume), then each step
runs the micro-batches of one global batch, clips, steps, logs, evaluates and checkpoints.
Exact resume: a native checkpoint restores weights, AdamW moments (and fp32 master weights), the
data position (sequences consumed) and the RNG, so a stopped and resumed run reproduces the
uninterrupted run's losses bit for bit (CPU, one worker).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dsllm import storage
from dsllm.config import config_to_dict
from dsllm.errors import UserError
from dsllm.trainer import checkpoint as ckpt_io
from dsllm.trainer.config import ModelConfig
from dsllm.trainer.metrics import MetricsLog, PeakFlops
from dsllm.trainer.model import Transformer, segments_from_offsets
from dsllm.trainer.optim import PRECISIONS, MasterWeights, OptimConfig, build_optimizer, clip_gradients
from dsllm.trainer.parallelize import all_reduce_mean, grad_sync, parallelize, world
from dsllm.trainer.schedule import ScheduleConfig, multistep_lr


@dataclass(frozen=True)
class TrainConfig:
    """One run's knobs (configs/train-*.toml, `--set key=value`)."""

    seed: int = 0
    batch_size: int = 32            # global batch in sequences (--batch-size)
    batch_tokens: int = 0           # global batch in tokens instead (a multiple of seq_len), if > 0
    micro_batch_size: int = 4       # sequences per forward/backward (gradient accumulation)
    max_steps: int = 1000
    precision: str = "bf16"          # bf16 (bf16 weights, fp32 master; fastest measured) | bf16-autocast | fp32
    compile: bool = False
    strategy: str = "ddp"           # ddp | fsdp when several workers
    threads: int = 0                # torch intra-op threads (0: torch's default)
    document_mask: bool = False     # attend within each packed document only (see below)
    log_every: int = 1
    eval_every: int = 100           # validation loss on the held-out tail of the data (0: never)
    eval_rows: int = 32
    checkpoint_every_steps: int = 1000
    checkpoint_every_minutes: float = 5.0
    keep_last: int = 3
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    model: dict = field(default_factory=dict)   # ModelConfig field overrides

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("batch_size", "micro_batch_size", "max_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.batch_tokens < 0 or self.eval_rows < 0 or self.keep_last < 0:
            raise ValueError("batch_tokens, eval_rows and keep_last must be >= 0")


# `document_mask`: with it, a token attends only to earlier tokens of its own document in a packed
# row (PACKED's doc_offsets; attention mask from trainer.model.segment_mask) and RoPE positions
# restart at 0 at every document start, so each document is computed as if it were alone. Off by
# default: the DeepSeek LLM paper does not say whether its packed sequences were masked this way
# (LLaMA-style pretraining usually lets attention cross document boundaries). Labels are not
# changed: the token after a document's last token is still a target.


class RowRange:
    """Rows [start, stop) of a PackedDataset, seen as a dataset (train / held-out split)."""

    def __init__(self, dataset, start: int, stop: int):
        self.base, self.start, self.rows = dataset, start, stop - start
        self.seq_len, self.manifest = dataset.seq_len, dataset.manifest
        self.chunk_rows = dataset.chunk_rows

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        return self.base.read_rows(np.asarray(indices, dtype=np.int64) + self.start)

    def read(self, indices: np.ndarray, segments: bool = False):
        return self.base.read(np.asarray(indices, dtype=np.int64) + self.start, segments=segments)


@dataclass
class Progress:
    """Where the run is: what a checkpoint must restore besides tensors."""

    step: int = 0
    tokens: int = 0
    sequences: int = 0
    resume_tokens: int | None = None   # set after a weights-only resume (re-warmup from there)


def open_data(uri: str, cfg: ModelConfig):
    """The packed dataset, checked against the model (vocabulary, context)."""
    from dsllm.trainer.data import PackedDataset

    ds = PackedDataset(uri)
    vocab = (ds.manifest.get("tokenizer") or {}).get("vocab_size")
    if vocab is not None and int(vocab) > cfg.vocab_size:
        raise UserError(f"{uri}: tokenizer vocabulary {vocab} is larger than the model's vocab_size "
                        f"{cfg.vocab_size} (use a model with vocab_size >= {vocab})")
    if ds.seq_len > cfg.max_position_embeddings:
        raise UserError(f"{uri}: sequence length {ds.seq_len} exceeds the model context "
                        f"max_position_embeddings {cfg.max_position_embeddings}")
    if ds.seq_len < 2:
        raise UserError(f"{uri}: sequence length {ds.seq_len} is too short to train on")
    return ds


def global_batch_sequences(cfg: TrainConfig, seq_len: int, world_size: int) -> int:
    """The global batch in sequences, checked to divide into workers × micro-batches."""
    n = cfg.batch_size
    if cfg.batch_tokens:
        if cfg.batch_tokens % seq_len:
            raise UserError(f"batch_tokens {cfg.batch_tokens} is not a multiple of the sequence length {seq_len}")
        n = cfg.batch_tokens // seq_len
    if n % (world_size * cfg.micro_batch_size):
        raise UserError(f"global batch of {n} sequences does not divide into {world_size} worker(s) × "
                        f"micro-batches of {cfg.micro_batch_size}")
    return n


def resume(src: str, model: Transformer, model_cfg: ModelConfig) -> tuple[dict | None, Progress]:
    """Load weights from `src`; return (native optimizer state or None, progress).

    A native checkpoint (ours) restores everything; anything else (a Hugging Face folder, an S3
    prefix of DeepSeek's) goes through trainer.hf: weights only, fresh AdamW, re-warmup."""
    from dsllm.trainer import hf

    ck = hf.resolve_checkpoint(src)
    if _shape(ck.config) != _shape(model_cfg):
        raise UserError(f"--resume-from {src}: its config ({_shape(ck.config)}) differs from the "
                        f"model's ({_shape(model_cfg)})")
    hf.load_into(model, ck)
    if ck.has_optimizer and ckpt_io.is_native(ck.path):
        optim_state, state = ckpt_io.load_native(ck.path)
        ckpt_io.set_rng_state(state["rng"])
        return optim_state, Progress(state["step"], state["tokens"], state["data"]["sequences_consumed"],
                                     state.get("resume_tokens"))
    step = ck.step or 0
    tokens = ck.tokens if ck.tokens is not None else None
    return None, Progress(step, tokens if tokens is not None else -1, 0, None)


def _shape(c: ModelConfig) -> str:
    """The fields that make weights fit (init std, context, special ids may differ)."""
    return (f"vocab {c.vocab_size}, d {c.hidden_size}, ffn {c.intermediate_size}, layers {c.num_hidden_layers}, "
            f"heads {c.num_attention_heads}/{c.num_key_value_heads}, rope theta {c.rope_theta}, eps {c.rms_norm_eps}")


@torch.no_grad()
def evaluate(model, rows: RowRange, micro: int, autocast, document_mask: bool = False) -> float:
    """Mean next-token loss over the held-out rows (masked per document like training when asked)."""
    model.eval()
    losses = []
    for start in range(0, rows.rows, micro):
        got = rows.read(np.arange(start, min(start + micro, rows.rows)), segments=document_mask)
        ids = torch.from_numpy(got.input_ids.astype(np.int64))
        kwargs = {}
        if document_mask:
            segment_ids, positions = segments_from_offsets(got.doc_offsets, rows.seq_len)
            kwargs = {"segment_ids": segment_ids, "positions": positions}
        with autocast():  # .forward: eager even when the model is compiled (no second, no-grad compile)
            losses.append(model.forward(ids, labels=ids, return_logits=False, **kwargs)[1].float() * len(ids))
    model.train()
    return float(torch.stack(losses).sum() / rows.rows)


def train(model_cfg: ModelConfig, cfg: TrainConfig, data: str, run_dir: str, resume_from: str | None = None,
          quiet: bool = False, on_checkpoint: Callable[[int, str], None] | None = None) -> dict:
    """Train; returns a summary (steps, tokens, last loss, last checkpoint).

    `run_dir` is a local directory or an s3:// URI (trained in a local staging directory and
    mirrored up, see trainer/mirror.py).
    `on_checkpoint(step, absolute checkpoint dir)` is called on this thread once per checkpoint
    after it is durably published (written, renamed, and uploaded for an S3 run), in step order,
    at the next step boundary (or the end). With several workers it is called on every rank that
    passes it, at the same step boundary with the same arguments (only rank 0 writes; the path is
    the run directory, shared by all workers)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world_size = world()
    ds = open_data(data, model_cfg)
    mirror = None
    if storage.is_remote(run_dir):  # an S3 run: train in a local staging dir, mirror it up
        from dsllm.trainer.mirror import RunMirror, staging_dir

        if not storage.is_s3(run_dir):
            raise UserError(f"--output {run_dir}: a run directory is local or s3://")
        run = staging_dir(run_dir, rank)
        run.mkdir(parents=True, exist_ok=True)
        mirror = RunMirror(run_dir, run, cfg.keep_last)
        mirror.pull()
    else:
        run = Path(run_dir)
    seq_len = ds.seq_len
    global_batch = global_batch_sequences(cfg, seq_len, world_size)
    n_micro = global_batch // world_size // cfg.micro_batch_size
    tokens_per_step = global_batch * seq_len
    n_val = min(cfg.eval_rows, ds.rows // 10) if cfg.eval_every > 0 else 0
    train_rows, val_rows = RowRange(ds, 0, ds.rows - n_val), RowRange(ds, ds.rows - n_val, ds.rows)

    # model, precision, optimizer
    torch.manual_seed(cfg.seed)
    model = Transformer(model_cfg)
    if cfg.precision == "bf16":
        model.to(torch.bfloat16)
    shown_from = resume_from
    if resume_from is None and ckpt_io.latest_checkpoint(run) is not None:
        resume_from = str(ckpt_io.latest_checkpoint(run))  # a rerun continues where it stopped
        shown_from = _shown(ckpt_io.latest_checkpoint(run), run_dir if mirror else None)
    optim_state, progress = None, Progress()
    if resume_from:
        optim_state, progress = resume(resume_from, model, model_cfg)
        if progress.tokens < 0:  # weights only, no token count: position the schedule by steps
            progress.tokens = progress.step * tokens_per_step
        if optim_state is None:
            progress.resume_tokens = progress.tokens
        if not quiet:
            kind = "exact resume" if optim_state else "weights only, fresh AdamW, re-warmup"
            print(f"resuming from {shown_from} at step {progress.step}, {progress.tokens:,} tokens ({kind})")
    fwd = parallelize(model, cfg.strategy, cfg.compile)  # before the optimizer: FSDP swaps parameters
    master = MasterWeights(model, cfg.precision)
    optimizer = build_optimizer(master, cfg.optim)
    if optim_state is not None:
        optimizer.load_state_dict(optim_state["optimizer"])
        master.load_master(optim_state["master"] or [])
    if progress.step >= cfg.max_steps:
        raise UserError(f"{run_dir}: already at step {progress.step}, nothing to do for --max-steps {cfg.max_steps}")

    from dsllm.trainer.data import DataLoader

    loader = DataLoader(train_rows, global_batch, cfg.micro_batch_size, cfg.seed, rank, world_size,
                        start_sequences=progress.sequences, chunk_rows=ds.chunk_rows, segments=cfg.document_mask)
    total_tokens = cfg.schedule.total_tokens or cfg.max_steps * tokens_per_step
    dtype = torch.float32 if cfg.precision == "fp32" else torch.bfloat16
    flops_per_token = model_cfg.train_flops_per_token(seq_len)
    peak = PeakFlops(dtype)  # one rank's device
    checkpointer = ckpt_io.Checkpointer(run, cfg.checkpoint_every_steps, cfg.checkpoint_every_minutes, cfg.keep_last,
                                        on_publish=on_checkpoint, mirror=mirror if rank == 0 else None)
    checkpointer.collective_announce = world_size > 1
    metrics = MetricsLog(run, cfg.max_steps, progress.step, quiet=quiet or rank != 0)
    hf_config = model_cfg.to_hf_dict("bfloat16" if cfg.precision == "bf16" else "float32")

    def autocast():
        return torch.autocast("cpu", torch.bfloat16) if cfg.precision == "bf16-autocast" else contextlib.nullcontext()

    def save(block: bool) -> None:
        state = {"step": progress.step, "tokens": progress.tokens, "data": loader.state(),
                 "rng": ckpt_io.rng_state(), "resume_tokens": progress.resume_tokens,
                 "precision": cfg.precision, "global_batch_sequences": global_batch, "seq_len": seq_len,
                 "world_size": world_size, "data_uri": data, "total_tokens": total_tokens,
                 "train_config": config_to_dict(cfg)}
        if rank == 0:
            checkpointer.save(progress.step, model.state_dict(),
                              {"optimizer": optimizer.state_dict(), "master": master.master_state()},
                              state, hf_config, block=block)

    batches = iter(loader)
    loss = torch.tensor(float("nan"))
    window_start, window_tokens = time.perf_counter(), 0
    try:
        while progress.step < cfg.max_steps:
            _announce(checkpointer, world_size)  # checkpoints the background writer finished meanwhile
            lr = multistep_lr(progress.tokens + tokens_per_step, cfg.optim.lr, tokens_per_step, total_tokens,
                              cfg.schedule, progress.resume_tokens)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros(())
            for micro in range(n_micro):
                batch = next(batches)
                ids = batch.input_ids
                if int(ids.max()) >= model_cfg.vocab_size or int(ids.min()) < 0:
                    raise UserError(f"{data}: token id {int(ids.max())} is outside the model's vocabulary "
                                    f"[0, {model_cfg.vocab_size})")
                with grad_sync(fwd, micro == n_micro - 1), autocast():
                    _, micro_loss = fwd(ids, labels=ids, return_logits=False, **_segments(batch, seq_len))
                    (micro_loss / n_micro).backward()
                master.accumulate()
                loss_sum += micro_loss.detach().float()
            loss = all_reduce_mean(loss_sum / n_micro)
            grad_norm = clip_gradients(master, cfg.optim.grad_clip)
            if not (math.isfinite(float(loss)) and math.isfinite(grad_norm)):
                checkpointer.wait()
                last = _shown(checkpointer.last_good, run_dir if mirror else None)
                raise UserError(f"non-finite loss or gradient at step {progress.step + 1} (loss {float(loss)}, "
                                f"grad norm {grad_norm}); stopped before the update. "
                                f"Last good checkpoint: {last or 'none'}")
            optimizer.step()
            master.zero_grad(optimizer)
            master.publish()
            progress.step += 1
            progress.tokens += tokens_per_step
            progress.sequences = batch.step_sequences_after
            window_tokens += tokens_per_step

            last_step = progress.step == cfg.max_steps
            if progress.step % cfg.log_every == 0 or last_step:
                elapsed = time.perf_counter() - window_start
                tps = window_tokens / elapsed
                record = {"step": progress.step, "tokens": progress.tokens, "loss": float(loss), "lr": lr,
                          "grad_norm": grad_norm, "tokens_per_s": tps, "mfu": peak.mfu(tps * flops_per_token / world_size),
                          "peak_source": peak.source}
                if n_val and (progress.step % cfg.eval_every == 0 or last_step):
                    record["val_loss"] = evaluate(model, val_rows, cfg.micro_batch_size, autocast,
                                                  cfg.document_mask)
                metrics.log(record)
                window_start, window_tokens = time.perf_counter(), 0
            if last_step or checkpointer.due(progress.step):
                save(block=last_step)
        checkpointer.wait()
        _announce(checkpointer, world_size)
    finally:
        loader.close()
        metrics.close()
    if mirror is not None and rank == 0:
        mirror.push_file("metrics.jsonl")  # with the last steps' validation losses
    return {"step": progress.step, "tokens": progress.tokens, "loss": float(loss),
            "checkpoint": _shown(checkpointer.last_good, run_dir if mirror else None)}


def _announce(checkpointer, world_size: int) -> None:
    """Run `on_checkpoint` for the checkpoints rank 0 has published; with several workers every
    rank calls it at the same step boundary with the same (step, path), since Ray Train's report()
    is a barrier that every worker must reach equally often."""
    if world_size == 1:
        checkpointer.announce()
        return
    import torch.distributed as dist

    shared = [checkpointer.pending() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(shared, src=0)
    checkpointer.announce(shared[0])


def _segments(batch, seq_len: int) -> dict:
    """Model kwargs restricting attention to each packed document (`document_mask`), else none."""
    if batch.doc_offsets is None:
        return {}
    segment_ids, positions = segments_from_offsets(batch.doc_offsets, seq_len)
    return {"segment_ids": segment_ids, "positions": positions}


def _shown(path: Path | None, remote_run: str | None) -> str | None:
    """A checkpoint as the user knows it: its S3 URI for an S3 run, else the local path."""
    if path is None:
        return None
    return storage.join(remote_run, "checkpoints", path.name) if remote_run else str(path)
