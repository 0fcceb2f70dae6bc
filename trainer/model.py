"""DeepSeek LLM's decoder: a LLaMA-style transformer with grouped-query attention.

One readable file, no distributed code (parallelism is applied from outside, see parallelize.py).
Pre-norm RMSNorm (eps 1e-6), SwiGLU feed-forward, rotary position embeddings (theta 10000) in
Hugging Face's rotate-half layout, no biases, untied input/output embeddings, and GQA through
`n_kv_heads` key/value heads shared by groups of `n_heads / n_kv_heads` query heads.

Module names mirror `transformers`' `LlamaForCausalLM` exactly (`model.layers.{i}.self_attn.q_proj`,
`lm_head`, ...) so a state_dict saved here loads in `transformers` as it is, and back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dsllm.trainer import kernels
from dsllm.trainer.config import ModelConfig

# When attention goes through SDPA (accelerators, long contexts; see trainer/kernels.py), GQA either
# repeats K/V with repeat_interleave or uses SDPA's `enable_gqa=True`; measured on this CPU
# (bench/RESULTS-train.md), repeating was faster.
GQA_NATIVE = False


class RMSNorm(nn.Module):
    """x / rms(x) · weight (LlamaRMSNorm; torch's fused kernel, which accumulates in fp32)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE; inverse frequencies theta^(-2i/hd), duplicated [f, f] (rotate-half)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    @torch.no_grad()
    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: (T,) -> cos, sin (T, hd); (B, T) -> (B, 1, T, hd); broadcast over heads
        freqs = positions.float()[..., None] * self.inv_freq.float()  # (..., T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (..., T, hd)
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
        return (cos, sin) if positions.dim() == 1 else (cos[:, None], sin[:, None])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1] (HF layout) on x (B, H, T, hd); the
    model itself calls the fused `kernels.rope`, which is this with a hand-written backward."""
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


class Attention(nn.Module):
    """Causal multi-head attention with `n_kv_heads` shared key/value heads (GQA; MHA when equal)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        d, kv = cfg.dim, cfg.n_kv_heads * cfg.head_dim
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        nh, nkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        # one matmul for q, k and v (the weights stay three HF-named parameters)
        w = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
        qkv = F.linear(x, w)  # (B, T, (nh + 2·nkv)·hd)
        q, k, v = qkv.split((nh * hd, nkv * hd, nkv * hd), dim=-1)
        # RoPE on q and k, then causal attention, in and out in the projections' (B, T, H, hd)
        y = kernels.attention(q.view(B, T, nh, hd), k.view(B, T, nkv, hd), v.view(B, T, nkv, hd),
                              cos, sin, mask, gqa_native=GQA_NATIVE)  # (B, T, nh, hd)
        return self.o_proj(y.reshape(B, T, nh * hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # gate and up in one matmul (two HF-named parameters, concatenated on the fly)
        gu = F.linear(x, torch.cat((self.gate_proj.weight, self.up_proj.weight)))
        return self.down_proj(kernels.swiglu(gu))


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then h + mlp(norm(h))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Backbone(nn.Module):
    """Embedding, decoder layers and final norm (`LlamaModel`; named `model` in the state_dict)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(cfg.head_dim, cfg.rope_theta)


def segment_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Causal block-diagonal mask (B, 1, T, T): a token sees earlier tokens of its own document."""
    T = segment_ids.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    return (same & causal)[:, None]


def segments_from_offsets(doc_offsets: list[list[int]], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PACKED `doc_offsets` rows → (segment_ids, positions), each (B, T); positions restart at 0
    at every document start so each document sees RoPE positions as if it were alone."""
    B = len(doc_offsets)
    starts = torch.zeros(B, seq_len, dtype=torch.long)
    for b, offs in enumerate(doc_offsets):  # one entry per document, not per token
        offs = [o for o in offs if 0 < o < seq_len]
        starts[b, offs] = 1
    segment_ids = starts.cumsum(-1)  # (B, T)
    idx = torch.arange(seq_len).expand(B, seq_len)
    seg_start = torch.where(starts.bool() | (idx == 0), idx, torch.zeros_like(idx)).cummax(-1).values
    return segment_ids, idx - seg_start


class Transformer(nn.Module):
    """The causal language model. `forward(input_ids, labels)` returns logits, or (logits, loss)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """DeepSeek's init: every matrix (embeddings included) ~ N(0, 0.006²); norm weights 1."""
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                return_logits: bool = True):
        """input_ids (B, T) → logits (B, T, V). With `labels` (B, T; -100 ignored), (logits, loss):
        the mean next-token cross-entropy (labels are shifted inside, as in `transformers`);
        `return_logits=False` gives (None, loss) through the fused, chunked head + loss, which never
        holds the full logits (what training uses). `segment_ids` (B, T) restricts attention to
        each packed document; `positions` (B, T) overrides RoPE's."""
        B, T = input_ids.shape
        x = self.model.embed_tokens(input_ids)  # (B, T, d)
        if positions is None:
            positions = torch.arange(T, device=input_ids.device)
        device = input_ids.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        cos, sin = self.model.rotary_emb(positions, dtype)
        mask = segment_mask(segment_ids) if segment_ids is not None else None
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        h = self.model.norm(x)  # (B, T, d)
        # next-token targets: labels shifted left, the last position ignored
        targets = F.pad(labels[:, 1:], (0, 1), value=-100) if labels is not None else None  # (B, T)
        if not return_logits and targets is not None:
            return None, kernels.linear_cross_entropy(h.flatten(0, 1), self.lm_head.weight, targets.flatten())
        logits = self.lm_head(h)  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

