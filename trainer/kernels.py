"""Hand-fused operations of the model's hot paths, for eager-mode speed on CPUs.

Each is mathematically the plain PyTorch expression named in its docstring (tests compare them
against it); they only cut the passes over memory and the number of kernels a training step runs:

- `rope`: rotary embedding written straight into the (B, H, T, hd) layout attention wants, with a
  hand-written backward (no saved activations, no autograd graph of slices);
- `attention`: causal attention as two batched matmuls and a softmax, grouped-query without
  repeating K/V (query heads of one KV head are stacked along the time axis). On a CPU this beats
  SDPA's flash kernel while the (T × T) scores are small; above `EXPLICIT_SCORES_LIMIT` scores
  (long contexts) and on accelerators it hands over to `F.scaled_dot_product_attention`;
- `linear_cross_entropy`: the output head and the next-token loss fused and chunked over tokens:
  the (tokens × vocabulary) logits exist one chunk at a time (fp32 log-sum-exp), and the gradients
  of the hidden states and of the head are computed in the same pass (Liger-Kernel's fused linear
  cross-entropy), so the full logits are never materialised in fp32, and never twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (B · H · T · T) scores above which attention goes through SDPA's flash kernel (memory-bounded)
EXPLICIT_SCORES_LIMIT = 1 << 26
# rows of logits computed at once by linear_cross_entropy (rows × vocab × 4 bytes of fp32 scratch)
LOSS_CHUNK_ROWS = 128


# ------------------------------------------------------------------------------------------ RoPE

class _Rope(torch.autograd.Function):
    """y = x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1]; x (B, T, H, hd) any strides →
    y (B, H, T, hd) contiguous. cos, sin: (T, hd) or (B, 1, T, hd), halves duplicated."""

    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        xt = x.transpose(1, 2)
        h = x.shape[-1] // 2
        y = torch.empty(xt.shape, dtype=x.dtype, device=x.device)
        torch.mul(xt, cos, out=y)
        y[..., :h].addcmul_(xt[..., h:], sin[..., :h], value=-1.0)
        y[..., h:].addcmul_(xt[..., :h], sin[..., h:])
        return y

    @staticmethod
    def backward(ctx, g):
        cos, sin = ctx.saved_tensors
        h = g.shape[-1] // 2
        dx = g * cos  # dx1 = g1·cos + g2·sin, dx2 = g2·cos − g1·sin
        dx[..., :h].addcmul_(g[..., h:], sin[..., h:])
        dx[..., h:].addcmul_(g[..., :h], sin[..., :h], value=-1.0)
        return dx.transpose(1, 2), None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE of x (B, T, H, hd) in Hugging Face's rotate-half layout → (B, H, T, hd)."""
    if torch.compiler.is_compiling():  # the plain expression: inductor fuses it by itself
        xt, h = x.transpose(1, 2), x.shape[-1] // 2
        return xt * cos + torch.cat((-xt[..., h:], xt[..., :h]), dim=-1) * sin
    return _Rope.apply(x, cos, sin)


# ------------------------------------------------------------------------------------- attention

def causal_bias(T: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """(T, T) additive mask: 0 on and below the diagonal, -inf above."""
    return torch.full((T, T), float("-inf"), dtype=dtype, device=device).triu(1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              gqa_native: bool = False) -> torch.Tensor:
    """softmax(q·kᵀ/√hd + causal [+ document] mask)·v. q (B, nh, T, hd), k/v (B, nkv, T, hd);
    `mask` (B, 1, T, T) bool (True = may attend) replaces the causal mask. Returns (B, nh, T, hd)."""
    B, nh, T, hd = q.shape
    nkv = k.shape[1]
    g = nh // nkv
    if q.device.type != "cpu" or B * nh * T * T > EXPLICIT_SCORES_LIMIT:
        return _sdpa(q, k, v, mask, g, gqa_native)
    if mask is None:
        bias = causal_bias(T, q.dtype, q.device).repeat(g, 1).expand(B * nkv, g * T, T)
    else:
        bias = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill_(~mask, float("-inf"))
        bias = bias[:, :, None].expand(B, nkv, g, T, T).reshape(B * nkv, g * T, T)
    # the g query heads of one KV head, stacked along time: (B·nkv, g·T, hd); K/V are not repeated
    q, k, v = (t.contiguous() for t in (q, k, v))  # (no-ops but for v; explicit for torch.compile)
    scores = torch.baddbmm(bias, q.view(B * nkv, g * T, hd), k.view(B * nkv, T, hd).transpose(1, 2),
                           alpha=hd ** -0.5)
    probs = torch.softmax(scores, dim=-1)
    return torch.bmm(probs, v.view(B * nkv, T, hd)).view(B, nh, T, hd)


def _sdpa(q, k, v, mask, g, gqa_native):
    if g > 1 and not gqa_native:
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
    kwargs = {"enable_gqa": True} if g > 1 and gqa_native else {}
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kwargs)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kwargs)


