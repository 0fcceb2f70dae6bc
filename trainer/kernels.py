"""Hand-fused operations of the model's hot paths, for eager-mode speed on CPUs.

The model (trainer/model.py) is written plainly (SDPA attention, SwiGLU as silu·up, the head and
cross-entropy as two calls); these kernels are swapped in from outside, like compile: `FUSED`
maps each model class to a subclass whose `forward` (or `head_loss`) runs them, with the same
parameters and state_dict names, and trainer.parallelize.apply_kernels changes the classes of a
model's modules in place (on CPUs, where they were measured faster; bench/RESULTS-train.md).

Each is mathematically the plain PyTorch expression named in its docstring (tests compare them
against it); they only cut the passes over memory and the number of kernels a training step runs:

- `rope`: rotary embedding written straight into the layout attention reads, with a hand-written
  backward (no saved activations, no autograd graph of slices);
- `attention`: RoPE and causal attention as batched matmuls and a softmax over blocks of query
  time steps, grouped-query without repeating K/V (the query heads of one KV head are stacked
  time-major), skipping the scores above the diagonal blocks. On a CPU this beats SDPA's flash
  kernel while the (T × T) scores are small; above `EXPLICIT_SCORES_LIMIT` scores (long contexts)
  and on accelerators it hands over to `F.scaled_dot_product_attention`;
- `swiglu`: silu(gate)·up with a backward that writes both halves of the gradient in place;
- `linear_cross_entropy`: the output head and the next-token loss fused: the forward computes the
  loss and d loss / d logits in one buffer in the matmul dtype (the logits, turned into the
  softmax in place), so the backward is two matmuls and the (tokens × vocabulary) logits never
  exist in fp32 nor twice (Liger-Kernel's fused linear cross-entropy). The log-softmax of the
  targets is fp32, a few rows at a time in cache; the buffer is reused from step to step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dsllm.trainer.model import MLP, Attention, Transformer

# (B · H · T · T) scores above which attention goes through SDPA's flash kernel (memory-bounded)
EXPLICIT_SCORES_LIMIT = 1 << 26
# time steps per row block of the explicit causal attention (measured best of 64/128/256 here)
ATTENTION_BLOCK = 128
# rows of logits computed at once by linear_cross_entropy without gradients (evaluation)
LOSS_CHUNK_ROWS = 512
# rows of fp32 log-softmax scratch (rows × vocab × 4 bytes, twice: small enough to stay in cache)
LOSS_BLOCK_ROWS = 32
# on the SDPA path: GQA through SDPA's `enable_gqa=True` or by repeating K/V (measured faster here)
GQA_NATIVE = False


# ------------------------------------------------------------------------------------------ RoPE


class _Rope(torch.autograd.Function):
    """y = x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1], into a new contiguous tensor:
    x is a (permuted) view, so the rotation also lays the heads out the way attention reads them.
    cos, sin broadcast against x, their halves duplicated."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        h = x.shape[-1] // 2
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        torch.mul(x, cos, out=y)
        y[..., :h].addcmul_(x[..., h:], sin[..., :h], value=-1.0)
        y[..., h:].addcmul_(x[..., :h], sin[..., h:])
        return y

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        h = g.shape[-1] // 2
        dx = g * cos  # dx1 = g1·cos + g2·sin, dx2 = g2·cos − g1·sin
        dx[..., :h].addcmul_(g[..., h:], sin[..., h:])
        dx[..., h:].addcmul_(g[..., :h], sin[..., :h], value=-1.0)
        return dx, None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE of x (B, T, H, hd) in Hugging Face's rotate-half layout → (B, H, T, hd) contiguous.
    cos, sin: (T, hd) or (B, 1, T, hd)."""
    return _rope_view(x.transpose(1, 2), cos, sin)


def _rope_view(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    if torch.compiler.is_compiling():  # the plain expression: inductor fuses it by itself
        h = x.shape[-1] // 2
        return (x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin).contiguous()
    return _Rope.apply(x, cos, sin)


# --------------------------------------------------------------------------------------- SwiGLU


class _SwiGLU(torch.autograd.Function):
    """silu(gate)·up of gu = [gate | up] (the fused gate/up matmul's output, (…, 2I) → (…, I));
    the backward writes d gate and d up straight into one (…, 2I) tensor, the gradient of that
    matmul's output (autograd would compute the halves apart and concatenate them)."""

    @staticmethod
    def forward(ctx, gu):
        gate, up = gu.chunk(2, dim=-1)
        act = F.silu(gate)
        ctx.save_for_backward(gu, act)
        return act * up

    @staticmethod
    def backward(ctx, dy):
        gu, act = ctx.saved_tensors
        gate, up = gu.chunk(2, dim=-1)
        dgu = torch.empty_like(gu)
        d_gate, d_up = dgu.chunk(2, dim=-1)
        torch.mul(dy, act, out=d_up)
        torch.ops.aten.silu_backward.grad_input(dy * up, gate, grad_input=d_gate)
        return dgu


def swiglu(gu: torch.Tensor) -> torch.Tensor:
    """silu(gate)·up for gu = [gate | up] along the last dimension."""
    if torch.compiler.is_compiling():  # the plain expression: inductor fuses it by itself
        gate, up = gu.chunk(2, dim=-1)
        return F.silu(gate) * up
    return _SwiGLU.apply(gu)


# ------------------------------------------------------------------------------------- attention


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor | None = None,
    gqa_native: bool = False,
) -> torch.Tensor:
    """RoPE on q and k, then softmax(q·kᵀ/√hd + causal [+ document] mask)·v, in the projections'
    layout: q (B, T, nh, hd), k/v (B, T, nkv, hd) → (B, T, nh, hd). cos/sin as for `rope`; `mask`
    (B, 1, T, T) bool (True = may attend) replaces the causal mask."""
    B, T, nh, hd = q.shape
    nkv = k.shape[2]
    g = nh // nkv
    if q.device.type != "cpu" or B * nh * T * T > EXPLICIT_SCORES_LIMIT:
        y = _sdpa(rope(q, cos, sin), rope(k, cos, sin), v.transpose(1, 2), mask, g, gqa_native)
        return y.transpose(1, 2)
    # the g query heads of one KV head, stacked time-major: rows (t, head) of (B·nkv, T·g, hd), so
    # K/V are never repeated and the rows of a block of time steps are contiguous
    cq, sq = cos.unsqueeze(-2), sin.unsqueeze(-2)  # broadcast over the g heads
    qs = _rope_view(q.view(B, T, nkv, g, hd).permute(0, 2, 1, 3, 4), cq, sq).view(B * nkv, T * g, hd)
    ks = rope(k, cos, sin).view(B * nkv, T, hd)
    vs = v.transpose(1, 2).contiguous().view(B * nkv, T, hd)
    y = _blocked_causal(qs, ks, vs, g, mask)  # (B·nkv, T·g, hd)
    return y.view(B, nkv, T, g, hd).permute(0, 2, 1, 3, 4).reshape(B, T, nh, hd)


