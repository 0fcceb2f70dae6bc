"""DeepSeek LLM's scaling laws (paper §3): hyperparameters and model/data split for a compute budget.

C = M · D, with M the non-embedding FLOPs per token (72·n_layer·d² + 12·n_layer·d·l_seq) and
D the training tokens:
    η_opt = 0.3118 · C^−0.1250      B_opt = 0.2920 · C^0.3271 (tokens)
    M_opt = 0.1715 · C^0.5243       D_opt = 5.8316 · C^0.4757
"""

from __future__ import annotations

from dataclasses import dataclass

from dsllm.trainer.config import FLAVORS, ModelConfig


@dataclass(frozen=True)
class Plan:
    """The optimum for one compute budget."""

    compute: float
    lr: float
    batch_tokens: float
    model_flops_per_token: float
    data_tokens: float

    def batch_sequences(self, seq_len: int = 4096) -> float:
        return self.batch_tokens / seq_len


def optimal_lr(compute: float) -> float:
    return 0.3118 * compute**-0.125


def optimal_batch_tokens(compute: float) -> float:
    return 0.2920 * compute**0.3271


def plan(compute: float) -> Plan:
    """η_opt, B_opt, M_opt, D_opt for C FLOPs."""
    if not compute > 0:
        raise ValueError("compute must be positive")
    return Plan(
        compute=compute,
        lr=optimal_lr(compute),
        batch_tokens=optimal_batch_tokens(compute),
        model_flops_per_token=0.1715 * compute**0.5243,
        data_tokens=5.8316 * compute**0.4757,
    )


def model_flops_per_token(cfg: ModelConfig, seq_len: int = 4096) -> float:
    """M = 72·n_layer·d² + 12·n_layer·d·l_seq."""
    return cfg.flops_per_token(seq_len)


def implied(cfg: ModelConfig, tokens: float = 2e12, seq_len: int = 4096) -> Plan:
    """What the laws say for a given model trained on `tokens` (C = M·D)."""
    m = model_flops_per_token(cfg, seq_len)
    c = m * tokens
    return Plan(
        compute=c, lr=optimal_lr(c), batch_tokens=optimal_batch_tokens(c), model_flops_per_token=m, data_tokens=tokens
    )


def nearest_shape(m_flops: float, seq_len: int = 4096, head_dim: int = 128) -> tuple[int, int]:
    """A (n_layer, d_model) whose M is closest to `m_flops` at the 7B's aspect ratio
    (d ≈ 136.5·n_layer = 4096/30), d a multiple of head_dim. A starting point, not a law."""
    best = (1, head_dim)
    best_err = float("inf")
    for n_layer in range(1, 200):
        d = max(head_dim, round(136.5 * n_layer / head_dim) * head_dim)
        m = 72.0 * n_layer * d * d + 12.0 * n_layer * d * seq_len
        err = abs(m - m_flops) / m_flops
        if err < best_err:
            best, best_err = (n_layer, d), err
    return best


def released() -> dict[str, Plan]:
    """The laws applied to DeepSeek LLM 7B and 67B at 2T tokens."""
    return {name: implied(FLAVORS[name]) for name in ("7b", "67b")}
