"""The hand-fused kernels against the plain PyTorch expressions they stand for (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer import kernels
from trainer.model import RotaryEmbedding, apply_rope, segment_mask


def test_rope_matches_the_reference_with_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 8, dtype=torch.float64, requires_grad=True)  # (B, T, H, hd)
    cos, sin = RotaryEmbedding(8, 10000.0)(torch.arange(7), torch.float64)
    got = kernels.rope(x, cos, sin)
    want = apply_rope(x.transpose(1, 2), cos, sin)
    assert got.shape == (2, 3, 7, 8) and got.is_contiguous()
    assert torch.allclose(got, want, atol=1e-12)
    g = torch.randn_like(got)
    (dx_got,) = torch.autograd.grad(got, x, g)
    (dx_want,) = torch.autograd.grad(want, x, g)
    assert torch.allclose(dx_got, dx_want, atol=1e-12)
    small = x[:1, :3, :2].detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: kernels.rope(t, cos[:3], sin[:3]), (small,))


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("masked", [False, True])
def test_explicit_attention_matches_sdpa(kv_heads, masked):
    torch.manual_seed(0)
    B, H, T, hd = 2, 4, 9, 8
    q = torch.randn(B, H, T, hd, dtype=torch.float64, requires_grad=True)
    k = torch.randn(B, kv_heads, T, hd, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, kv_heads, T, hd, dtype=torch.float64, requires_grad=True)
    mask = segment_mask(torch.tensor([[0] * 4 + [1] * 5, [0] * 9])) if masked else None
    got = kernels.attention(q, k, v, mask)
    rep = H // kv_heads
    kr, vr = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    want = (F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask) if masked
            else F.scaled_dot_product_attention(q, kr, vr, is_causal=True))
    assert torch.allclose(got, want, atol=1e-10)
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(want, (q, k, v), g)):
        assert torch.allclose(a, b, atol=1e-10)


def test_linear_cross_entropy_matches_the_plain_loss(monkeypatch):
    monkeypatch.setattr(kernels, "LOSS_CHUNK_ROWS", 5)  # several chunks, the last one short
    torch.manual_seed(0)
    h = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (13,))
    targets[[2, 12]] = -100
    got = kernels.linear_cross_entropy(h, w, targets)
    want = F.cross_entropy(h @ w.t(), targets, ignore_index=-100)
    assert torch.allclose(got, want, atol=1e-12)
    (3.0 * got).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    (3.0 * want).backward()
    assert torch.allclose(gh, h.grad, atol=1e-12) and torch.allclose(gw, w.grad, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(kernels.linear_cross_entropy(h, w, targets), want, atol=1e-12)
