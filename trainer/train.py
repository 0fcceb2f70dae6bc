"""The training loop: packed data → model → loss → AdamW with the multi-step LR → checkpoints.

Reads top to bottom: `train()` sets up (data, model, precision, optimizer, resume), then each step
runs the micro-batches of one global batch, clips, steps, logs, evaluates and checkpoints. Data,
run directory, evaluation, throughput and checkpoint cadence are small components in trainer/loop.py.
Exact resume: a native checkpoint restores weights, AdamW moments (and fp32 master weights), the
data position (sequences consumed) and the RNG, so a stopped and resumed run reproduces the
uninterrupted run's losses bit for bit (CPU, one worker). A sharded checkpoint (DCP, the default
under FSDP2 with several workers: trainer/checkpoints/sharded.py) holds the same, each rank writing
its own shards, and resumes at any worker count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from dsllm import console
from dsllm.errors import UserError
from dsllm.trainer.checkpoints import native as ckpt_io
from dsllm.trainer.config import ModelConfig
from dsllm.trainer.loop import (
    Evaluator,
    RunCheckpoints,
    Throughput,
    TrainData,
    autocast_for,
    open_run,
    run_facts,
    segment_kwargs,
    shown,
)
from dsllm.trainer.metrics import MetricsLog, PeakFlops
from dsllm.trainer.model import Transformer
from dsllm.trainer.optim import (
    PRECISION_CHOICES,
    MasterWeights,
    OptimConfig,
    build_optimizer,
    clip_gradients,
    resolve_precision,
)
from dsllm.trainer.parallelize import (
    AC_MODES,
    all_reduce_mean,
    grad_sync,
    load_optimizer_state,
    materialize,
    parallelize,
    resolve_device,
    world,
)
from dsllm.trainer.schedule import ScheduleConfig, multistep_lr

CHECKPOINT_FORMATS = ("auto", "native", "dcp")


@dataclass(frozen=True)
class TrainConfig:
    """One run's knobs (configs/train-*.toml, `--set key=value`)."""

    seed: int = 0
    batch_size: int = 32  # global batch in sequences (--batch-size)
    batch_tokens: int = 0  # global batch in tokens instead (a multiple of seq_len), if > 0
    micro_batch_size: int = 4  # sequences per forward/backward (gradient accumulation)
    max_steps: int = 1000
    precision: str = (
        "auto"  # auto (bf16 where native, else fp32) | bf16 (bf16 weights, fp32 master) | bf16-autocast | fp32
    )
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda (--device)
    activation_checkpointing: str = "none"  # none | selective | full (trainer/parallelize.py)
    bf16_optimizer_states: bool = False  # AdamW moments in bf16 (trainer/optim.py)
    compile: bool = False
    strategy: str = "ddp"  # ddp | fsdp when several workers
    # native: one process writes full tensors (model.safetensors + optimizer.pt); dcp: every rank
    # writes its shards (torch.distributed.checkpoint, trainer/checkpoints/sharded.py); auto: dcp
    # under FSDP with several workers on a local run directory, else native
    checkpoint_format: str = "auto"
    async_checkpoint: bool = False  # dcp: write in the background (dcp.async_save)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    document_mask: bool = False  # attend within each packed document only (see below)
    log_every: int = 1
    eval_every: int = 100  # validation loss on the held-out tail of the data (0: never)
    eval_rows: int = 32
    eval_tasks: tuple[str, ...] = ()  # benchmarks scored every eval_every steps (see trainer/benchmarks)
    eval_tokenizer: str = ""  # tokenizer.json for eval_tasks
    eval_task_limit: int = 100  # first N documents of each task (0: all)
    eval_task_shots: int = -1  # few-shot variant (-1: the most shots the data has)
    checkpoint_every_steps: int = 1000
    checkpoint_every_minutes: float = 5.0
    keep_last: int = 3
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    model: dict = field(default_factory=dict)  # ModelConfig field overrides

    def __post_init__(self):
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.activation_checkpointing not in AC_MODES:
            raise ValueError(
                f"activation_checkpointing must be one of {', '.join(AC_MODES)}, got {self.activation_checkpointing!r}"
            )
        if self.checkpoint_format not in CHECKPOINT_FORMATS:
            raise ValueError(
                f"checkpoint_format must be one of {', '.join(CHECKPOINT_FORMATS)}, got {self.checkpoint_format!r}"
            )
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {self.precision!r}")
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


@dataclass
class Progress:
    """Where the run is: what a checkpoint must restore besides tensors."""

    step: int = 0
    tokens: int = 0
    sequences: int = 0
    resume_tokens: int | None = None  # set after a weights-only resume (re-warmup from there)

    def advance(self, tokens: int, sequences_after: int) -> None:
        """One optimizer step done: `tokens` more trained, the loader at `sequences_after`."""
        self.step += 1
        self.tokens += tokens
        self.sequences = sequences_after