def _blocked_causal(q, k, v, g, mask):
    """Causal attention over row blocks of `ATTENTION_BLOCK` time steps: block i's queries only
    meet keys up to the block's end, so the scores above the diagonal blocks are never computed
    (~(1 − (n+1)/2n) of the matmuls and of the softmax for n blocks) and each block's scores stay
    small enough for the cache. q (BK, T·g, hd) time-major, k/v (BK, T, hd)."""
    BK, Tg, hd = q.shape
    T = Tg // g
    Tb = min(ATTENTION_BLOCK, T)
    ys = []
    for i in range(0, T, Tb):
        j = min(i + Tb, T)
        if mask is None:
            bias = _causal_block_bias(i, j, g, q.dtype, q.device).expand(BK, (j - i) * g, j)
        else:
            B = mask.shape[0]
            blk = torch.zeros(B, j - i, 1, j, dtype=q.dtype, device=q.device)
            blk.masked_fill_(~mask[:, 0, i:j, None, :j], float("-inf"))
            bias = blk.expand(B, j - i, g, j).reshape(B, 1, (j - i) * g, j)
            bias = bias.expand(B, BK // B, (j - i) * g, j).reshape(BK, (j - i) * g, j)
        scores = torch.baddbmm(bias, q[:, i * g : j * g], k[:, :j].transpose(1, 2), alpha=hd**-0.5)
        ys.append(torch.bmm(torch.softmax(scores, dim=-1), v[:, :j]))
    return ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)


