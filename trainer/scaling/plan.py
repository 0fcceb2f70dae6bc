"""The sweep planner: compute budgets → runs (model shape, tokens, learning rate, batch).

Shapes (the documented rule). A target M (non-embedding FLOPs per token,
M = 72·n_layer·d² + 12·n_layer·d·l_seq, DeepSeek §3) becomes a shape in two steps:
  1. depth: the n_layer whose shape at the aspect ratio d = `aspect`·n_layer has the M nearest
     to the target (in log M);
  2. width: for that depth, the d (a multiple of `head_dim`) whose M is nearest to the target.
Heads = d / head_dim (all of them key/value heads, as the 7B's MHA), SwiGLU width 8d/3 rounded to
`ffn_multiple`, so the matmul parameters per layer are the 12·d² that M counts.

IsoFLOP mode: each budget C gets `points` targets on a geometric ladder of M common to every
budget (ratio `span`^(1/(points−1))), the `points` rungs nearest M_opt(C); D = C/M tokens.
hparams mode (DeepSeek's first step): at each budget one shape (nearest M_opt(C)) and a
`points` × `points` grid of η and B around η_opt(C), B_opt(C) (ratios `lr_step`, `batch_step`).
Validation runs: one run at M_opt(C), η_opt(C), B_opt(C) of the current laws, which `fit`
reports beside its prediction for C and never fits.

Hyperparameters: `hparams_by = "budget"` uses η_opt(C), B_opt(C) of the run's budget (the
paper's IsoFLOP protocol); `"shape"` (the default) uses those of the budget at which the shape is
compute-optimal, C* = M_opt⁻¹(M), so a shape gets the same η and B at every budget and the
first stage of its runs can be shared (equal to the paper's choice at the IsoFLOP minimum).

Shared first stage. DeepSeek's multi-step schedule holds the peak rate until 80% of the tokens,
so runs of one shape that agree on η, B, warmup, seed and precision are the same run up to 80%
of the shorter one's tokens. Such runs form a group: one "trunk" trains at the peak rate and
checkpoints at each run's branch step (the last step at or before 80% of its tokens); each run
resumes exactly from its branch checkpoint and trains its own 80→90→100% decay. The result is the
same as training each run alone (same data order, rates and RNG; bitwise on CPU), for
0.8·D_max + Σ 0.2·D_i tokens instead of Σ D_i.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

from dsllm.errors import UserError
from dsllm.trainer.config import ModelConfig
from dsllm.trainer.scaling.laws import PowerLaw
from dsllm.trainer.schedule import ScheduleConfig

MODES = ("isoflop", "hparams")


@dataclass(frozen=True)
class ShapeRule:
    """How a target M becomes (n_layer, d_model)."""

    aspect: float = 64.0  # d_model / n_layer (DeepSeek 7B: 136.5, 67B: 86)
    head_dim: int = 64
    ffn_multiple: int = 8
    max_layers: int = 256

    def __post_init__(self):
        if not (
            self.aspect > 0
            and self.head_dim > 0
            and self.head_dim % 2 == 0
            and self.ffn_multiple > 0
            and self.max_layers > 0
        ):
            raise ValueError("shape: aspect > 0, head_dim a positive even number, ffn_multiple and max_layers > 0")


@dataclass(frozen=True)
class SweepConfig:
    """A sweep's knobs (configs/scaling.toml, `--set key=value`)."""

    seed: int = 0
    precision: str = "auto"  # as `dsllm train` (auto | bf16 | bf16-autocast | fp32)
    micro_batch_size: int = 8  # at most this many sequences per forward (a divisor of the batch)
    threads: int = 1  # CPUs per run (Ray task num_cpus and torch threads)
    gpus_per_run: int = -1  # -1: one GPU per run when the cluster has GPUs, else none
    span: float = 10.0  # isoflop: largest / smallest M of a budget's family
    lr_step: float = 2.0  # hparams: ratio between neighbouring learning rates of the grid
    batch_step: float = 2.0  # hparams: ratio between neighbouring batch sizes
    hparams_by: str = "shape"  # "shape" (shared first stages) | "budget" (η, B of the run's budget)
    share_first_stage: bool = True
    warmup_steps: int = 2000  # the paper's; capped by warmup_fraction of the shortest run sharing it
    warmup_fraction: float = 0.1
    min_steps: int = 8  # a planned run with fewer optimizer steps is left out (and said so)
    heldout_rows: int = 0  # 0: 2% of PACKED's rows, at least 64, at most 2048
    checkpoint_every_minutes: float = 5.0
    init_std: float = 0.006  # the paper's initializer_range
    shape: ShapeRule = field(default_factory=ShapeRule)

    def __post_init__(self):
        if self.hparams_by not in ("shape", "budget"):
            raise ValueError(f"hparams_by must be 'shape' or 'budget', got {self.hparams_by!r}")
        if not (self.span > 1 and self.lr_step > 1 and self.batch_step > 1):
            raise ValueError("span, lr_step and batch_step must be > 1")
        if self.micro_batch_size < 1 or self.threads < 1 or self.min_steps < 1 or self.heldout_rows < 0:
            raise ValueError("micro_batch_size, threads, min_steps must be >= 1 and heldout_rows >= 0")
        if not 0 < self.warmup_fraction <= 1 or self.warmup_steps < 0:
            raise ValueError("warmup_fraction must be in (0, 1] and warmup_steps >= 0")


