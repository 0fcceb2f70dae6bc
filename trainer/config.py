"""Model configuration with Hugging Face `LlamaConfig` field names, and the named flavors.

A checkpoint's `config.json` is `ModelConfig.to_hf_dict()`, so `transformers` reads it as a
`LlamaConfig` and our own `from_hf_dict` reads DeepSeek's published `config.json` files.
Paper-faithful aliases (`dim`, `n_layers`, `n_heads`, `n_kv_heads`, `head_dim`) are properties.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from dsllm.errors import UserError

# Hugging Face config keys we accept and ignore (they describe things fixed by this architecture
# or irrelevant to training); anything else unknown is an error so typos don't pass silently.
_IGNORED_HF_KEYS = {
    "architectures",
    "model_type",
    "torch_dtype",
    "dtype",
    "transformers_version",
    "hidden_act",
    "attention_bias",
    "attention_dropout",
    "mlp_bias",
    "pretraining_tp",
    "rope_scaling",
    "use_cache",
    "head_dim",
    "pad_token_id",
    "_name_or_path",
    "rope_parameters",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "quantization_config",
    "auto_map",
}


@dataclass(frozen=True)
class ModelConfig:
    """A LLaMA-style decoder (DeepSeek LLM): pre-norm RMSNorm, SwiGLU, RoPE, GQA, no biases."""

    vocab_size: int = 102400
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 30
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    initializer_range: float = 0.006
    bos_token_id: int = 100000
    eos_token_id: int = 100001
    tie_word_embeddings: bool = False

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not divisible by "
                f"num_key_value_heads {self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head dimension {self.head_dim} must be even for RoPE")
        if self.tie_word_embeddings:
            raise ValueError("tie_word_embeddings=True is not supported (DeepSeek LLM unties them)")
        if not (self.rms_norm_eps > 0 and self.rope_theta > 0 and self.initializer_range > 0):
            raise ValueError("rms_norm_eps, rope_theta and initializer_range must be positive")

    # paper-faithful names
    @property
    def dim(self) -> int:
        return self.hidden_size

    @property
    def n_layers(self) -> int:
        return self.num_hidden_layers

    @property
    def n_heads(self) -> int:
        return self.num_attention_heads

    @property
    def n_kv_heads(self) -> int:
        return self.num_key_value_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def num_parameters(self, embeddings: bool = True) -> int:
        """Parameter count (embeddings = the input embedding and the output head)."""
        d, f, L = self.hidden_size, self.intermediate_size, self.num_hidden_layers
        kv = self.num_key_value_heads * self.head_dim
        per_layer = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d
        n = L * per_layer + d
        return n + (2 * self.vocab_size * d if embeddings else 0)

    def flops_per_token(self, seq_len: int) -> float:
        """DeepSeek's M: non-embedding training FLOPs per token, 72·L·d² + 12·L·d·l_seq
        (6 × non-embedding matmul parameters in the 12·d² shape of the paper, plus attention)."""
        L, d = self.num_hidden_layers, self.hidden_size
        return 72.0 * L * d * d + 12.0 * L * d * seq_len

    def train_flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token of this exact shape, for MFU: 6 × every matmul parameter
        (GQA projections, SwiGLU, the output head) + 12·L·d·seq for attention scores and values
        (PaLM's convention: attention counted without the causal halving)."""
        d, f, L = self.hidden_size, self.intermediate_size, self.num_hidden_layers
        kv = self.num_key_value_heads * self.head_dim
        matmul_params = L * (2 * d * d + 2 * d * kv + 3 * d * f) + self.vocab_size * d
        return 6.0 * matmul_params + 12.0 * L * d * seq_len

    # Hugging Face interop
    def to_hf_dict(self, torch_dtype: str = "bfloat16") -> dict:
        """A `LlamaConfig`-compatible dict (what goes into a checkpoint's config.json)."""
        d = dataclasses.asdict(self)
        d.update(
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "torch_dtype": torch_dtype,
                "hidden_act": "silu",
                "attention_bias": False,
                "mlp_bias": False,
                "head_dim": self.head_dim,
                "rope_scaling": None,
            }
        )
        return d

    @classmethod
    def from_hf_dict(cls, d: dict, where: str = "config") -> ModelConfig:
        """Read a `LlamaConfig` dict (ours or a published one); unknown keys are an error."""
        if d.get("model_type", "llama") != "llama":
            raise UserError(f"{where}: model_type {d.get('model_type')!r} is not 'llama'")
        if d.get("hidden_act", "silu") != "silu":
            raise UserError(f"{where}: hidden_act {d['hidden_act']!r} is not supported (silu only)")
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise UserError(f"{where}: biases are not supported by this architecture")
        if d.get("rope_scaling"):
            raise UserError(f"{where}: rope_scaling {d['rope_scaling']!r} is not supported")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names - _IGNORED_HF_KEYS)
        if unknown:
            raise UserError(f"{where}: unknown LlamaConfig field(s) {unknown}")
        kwargs = {k: v for k, v in d.items() if k in names}
        rp = d.get("rope_parameters") or {}
        if "rope_theta" not in kwargs and isinstance(rp, dict) and "rope_theta" in rp:
            kwargs["rope_theta"] = rp["rope_theta"]  # transformers 5 nests it
        if kwargs.get("num_key_value_heads") is None:
            kwargs["num_key_value_heads"] = kwargs.get("num_attention_heads", cls.num_attention_heads)
        if "head_dim" in d and d["head_dim"] is not None:
            heads = kwargs.get("num_attention_heads", cls.num_attention_heads)
            hidden = kwargs.get("hidden_size", cls.hidden_size)
            if d["head_dim"] * heads != hidden:
                raise UserError(f"{where}: head_dim {d['head_dim']} × heads {heads} != hidden_size {hidden}")
        for key in ("bos_token_id", "eos_token_id"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = kwargs[key][0]
            if kwargs.get(key) is None:
                kwargs.pop(key, None)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: {exc}") from None


# DeepSeek LLM 7B / 67B (paper Table 2); `tiny` is the demo / benchmark shape (GQA 8/2).
FLAVORS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2
    ),
    "7b": ModelConfig(
        hidden_size=4096, intermediate_size=11008, num_hidden_layers=30, num_attention_heads=32, num_key_value_heads=32
    ),
    "67b": ModelConfig(
        hidden_size=8192, intermediate_size=22016, num_hidden_layers=95, num_attention_heads=64, num_key_value_heads=8
    ),
}


def resolve_model(spec: str, overrides: dict | None = None) -> ModelConfig:
    """`tiny` / `7b` / `67b`, or a JSON file of `LlamaConfig` fields; then field overrides."""
    if spec in FLAVORS:
        cfg = FLAVORS[spec]
    else:
        path = Path(spec)
        if not path.exists():
            raise UserError(f"--model {spec}: not a flavor ({', '.join(FLAVORS)}) and no such file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"--model {spec}: not a readable JSON config: {exc}") from None
        if not isinstance(data, dict):
            raise UserError(f"--model {spec}: expected a JSON object of LlamaConfig fields")
        cfg = ModelConfig.from_hf_dict(data, where=f"--model {spec}")
    if overrides:
        try:
            cfg = cfg.replace(**overrides)
        except (TypeError, ValueError) as exc:
            raise UserError(f"model config: {exc}") from None
    return cfg