_BIAS_CACHE: dict[tuple, torch.Tensor] = {}


def _causal_block_bias(i: int, j: int, g: int, dtype, device) -> torch.Tensor:
    """(g·(j−i), j) additive mask of time-major rows (t, head), t in [i, j): key s ≤ t allowed."""
    compiling = torch.compiler.is_compiling()
    key = (i, j, g, dtype, str(device))
    bias = None if compiling else _BIAS_CACHE.get(key)
    if bias is None:
        t = torch.arange(i, j, device=device).repeat_interleave(g)[:, None]
        bias = torch.zeros((j - i) * g, j, dtype=dtype, device=device)
        bias = bias.masked_fill(torch.arange(j, device=device)[None, :] > t, float("-inf"))
        if not compiling:
            if len(_BIAS_CACHE) > 256:
                _BIAS_CACHE.clear()
            _BIAS_CACHE[key] = bias
    return bias


def _sdpa(q, k, v, mask, g, gqa_native):
    """q (B, nh, T, hd), k/v (B, nkv, T, hd) → (B, nh, T, hd) through F.scaled_dot_product_attention."""
    if g > 1 and not gqa_native:
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
    kwargs = {"enable_gqa": True} if g > 1 and gqa_native else {}
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kwargs)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kwargs)


# ------------------------------------------------------------------- fused head + cross-entropy


def _target_logprobs(logits: torch.Tensor, safe: torch.Tensor, out: torch.Tensor) -> None:
    """out[i] = log_softmax(logits[i])[safe[i]] in fp32 (or fp64 for fp64 logits), `LOSS_BLOCK_ROWS`
    rows at a time through fp32 scratch that stays in cache (the full fp32 log-probabilities never
    exist: on a CPU, writing and re-reading them costs more than the softmax itself)."""
    acc = torch.promote_types(logits.dtype, torch.float32)
    n = logits.shape[0]
    rows = min(LOSS_BLOCK_ROWS, n)
    src = torch.empty(rows, logits.shape[1], dtype=acc, device=logits.device) if logits.dtype != acc else None
    dst = torch.empty(rows, logits.shape[1], dtype=acc, device=logits.device)
    for a in range(0, n, rows):
        b = min(a + rows, n)
        x = logits[a:b]
        if src is not None:
            x = src[: b - a].copy_(x)
        torch.log_softmax(x, dim=-1, out=dst[: b - a])
        torch.gather(dst[: b - a], 1, safe[a:b, None], out=out[a:b, None])


