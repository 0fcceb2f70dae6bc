"""The hand-fused kernels against the plain PyTorch expressions they stand for (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dsllm.trainer import kernels
from dsllm.trainer.model import RotaryEmbedding, apply_rope, segment_mask, segments_from_offsets


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
@pytest.mark.parametrize("block", [4, 128])  # several row blocks (the last one short), or one
@pytest.mark.parametrize("per_row_positions", [False, True])
def test_explicit_attention_matches_rope_then_sdpa(kv_heads, masked, block, per_row_positions, monkeypatch):
    monkeypatch.setattr(kernels, "ATTENTION_BLOCK", block)
    torch.manual_seed(0)
    B, H, T, hd = 2, 4, 9, 8
    q = torch.randn(B, T, H, hd, dtype=torch.float64, requires_grad=True)  # projections' layout
    k = torch.randn(B, T, kv_heads, hd, dtype=torch.float64, requires_grad=True)
    v = torch.randn(B, T, kv_heads, hd, dtype=torch.float64, requires_grad=True)
    segments = torch.tensor([[0] * 4 + [1] * 5, [0] * 9])
    mask = segment_mask(segments) if masked else None
    positions = segments_from_offsets([[0, 4], [0]], T)[1] if per_row_positions else torch.arange(T)
    cos, sin = RotaryEmbedding(hd, 10000.0)(positions, torch.float64)
    got = kernels.attention(q, k, v, cos, sin, mask)
    assert got.shape == (B, T, H, hd)
    rep = H // kv_heads
    qr = apply_rope(q.transpose(1, 2), cos, sin)
    kr = apply_rope(k.transpose(1, 2), cos, sin).repeat_interleave(rep, 1)
    vr = v.transpose(1, 2).repeat_interleave(rep, 1)
    want = (
        F.scaled_dot_product_attention(qr, kr, vr, attn_mask=mask)
        if masked
        else F.scaled_dot_product_attention(qr, kr, vr, is_causal=True)
    ).transpose(1, 2)
    assert torch.allclose(got, want, atol=1e-10)
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad(got, (q, k, v), g), torch.autograd.grad(want, (q, k, v), g)):
        assert torch.allclose(a, b, atol=1e-10)


def test_sdpa_path_matches_the_explicit_one(monkeypatch):
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 6, 4, 8), torch.randn(1, 6, 2, 8), torch.randn(1, 6, 2, 8)
    cos, sin = RotaryEmbedding(8, 10000.0)(torch.arange(6), torch.float32)
    explicit = kernels.attention(q, k, v, cos, sin)
    monkeypatch.setattr(kernels, "EXPLICIT_SCORES_LIMIT", 0)
    for native in (False, True):
        assert torch.allclose(kernels.attention(q, k, v, cos, sin, gqa_native=native), explicit, atol=1e-5)


def test_linear_cross_entropy_matches_the_plain_loss(monkeypatch):
    monkeypatch.setattr(kernels, "LOSS_CHUNK_ROWS", 5)  # several chunks, the last one short
    monkeypatch.setattr(kernels, "LOSS_BLOCK_ROWS", 3)  # several fp32 scratch blocks too
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


def test_swiglu_matches_silu_times_up():
    torch.manual_seed(0)
    gu = torch.randn(3, 5, 2 * 7, dtype=torch.float64, requires_grad=True)
    got = kernels.swiglu(gu)
    want = F.silu(gu[..., :7]) * gu[..., 7:]
    assert torch.allclose(got, want, atol=1e-12)
    g = torch.randn_like(got)
    (a,) = torch.autograd.grad(got, gu, g)
    (b,) = torch.autograd.grad(want, gu, g)
    assert torch.allclose(a, b, atol=1e-12)
    assert torch.autograd.gradcheck(kernels.swiglu, (gu[:1, :2].detach().requires_grad_(True),))


def test_linear_cross_entropy_in_bf16_and_its_reused_buffer():
    """bf16 inputs: the loss is the fp32 loss of the bf16 logits; gradients agree to bf16
    rounding; the gradient buffer reused from step to step gives identical results, also after
    a forward whose graph was dropped without a backward."""
    torch.manual_seed(0)
    h = torch.randn(40, 16).bfloat16().requires_grad_(True)
    w = (torch.randn(300, 16) * 0.5).bfloat16().requires_grad_(True)
    targets = torch.randint(0, 300, (40,))
    targets[[0, 39]] = -100
    ref_h, ref_w = h.detach().float().requires_grad_(True), w.detach().float().requires_grad_(True)
    want = F.cross_entropy(ref_h @ ref_w.t(), targets, ignore_index=-100)
    want.backward()
    grads = []
    for dropped in (False, True, False):
        if dropped:
            kernels.linear_cross_entropy(h, w, targets)  # graph dropped: its buffer is not given back
        h.grad = w.grad = None
        got = kernels.linear_cross_entropy(h, w, targets)
        assert abs(got.item() - want.item()) < 2e-3
        got.backward()
        grads.append((h.grad.clone(), w.grad.clone()))
        assert torch.allclose(h.grad.float(), ref_h.grad, atol=2e-3, rtol=2e-2)
        assert torch.allclose(w.grad.float(), ref_w.grad, atol=2e-3, rtol=2e-2)
        assert (h.grad[[0, 39]] == 0).all()
    assert all(torch.equal(a, b) for g in grads[1:] for a, b in zip(g, grads[0]))