Restore = Callable[[torch.nn.Module, torch.optim.Optimizer, MasterWeights], None]


def resume(src: str, model: Transformer, model_cfg: ModelConfig) -> tuple[Restore | None, Progress]:
    """Load weights from `src`; return (what restores the optimizer state once it exists, or None
    for a weights-only resume; progress).

    A native checkpoint (ours) restores everything; a sharded (DCP) one too, but its weights are
    loaded with the optimizer state by the returned function (every rank its own shards); anything
    else (a Hugging Face folder, an S3 prefix of DeepSeek's) goes through trainer.checkpoints.hf:
    weights only, fresh AdamW, re-warmup. Into an FSDP2-sharded model, every rank reads only the
    rows of its own shards (hf.load_into)."""
    from dsllm.trainer.checkpoints import hf, sharded

    step_dir = _sharded_step(src)
    if step_dir is not None:
        cfg = ModelConfig.from_hf_dict(json.loads((step_dir / "config.json").read_text()), where=str(step_dir))
        _check_shape(src, cfg, model_cfg)
        state = sharded.read_trainer_state(step_dir)
        ckpt_io.set_rng_state(state["rng"])

        def restore_sharded(model, optimizer, master):
            names = [n for n, _ in master.named]
            sharded.load(step_dir, list(zip(names, master.master)), optimizer)
            master.publish()  # bf16 weights from the loaded fp32 master (nothing to do otherwise)

        progress = Progress(
            state["step"], state["tokens"], state["data"]["sequences_consumed"], state.get("resume_tokens")
        )
        return restore_sharded, progress
    ck = hf.resolve_checkpoint(src, stream=False if _is_sharded_model(model) else None)
    _check_shape(src, ck.config, model_cfg)
    hf.load_into(model, ck)
    if ck.has_optimizer and ckpt_io.is_native(ck.path):
        optim_state, state = ckpt_io.load_native(ck.path)
        ckpt_io.set_rng_state(state["rng"])

        def restore_native(model, optimizer, master):
            load_optimizer_state(model, optimizer, optim_state["optimizer"])
            master.load_master(optim_state["master"] or [])

        return restore_native, Progress(
            state["step"], state["tokens"], state["data"]["sequences_consumed"], state.get("resume_tokens")
        )
    step = ck.step or 0
    tokens = ck.tokens if ck.tokens is not None else None
    return None, Progress(step, tokens if tokens is not None else -1, 0, None)


def _check_shape(src: str, found: ModelConfig, model_cfg: ModelConfig) -> None:
    if _shape(found) != _shape(model_cfg):
        raise UserError(
            f"--resume-from {src}: its config ({_shape(found)}) differs from the model's ({_shape(model_cfg)})"
        )


def _sharded_step(src: str) -> Path | None:
    """The sharded (DCP) step folder `src` names (itself, or a local run's latest checkpoint)."""
    from dsllm import storage
    from dsllm.trainer.checkpoints import sharded

    if storage.is_remote(src):
        return None
    p = Path(src)
    if not sharded.is_sharded(p) and (p / "checkpoints").is_dir():
        p = ckpt_io.latest_checkpoint(p) or p
    return p if sharded.is_sharded(p) else None