def _loss_from_logprobs(logp_t: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over the valid rows of −log p(target)."""
    return -logp_t.masked_fill(~valid, 0.0).sum()


# one gradient-of-logits buffer kept between steps: allocating (tokens × vocabulary) afresh every
# step costs a page fault per 4 KiB on a CPU (~50 ms for 2048 × 32000 bf16 here). A buffer is either
# here or owned by one forward's autograd graph (taken in forward, given back by backward).
_spare_grad_logits: dict[tuple, torch.Tensor] = {}


def _take_buffer(shape, dtype, device) -> torch.Tensor:
    key = (tuple(shape), dtype, str(device))
    buf = None if torch.compiler.is_compiling() else _spare_grad_logits.pop(key, None)
    return buf if buf is not None else torch.empty(shape, dtype=dtype, device=device)


def _give_back(buf: torch.Tensor) -> None:
    if not torch.compiler.is_compiling():
        _spare_grad_logits.clear()  # at most one spare (shapes change only with the config)
        _spare_grad_logits[(tuple(buf.shape), buf.dtype, str(buf.device))] = buf


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and, in the same pass, d loss / d logits into one buffer that the
    backward turns into the gradients of h and of the head with two matmuls."""

    @staticmethod
    def forward(ctx, h, weight, targets, n_valid):
        N, V = h.shape[0], weight.shape[0]
        valid = targets != -100
        safe = torch.where(valid, targets, 0)
        grad_logits = _take_buffer((N, V), h.dtype, h.device)
        torch.mm(h, weight.t(), out=grad_logits)  # the logits, in the matmul dtype
        logp_t = torch.empty(N, dtype=torch.promote_types(h.dtype, torch.float32), device=h.device)
        _target_logprobs(grad_logits, safe, logp_t)
        # d(sum of losses)/d logits = softmax − onehot(target), 0 on ignored rows; CPU's softmax of
        # bf16 accumulates in fp32 and runs in place; the 1/n_valid scale is applied in backward
        torch.softmax(grad_logits, dim=-1, out=grad_logits)
        rows = torch.arange(N, device=h.device)
        grad_logits.view(-1)[rows * V + safe] = (logp_t.exp() - 1.0).to(grad_logits.dtype)
        ignored = (~valid).nonzero().squeeze(1)
        if ignored.numel():
            grad_logits.index_fill_(0, ignored, 0)
        ctx.save_for_backward(h, weight, grad_logits, n_valid)
        return _loss_from_logprobs(logp_t, valid) / n_valid.clamp(min=1)

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, grad_logits, n_valid = ctx.saved_tensors
        grad_h = grad_w = None
        scale = (grad_out / n_valid.clamp(min=1)).to(h.dtype)
        if ctx.needs_input_grad[0]:
            grad_h = (grad_logits @ weight).mul_(scale)  # (N, d)
        if ctx.needs_input_grad[1]:
            grad_w = (grad_logits.t() @ h).mul_(scale)  # (V, d)
        _give_back(grad_logits)
        return grad_h, grad_w, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of F.cross_entropy(h @ weightᵀ, targets, ignore_index=-100) over the non-ignored rows,
    h (N, d), weight (V, d), targets (N,), with the log-softmax in fp32 but never the (N, V) logits
    in fp32: training holds one (N, V) buffer in the matmul dtype; evaluation `LOSS_CHUNK_ROWS`."""
    device = h.device.type
    if torch.is_autocast_enabled(device):  # the matmuls in the autocast dtype, explicitly
        dtype = torch.get_autocast_dtype(device)
        h, weight = h.to(dtype), weight.to(dtype)
    with torch.autocast(device, enabled=False):
        return _linear_cross_entropy(h, weight, targets)


def _linear_cross_entropy(h, weight, targets):
    n_valid = (targets != -100).sum().to(torch.promote_types(h.dtype, torch.float32))
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(h, weight, targets, n_valid)
    valid = targets != -100
    safe = torch.where(valid, targets, 0)
    logp_t = torch.empty(h.shape[0], dtype=n_valid.dtype, device=h.device)
    for i in range(0, h.shape[0], LOSS_CHUNK_ROWS):
        j = min(i + LOSS_CHUNK_ROWS, h.shape[0])
        _target_logprobs(h[i:j] @ weight.t(), safe[i:j], logp_t[i:j])
    return _loss_from_logprobs(logp_t, valid) / n_valid.clamp(min=1)


# ------------------------------------------------------------------ the model's classes, fused


class FusedAttention(Attention):
    """Attention with one matmul for q, k and v (the weights stay three HF-named parameters) and
    RoPE + causal attention through `attention` (blocked on CPUs, SDPA elsewhere)."""

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        nh, nkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        w = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
        q, k, v = F.linear(x, w).split((nh * hd, nkv * hd, nkv * hd), dim=-1)  # (B, T, ·)
        y = attention(
            q.view(B, T, nh, hd), k.view(B, T, nkv, hd), v.view(B, T, nkv, hd), cos, sin, mask, gqa_native=GQA_NATIVE
        )  # (B, T, nh, hd)
        return self.o_proj(y.reshape(B, T, nh * hd))


class FusedMLP(MLP):
    """SwiGLU with gate and up in one matmul and `swiglu`'s in-place backward."""

    def forward(self, x):
        gu = F.linear(x, torch.cat((self.gate_proj.weight, self.up_proj.weight)))  # (…, 2I)
        return self.down_proj(swiglu(gu))


class FusedLossTransformer(Transformer):
    """The head and the loss through `linear_cross_entropy` (never the fp32 logits)."""

    def head_loss(self, h, targets):
        return linear_cross_entropy(h, self.lm_head.weight, targets)


# model class → its fused subclass (trainer.parallelize.apply_kernels)
FUSED: dict[type, type] = {Attention: FusedAttention, MLP: FusedMLP, Transformer: FusedLossTransformer}
