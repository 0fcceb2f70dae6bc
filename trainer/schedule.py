"""DeepSeek LLM's multi-step learning rate, as a pure function of tokens seen.

Linear warmup over `warmup_steps` optimizer steps (2,000 in the paper), then the peak; the rate
drops to 31.6% of the peak after 80% of the token budget and to 10% after 90%. Being a function of
tokens (not of steps) it stays right when the batch size or the worker count changes on resume,
and a run can be extended by reusing its first stage.

A weights-only resume (fresh AdamW moments) adds a short re-warmup: the rate ramps linearly from 0
over `rewarmup_steps` starting at the tokens where the run resumed, then follows the schedule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleConfig:
    """Multi-step schedule knobs. `total_tokens` 0 means: max_steps × tokens per step."""

    warmup_steps: int = 2000
    total_tokens: int = 0
    milestones: tuple[float, ...] = (0.8, 0.9)
    factors: tuple[float, ...] = (0.316, 0.1)
    rewarmup_steps: int = 100

    def __post_init__(self):
        if self.warmup_steps < 0 or self.rewarmup_steps < 0 or self.total_tokens < 0:
            raise ValueError("warmup_steps, rewarmup_steps and total_tokens must be >= 0")
        if len(self.milestones) != len(self.factors):
            raise ValueError("schedule.milestones and schedule.factors must have the same length")
        if list(self.milestones) != sorted(self.milestones) or not all(0 < m <= 1 for m in self.milestones):
            raise ValueError("schedule.milestones must be increasing fractions in (0, 1]")
        if not all(f > 0 for f in self.factors):
            raise ValueError("schedule.factors must be positive")


def multistep_lr(
    tokens: int,
    peak_lr: float,
    tokens_per_step: int,
    total_tokens: int,
    cfg: ScheduleConfig = ScheduleConfig(),
    resume_tokens: int | None = None,
) -> float:
    """The learning rate for the optimizer step that brings the tokens seen to `tokens`.

    tokens:          tokens seen after this step (the first step of a run has tokens = tokens_per_step)
    tokens_per_step: global batch in tokens (sets the warmup length: warmup_steps × this)
    total_tokens:    the budget the 80% / 90% milestones refer to
    resume_tokens:   tokens at a weights-only resume; ramps up again from there
    """
    if tokens_per_step <= 0 or total_tokens <= 0:
        raise ValueError("tokens_per_step and total_tokens must be positive")
    lr = peak_lr
    warmup_tokens = cfg.warmup_steps * tokens_per_step
    if tokens < warmup_tokens:
        lr = peak_lr * max(tokens, 0) / warmup_tokens
    for milestone, factor in zip(cfg.milestones, cfg.factors):
        if tokens > milestone * total_tokens:
            lr = peak_lr * factor
    if resume_tokens is not None and cfg.rewarmup_steps > 0:
        ramp = (tokens - resume_tokens) / (cfg.rewarmup_steps * tokens_per_step)
        lr *= min(1.0, max(ramp, 0.0))
    return lr