# ------------------------------------------------------------------- fused head + cross-entropy

def _chunk_loss(h, weight, targets, grad_logits=None, scale=1.0):
    """Loss sum of rows h (c, d) against targets (c,) (-100 ignored); with `grad_logits` (c, V),
    also write d(sum loss · scale)/d logits = (softmax − onehot) · scale into it."""
    acc = torch.promote_types(h.dtype, torch.float32)  # fp32 for bf16 / fp32 inputs
    logp = torch.log_softmax(h @ weight.t(), dim=-1, dtype=acc)  # (c, V)
    valid = targets != -100
    safe = torch.where(valid, targets, 0)
    loss = -logp.gather(1, safe[:, None]).squeeze(1).masked_fill_(~valid, 0.0).sum()
    if grad_logits is not None:
        probs = logp.exp_()  # softmax, in place
        probs.scatter_add_(1, safe[:, None], -valid[:, None].to(probs.dtype))
        torch.mul(probs, (valid.to(probs.dtype) * scale)[:, None], out=grad_logits)  # one pass, cast
    return loss


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, n_valid):
        N = h.shape[0]
        grad_logits = torch.empty(N, weight.shape[0], dtype=h.dtype, device=h.device)
        scale = 1.0 / n_valid.clamp(min=1)
        loss = torch.zeros((), dtype=torch.promote_types(h.dtype, torch.float32), device=h.device)
        for i in range(0, N, LOSS_CHUNK_ROWS):
            j = min(i + LOSS_CHUNK_ROWS, N)
            loss += _chunk_loss(h[i:j], weight, targets[i:j], grad_logits[i:j], scale)
        ctx.save_for_backward(h, weight, grad_logits)
        return loss * scale

    @staticmethod
    def backward(ctx, grad_out):
        h, weight, grad_logits = ctx.saved_tensors
        grad_h = grad_w = None
        go = grad_out.to(h.dtype)
        if ctx.needs_input_grad[0]:
            grad_h = (grad_logits @ weight) * go   # (N, d)
        if ctx.needs_input_grad[1]:
            grad_w = (grad_logits.t() @ h) * go    # (V, d)
        return grad_h, grad_w, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of F.cross_entropy(h @ weightᵀ, targets, ignore_index=-100) over the non-ignored rows,
    h (N, d), weight (V, d), targets (N,), without materialising the (N, V) logits in fp32."""
    device = h.device.type
    if torch.is_autocast_enabled(device):  # the matmuls in the autocast dtype, explicitly
        dtype = torch.get_autocast_dtype(device)
        h, weight = h.to(dtype), weight.to(dtype)
    with torch.autocast(device, enabled=False):
        return _linear_cross_entropy(h, weight, targets)


def _linear_cross_entropy(h, weight, targets):
    n_valid = (targets != -100).sum().float()
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
        return _LinearCrossEntropy.apply(h, weight, targets, n_valid)
    total = sum(_chunk_loss(h[i:i + LOSS_CHUNK_ROWS], weight, targets[i:i + LOSS_CHUNK_ROWS])
                for i in range(0, h.shape[0], LOSS_CHUNK_ROWS))
    return total / n_valid.clamp(min=1)
