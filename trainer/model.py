"""DeepSeek LLM's decoder: a LLaMA-style transformer with grouped-query attention.

One readable file, no distributed code (parallelism is applied from outside, see parallelize.py).
Pre-norm RMSNorm (eps 1e-6), SwiGLU feed-forward, rotary position embeddings (theta 10000) in
Hugging Face's rotate-half layout, no biases, untied input/output embeddings, and GQA through
`n_kv_heads` key/value heads shared by groups of `n_heads / n_kv_heads` query heads.

Module names mirror `transformers`' `LlamaForCausalLM` exactly (`model.layers.{i}.self_attn.q_proj`,
`lm_head`, ...) so a state_dict saved here loads in `transformers` as it is, and back.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F
from torch import nn

from dsllm.trainer.config import ModelConfig

# rows of a weight matrix drawn from one seeded generator at init (see `init_rows`)
INIT_BLOCK_ROWS = 256


class RMSNorm(nn.Module):
    """x / rms(x) · weight (LlamaRMSNorm; torch's fused kernel, which accumulates in fp32)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for RoPE; inverse frequencies theta^(-2i/hd), duplicated [f, f] (rotate-half).
    No buffer: the (hd/2) frequencies are recomputed on the positions' device at every call, so a
    model built on `meta` and materialised later needs nothing re-initialised here."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta

    @torch.no_grad()
    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: (T,) -> cos, sin (T, hd); (B, T) -> (B, 1, T, hd); broadcast over heads
        hd, dev = self.head_dim, positions.device
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=torch.int64, device=dev).float() / hd))
        freqs = positions.float()[..., None] * inv_freq  # (..., T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (..., T, hd)
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
        return (cos, sin) if positions.dim() == 1 else (cos[:, None], sin[:, None])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1] (HF layout), on x (B, H, T, hd)."""
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q·kᵀ/√hd + mask)·v through F.scaled_dot_product_attention (flash / cuDNN / memory-
    efficient kernels on CUDA). q (B, nh, T, hd), k/v (B, nkv, T, hd) → (B, nh, T, hd). `mask`
    (B, 1, T, T) bool (True = may attend) replaces the causal mask. Without a mask, GQA goes
    through `enable_gqa` (flash attention reads the shared K/V heads as they are); with one, the
    kernels that take a mask do not take `enable_gqa`, so K/V heads are repeated."""
    g = q.shape[1] // k.shape[1]
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=g > 1)
    if g > 1:
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)  # (B, nh, T, hd)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T, _ = x.shape
        nh, nkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q = self.q_proj(x).view(B, T, nh, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = causal_attention(q, k, v, mask)  # (B, nh, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, nh * hd))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) · up(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.dim, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


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


def init_rows(
    name: str, shape: tuple[int, ...], std: float, seed: int, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """Rows [start, stop) of matrix `name`'s initial value ~ N(0, std²), fp32 on the CPU.

    The matrix is drawn in blocks of `INIT_BLOCK_ROWS` rows, each from its own generator seeded
    by (seed, name, block): any row range (an FSDP shard, which splits dim 0) is drawn on its own,
    identical to the same rows of the whole matrix, and CPUs and GPUs draw the same weights."""
    stop = shape[0] if stop is None else stop
    tag = zlib.crc32(name.encode())
    out = torch.empty(stop - start, *shape[1:], device="cpu")
    gen = torch.Generator(device="cpu")
    for block in range(start // INIT_BLOCK_ROWS, -(-stop // INIT_BLOCK_ROWS)):
        b0 = block * INIT_BLOCK_ROWS
        b1 = min(b0 + INIT_BLOCK_ROWS, shape[0])
        gen.manual_seed((seed * 1_000_003 + tag * 65_537 + block) % (1 << 63))
        rows = torch.randn(b1 - b0, *shape[1:], generator=gen, device="cpu").mul_(std)
        lo, hi = max(b0, start), min(b1, stop)
        out[lo - start : hi - start] = rows[lo - b0 : hi - b0]
    return out


class Transformer(nn.Module):
    """The causal language model. `forward(input_ids, labels)` returns logits, or (logits, loss).

    Built under `torch.device("meta")` it holds no storage; `init_weights()` (or, sharded,
    trainer.parallelize.materialize) then draws the same weights a plain build draws."""

    def __init__(self, cfg: ModelConfig, seed: int | None = None):
        super().__init__()
        self.config = cfg
        self.model = Backbone(cfg)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        # the init seed: given, or drawn from torch's global RNG (so torch.manual_seed decides it)
        self.init_seed = int(torch.randint(0, 1 << 62, (), device="cpu")) if seed is None else seed
        if not self.lm_head.weight.is_meta:
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """DeepSeek's init: every matrix (embeddings included) ~ N(0, 0.006²); norm weights 1."""
        for name, p in self.named_parameters():
            if p.ndim == 2:
                p.copy_(init_rows(name, tuple(p.shape), self.config.initializer_range, self.init_seed))
            else:
                p.fill_(1.0)

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        return_logits: bool = True,
        attn_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
    ):
        """input_ids (B, T) → logits (B, T, V). With `labels` (B, T; -100 ignored), (logits, loss):
        the mean next-token cross-entropy (labels are shifted inside, as in `transformers`);
        `return_logits=False` gives (None, loss) through `head_loss` (which a fused kernel may
        replace, trainer/kernels.py). `segment_ids` (B, T) restricts attention to each packed
        document; `positions` (B, T) overrides RoPE's. `attn_mask` (B, 1, T, T) bool (True = may
        attend) replaces the causal / document mask outright (shared-context scoring's tree mask,
        trainer/benchmarks/scoring.py); every query must see at least itself. `logits_at` (N,)
        indexes the flattened (B·T) positions: the logits of those positions only, (N, V) (scoring
        needs a few positions, and (B, T, V) logits of a 100k vocabulary are gigabytes)."""
        T = input_ids.shape[1]
        x = self.model.embed_tokens(input_ids)  # (B, T, d)
        if positions is None:
            positions = torch.arange(T, device=input_ids.device)
        device = input_ids.device.type
        autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else x.dtype
        cos, sin = self.model.rotary_emb(positions, dtype)
        mask = attn_mask if attn_mask is not None else segment_mask(segment_ids) if segment_ids is not None else None
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        h = self.model.norm(x)  # (B, T, d)
        if logits_at is not None:
            return self.lm_head(h.flatten(0, 1)[logits_at])  # (N, V)
        # next-token targets: labels shifted left, the last position ignored
        targets = F.pad(labels[:, 1:], (0, 1), value=-100) if labels is not None else None  # (B, T)
        if not return_logits and targets is not None:
            return None, self.head_loss(h.flatten(0, 1), targets.flatten())
        logits = self.lm_head(h)  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    def head_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of lm_head(h) (N, V) against targets (N,), -100 ignored."""
        return F.cross_entropy(self.lm_head(h).float(), targets, ignore_index=-100)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