@dataclass(frozen=True)
class Shape:
    n_layer: int
    d_model: int
    n_heads: int
    ffn: int

    def flops_per_token(self, seq_len: int) -> float:
        """M = 72·n_layer·d² + 12·n_layer·d·l_seq."""
        return 72.0 * self.n_layer * self.d_model**2 + 12.0 * self.n_layer * self.d_model * seq_len


@dataclass(frozen=True)
class RunSpec:
    """One planned training run (everything that determines its result)."""

    role: str  # isoflop | hparams | validate
    budget: float  # the nominal compute budget C it belongs to
    shape: Shape
    seq_len: int
    vocab_size: int
    eos_id: int
    lr: float
    batch_seqs: int
    micro_batch: int
    steps: int
    warmup_steps: int
    seed: int
    precision: str
    init_std: float

    @property
    def flops_per_token(self) -> float:
        return self.shape.flops_per_token(self.seq_len)

    @property
    def tokens(self) -> int:
        return self.steps * self.batch_seqs * self.seq_len

    @property
    def compute(self) -> float:
        return self.flops_per_token * self.tokens

    def trunk_key(self) -> str:
        """Runs with equal keys are one run up to their branch steps (see the module docstring)."""
        d = self.to_dict()
        for k in ("role", "budget", "steps"):
            d.pop(k)
        return _digest(d)

    @property
    def run_id(self) -> str:
        s = self.shape
        return (
            f"{self.role}-C{self.budget:.3g}-L{s.n_layer}-d{s.d_model}-lr{self.lr:.3g}"
            f"-b{self.batch_seqs}-{_digest(self.to_dict())[:8]}"
        ).replace("+", "")

    def branch_step(self) -> int:
        """The last step whose tokens are at or before the first milestone (80%) of this run."""
        milestone = ScheduleConfig().milestones[0]
        tps = self.batch_seqs * self.seq_len
        s = int(milestone * self.steps)
        while s > 0 and s * tps > milestone * (self.steps * tps):  # as multistep_lr compares
            s -= 1
        return s

    def model_config(self) -> ModelConfig:
        s = self.shape
        return ModelConfig(
            vocab_size=self.vocab_size,
            hidden_size=s.d_model,
            intermediate_size=s.ffn,
            num_hidden_layers=s.n_layer,
            num_attention_heads=s.n_heads,
            num_key_value_heads=s.n_heads,
            max_position_embeddings=self.seq_len,
            initializer_range=self.init_std,
            bos_token_id=self.eos_id,
            eos_token_id=self.eos_id,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(**{**d, "shape": Shape(**d["shape"])})


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def shape_for(m_target: float, seq_len: int, rule: ShapeRule) -> Shape:
    """The documented two-step rule: depth at the aspect ratio, then the width nearest in log M."""

    def m(n_layer: int, d: float) -> float:
        return 72.0 * n_layer * d * d + 12.0 * n_layer * d * seq_len

    n_layer = min(
        range(1, rule.max_layers + 1), key=lambda n: abs(math.log(m(n, max(rule.head_dim, rule.aspect * n)) / m_target))
    )
    # d solving 72·L·d² + 12·L·l·d = M, then the nearest multiples of head_dim
    a, b = 72.0 * n_layer, 12.0 * n_layer * seq_len
    d_exact = (-b + math.sqrt(b * b + 4 * a * m_target)) / (2 * a)
    lo = max(1, math.floor(d_exact / rule.head_dim)) * rule.head_dim
    d = min((lo, lo + rule.head_dim), key=lambda w: abs(math.log(m(n_layer, w) / m_target)))
    ffn = max(rule.ffn_multiple, round(8 * d / 3 / rule.ffn_multiple) * rule.ffn_multiple)
    return Shape(n_layer, d, d // rule.head_dim, ffn)


def isoflop_targets(m_opt: float, points: int, span: float) -> list[float]:
    """`points` rungs of the global ladder r^k (r = span^(1/(points−1))) centred on m_opt."""
    if points < 2:
        return [m_opt]
    log_r = math.log(span) / (points - 1)
    first = round(math.log(m_opt) / log_r - (points - 1) / 2)
    return [math.exp((first + j) * log_r) for j in range(points)]


class Planner:
    """Turns budgets into RunSpecs with the current laws (paper's or fitted)."""

    def __init__(self, laws: dict[str, PowerLaw], cfg: SweepConfig, seq_len: int, vocab_size: int, eos_id: int):
        self.laws, self.cfg = laws, cfg
        self.seq_len, self.vocab_size, self.eos_id = seq_len, vocab_size, eos_id
        self.dropped: list[str] = []  # what was left out, and why

    @classmethod
    def for_data(cls, laws: dict[str, PowerLaw], cfg: SweepConfig, packed: str) -> Planner:
        """A planner for PACKED: its sequence length, its vocabulary (rounded up to 64), its EOS."""
        from dsllm.trainer.evaluate import packed_manifest

        m = packed_manifest(packed)
        tok = m.get("tokenizer") or {}
        vocab = -(-int(tok.get("vocab_size") or 0) // 64) * 64
        if vocab <= 0:
            raise UserError(f"{packed}: its manifest gives no tokenizer vocab_size")
        return cls(laws, cfg, int(m["seq_len"]), vocab, int(tok.get("eos_id") or 0))

    def _run(self, role: str, budget: float, shape: Shape, lr: float, batch_tokens: float) -> RunSpec | None:
        batch = max(1, round(batch_tokens / self.seq_len))
        micro = max(k for k in range(1, min(batch, self.cfg.micro_batch_size) + 1) if batch % k == 0)
        steps = round(budget / shape.flops_per_token(self.seq_len) / (batch * self.seq_len))
        if steps < self.cfg.min_steps:
            self.dropped.append(
                f"{role} C={budget:.3g} L={shape.n_layer} d={shape.d_model} batch {batch}: "
                f"{steps} steps < min_steps {self.cfg.min_steps}"
            )
            return None
        return RunSpec(
            role,
            budget,
            shape,
            self.seq_len,
            self.vocab_size,
            self.eos_id,
            float(f"{lr:.6g}"),
            batch,
            micro,
            steps,
            0,
            self.cfg.seed,
            self.cfg.precision,
            self.cfg.init_std,
        )

    def _hparams(self, budget: float, shape: Shape) -> tuple[float, float]:
        c = budget
        if self.cfg.hparams_by == "shape":  # the budget where this shape is compute-optimal
            law = self.laws["M_opt"]
            c = (shape.flops_per_token(self.seq_len) / law.coefficient) ** (1 / law.exponent)
        return float(self.laws["eta_opt"](c)), float(self.laws["B_opt"](c))

    def isoflop(self, budget: float, points: int) -> list[RunSpec]:
        shapes = []
        for target in isoflop_targets(float(self.laws["M_opt"](budget)), points, self.cfg.span):
            s = shape_for(target, self.seq_len, self.cfg.shape)
            if s not in shapes:
                shapes.append(s)
        runs = [self._run("isoflop", budget, s, *self._hparams(budget, s)) for s in shapes]
        return [r for r in runs if r is not None]

    def hparams(self, budget: float, points: int) -> list[RunSpec]:
        shape = shape_for(float(self.laws["M_opt"](budget)), self.seq_len, self.cfg.shape)
        lr0, b0 = float(self.laws["eta_opt"](budget)), float(self.laws["B_opt"](budget))
        offsets = [j - (points - 1) / 2 for j in range(points)]
        batches = {}  # tokens by whole sequences: batches below one sequence collapse onto one
        for j in offsets:
            batches.setdefault(max(1, round(b0 * self.cfg.batch_step**j / self.seq_len)), b0 * self.cfg.batch_step**j)
        runs = [
            self._run("hparams", budget, shape, lr0 * self.cfg.lr_step**i, batch)
            for i in offsets
            for batch in batches.values()
        ]
        return [r for r in runs if r is not None]

    def validate(self, budget: float) -> list[RunSpec]:
        shape = shape_for(float(self.laws["M_opt"](budget)), self.seq_len, self.cfg.shape)
        run = self._run(
            "validate", budget, shape, float(self.laws["eta_opt"](budget)), float(self.laws["B_opt"](budget))
        )
        return [run] if run else []

    def plan(self, budgets: list[float], mode: str, points: int, validate: list[float] = ()) -> list[RunSpec]:
        """Every run of the sweep, warmup set per shared group (see `assign_warmup`)."""
        if mode not in MODES:
            raise UserError(f"--mode {mode}: must be one of {', '.join(MODES)}")
        runs = []
        for c in budgets:
            runs += self.isoflop(c, points) if mode == "isoflop" else self.hparams(c, points)
        for c in validate:
            runs += self.validate(c)
        return assign_warmup(runs, self.cfg)


def assign_warmup(runs: list[RunSpec], cfg: SweepConfig) -> list[RunSpec]:
    """Warmup = min(warmup_steps, warmup_fraction × the steps of the shortest run it may share with)."""
    groups = defaultdict(list)
    for r in runs:
        groups[r.trunk_key() if cfg.share_first_stage else r.run_id].append(r)
    warm = {
        k: min(cfg.warmup_steps, max(1, int(cfg.warmup_fraction * min(r.steps for r in g)))) for k, g in groups.items()
    }
    out = []
    for r in runs:
        key = r.trunk_key() if cfg.share_first_stage else r.run_id
        out.append(dataclasses.replace(r, warmup_steps=warm[key]))
    return list(dict.fromkeys(out))  # a run planned twice (two equal budgets) runs once


@dataclass
class Group:
    """Runs sharing a first stage (one run alone: no trunk); `runs` shortest first."""

    key: str
    runs: list[RunSpec]

    @property
    def shared(self) -> bool:
        return len(self.runs) > 1


def share_groups(runs: list[RunSpec], share: bool = True) -> list[Group]:
    """Group runs by trunk key (a run whose branch step is 0 trains alone)."""
    groups: dict[str, list[RunSpec]] = defaultdict(list)
    for r in runs:
        key = r.trunk_key() if share and r.branch_step() > 0 else r.run_id
        groups[key].append(r)
    out = []
    for key, g in groups.items():
        g.sort(key=lambda r: (r.steps, r.run_id))
        out.append(Group(key[:16], g))
    return out