def _is_sharded_model(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _shape(c: ModelConfig) -> str:
    """The fields that make weights fit (init std, context, special ids may differ)."""
    return (
        f"vocab {c.vocab_size}, d {c.hidden_size}, ffn {c.intermediate_size}, layers {c.num_hidden_layers}, "
        f"heads {c.num_attention_heads}/{c.num_key_value_heads}, rope theta {c.rope_theta}, eps {c.rms_norm_eps}"
    )


def train(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    data: str,
    run_dir: str,
    resume_from: str | None = None,
    quiet: bool = False,
    on_checkpoint: Callable[[int, str], None] | None = None,
) -> dict:
    """Train; returns a summary (steps, tokens, last loss, last checkpoint).

    `run_dir` is a local directory or an s3:// URI (trained in a local staging directory and
    mirrored up, see trainer/checkpoints/mirror.py).
    `on_checkpoint(step, absolute checkpoint dir)` is called on this thread once per checkpoint
    after it is durably published (written, renamed, and uploaded for an S3 run), in step order,
    at the next step boundary (or the end). With several workers it is called on every rank that
    passes it, at the same step boundary with the same arguments (rank 0 publishes; the path is
    the run directory, shared by all workers)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rank, world_size = world()
    td = TrainData.open(data, model_cfg, cfg, world_size)
    loop_tasks = _loop_tasks(cfg, model_cfg)
    run, mirror = open_run(run_dir, rank, cfg.keep_last)
    remote_run = run_dir if mirror else None

    device = resolve_device(cfg.device)
    precision, why = resolve_precision(cfg.precision, device.type)
    if precision != cfg.precision:
        cfg = replace(cfg, precision=precision)
        if rank == 0 and not quiet:
            console.note(f"precision auto: {precision} ({why})")
    use_fsdp = cfg.strategy == "fsdp" and world_size > 1
    # FSDP2 with bf16: fp32 sharded parameters are the master weights, a MixedPrecisionPolicy
    # gathers them in bf16 for compute and reduces gradients in fp32
    fsdp_bf16 = use_fsdp and cfg.precision == "bf16"
    torch.manual_seed(cfg.seed)
    if use_fsdp:
        # built on `meta` (no storage), sharded per decoder layer, then each rank allocates and
        # draws only its shards' rows of the initial weights a single process draws for this seed
        with torch.device("meta"):
            model = Transformer(model_cfg, seed=cfg.seed)
        fwd = parallelize(
            model,
            cfg.strategy,
            cfg.compile,
            cfg.activation_checkpointing,
            kernels=device.type == "cpu",
            mixed_bf16=fsdp_bf16,
        )
        materialize(model, device)
        restore, progress = _resume_run(model, model_cfg, run, remote_run, resume_from, td.tokens_per_step, quiet)
    else:
        with torch.device(device):  # every tensor of the run lives on its device
            model = Transformer(model_cfg, seed=cfg.seed)  # the init seed, as the sharded build's
        if cfg.precision == "bf16":
            model.to(torch.bfloat16)
        restore, progress = _resume_run(model, model_cfg, run, remote_run, resume_from, td.tokens_per_step, quiet)
        # before the optimizer: DDP wraps the model
        fwd = parallelize(model, cfg.strategy, cfg.compile, cfg.activation_checkpointing)
    master = MasterWeights(model, "fp32" if fsdp_bf16 else cfg.precision)
    optimizer = build_optimizer(master, cfg.optim, bf16_states=cfg.bf16_optimizer_states)
    if restore is not None:
        restore(model, optimizer, master)
    if progress.step >= cfg.max_steps:
        raise UserError(f"{run_dir}: already at step {progress.step}, nothing to do for --max-steps {cfg.max_steps}")

    loader = td.loader(cfg, rank, world_size, progress.sequences)
    from dsllm.trainer.mixture_data import DomainTokens

    domain_tokens = DomainTokens.of(td.train_rows, loader.order) if rank == 0 else None
    total_tokens = cfg.schedule.total_tokens or cfg.max_steps * td.tokens_per_step
    dtype = torch.float32 if cfg.precision == "fp32" else torch.bfloat16
    throughput = Throughput(
        PeakFlops(dtype, device.type), model_cfg.train_flops_per_token(td.seq_len), world_size, device
    )
    sharded_ckpt = cfg.checkpoint_format == "dcp" or (cfg.checkpoint_format == "auto" and use_fsdp and not mirror)
    if sharded_ckpt and mirror:
        raise UserError(
            f"--output {run_dir}: sharded (dcp) checkpoints are written to a local or shared run directory only"
        )
    checkpoints = RunCheckpoints(
        ckpt_io.Checkpointer(
            run,
            cfg.checkpoint_every_steps,
            cfg.checkpoint_every_minutes,
            cfg.keep_last,
            on_publish=on_checkpoint,
            mirror=mirror if rank == 0 else None,
        ),
        rank,
        world_size,
        run_facts(cfg, td, world_size, total_tokens),
        model_cfg.to_hf_dict(
            "bfloat16" if cfg.precision == "bf16" and not fsdp_bf16 and not sharded_ckpt else "float32"
        ),
        remote_run,
        sharded=sharded_ckpt,
        async_save=cfg.async_checkpoint,
    )
    metrics = MetricsLog(run, cfg.max_steps, progress.step, quiet=quiet or rank != 0, write=rank == 0)
    autocast = autocast_for(cfg.precision, device.type)
    evaluator = Evaluator(td.val_rows, cfg.eval_every, cfg.micro_batch_size, autocast, cfg.document_mask)

    batches = iter(loader)
    loss = torch.tensor(float("nan"))
    throughput.restart()
    try:
        while progress.step < cfg.max_steps:
            checkpoints.announce()  # checkpoints the background writer finished meanwhile
            lr = multistep_lr(
                progress.tokens + td.tokens_per_step,
                cfg.optim.lr,
                td.tokens_per_step,
                total_tokens,
                cfg.schedule,
                progress.resume_tokens,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro_batches = [next(batches) for _ in range(td.n_micro)]
            batch = micro_batches[-1]
            for b in micro_batches:
                td.check_vocabulary(b, model_cfg.vocab_size)
            loss = all_reduce_mean(train_step(fwd, master, micro_batches, device, autocast))
            grad_norm = clip_gradients(master, cfg.optim.grad_clip)
            if not (math.isfinite(float(loss)) and math.isfinite(grad_norm)):
                raise UserError(
                    f"non-finite loss or gradient at step {progress.step + 1} (loss {float(loss)}, "
                    f"grad norm {grad_norm}); stopped before the update. "
                    f"Last good checkpoint: {checkpoints.last_good() or 'none'}"
                )
            optimizer.step()
            master.zero_grad(optimizer)
            master.publish()
            progress.advance(td.tokens_per_step, batch.step_sequences_after)
            throughput.add(td.tokens_per_step)

            last_step = progress.step == cfg.max_steps
            if progress.step % cfg.log_every == 0 or last_step:
                record = {
                    "step": progress.step,
                    "tokens": progress.tokens,
                    "loss": float(loss),
                    "lr": lr,
                    "grad_norm": grad_norm,
                    **throughput.record(),
                }
                if evaluator.due(progress.step, last_step):
                    record["val_loss"] = evaluator(model)
                if loop_tasks and cfg.eval_every > 0 and (progress.step % cfg.eval_every == 0 or last_step):
                    record.update(loop_tasks(model, autocast))
                if domain_tokens is not None:  # cumulative, from the data order (any worker count)
                    record["domain_tokens"] = domain_tokens.update(progress.sequences)
                metrics.log(record)
                throughput.restart()
            if last_step or checkpoints.due(progress.step):
                checkpoints.save(progress, model, optimizer, master, loader, block=last_step)
        checkpoints.finish()
    finally:
        loader.close()
        metrics.close()
    if mirror is not None and rank == 0:
        mirror.push_file("metrics.jsonl")  # with the last steps' validation losses
    return {
        "step": progress.step,
        "tokens": progress.tokens,
        "loss": float(loss),
        "checkpoint": checkpoints.last_good(),
    }


def train_step(fwd, master: MasterWeights, micro_batches: list, device: torch.device, autocast) -> torch.Tensor:
    """Forward and backward of one global batch's micro-batches on `device` (gradients all-reduced
    on the last one, accumulated into the master weights); returns the mean loss as a tensor on
    `device` (no host sync)."""
    n_micro = len(micro_batches)
    loss_sum = torch.zeros((), device=device)
    for micro, batch in enumerate(micro_batches):
        ids = batch.input_ids.to(device, non_blocking=True)
        with grad_sync(fwd, micro == n_micro - 1), autocast():
            _, micro_loss = fwd(
                ids, labels=ids, return_logits=False, **segment_kwargs(batch.doc_offsets, ids.shape[1], device)
            )
            (micro_loss / n_micro).backward()
        master.accumulate()
        loss_sum += micro_loss.detach().float()
    return loss_sum / n_micro


def _resume_run(
    model,
    model_cfg: ModelConfig,
    run: Path,
    remote_run: str | None,
    resume_from: str | None,
    tokens_per_step: int,
    quiet: bool,
) -> tuple[Restore | None, Progress]:
    """Load `resume_from`, or the run's own latest checkpoint on a rerun; (optimizer restore, progress)."""
    shown_from = resume_from
    latest = ckpt_io.latest_checkpoint(run)
    if resume_from is None and latest is not None:
        resume_from, shown_from = str(latest), shown(latest, remote_run)  # a rerun continues where it stopped
    if not resume_from:
        return None, Progress()
    restore, progress = resume(resume_from, model, model_cfg)
    if progress.tokens < 0:  # weights only, no token count: position the schedule by steps
        progress.tokens = progress.step * tokens_per_step
    if restore is None:
        progress.resume_tokens = progress.tokens
    if not quiet:
        kind = "exact resume" if restore else "weights only, fresh AdamW, re-warmup"
        console.out(f"resuming from {shown_from} at step {progress.step}, {progress.tokens:,} tokens ({kind})")
    return restore, progress


def _loop_tasks(cfg: TrainConfig, model_cfg: ModelConfig):
    """The in-loop benchmark scorer, or None when no eval_tasks are configured."""
    if not cfg.eval_tasks:
        return None
    from dsllm.trainer.benchmarks.inloop import LoopTasks

    return LoopTasks(
        tuple(cfg.eval_tasks),
        cfg.eval_tokenizer,
        cfg.eval_task_limit or None,
        None if cfg.eval_task_shots < 0 else cfg.eval_task_shots,
        model_cfg.max_position_embeddings,
        model_cfg.bos_token_id,
        model_cfg.vocab_size,
    )
