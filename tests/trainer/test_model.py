"""The model against `transformers`' LlamaForCausalLM as the numerical reference."""

from __future__ import annotations

import json

import pytest
import torch

from dsllm.errors import UserError
from dsllm.trainer.config import FLAVORS, ModelConfig, resolve_model
from dsllm.trainer.model import Transformer, segment_mask, segments_from_offsets


def small(**kw) -> ModelConfig:
    base = dict(
        vocab_size=320,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )
    base.update(kw)
    return ModelConfig(**base)


def hf_model(cfg: ModelConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf_cfg = LlamaConfig(**cfg.to_hf_dict(torch_dtype="float32"))
    hf_cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(hf_cfg).eval()


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
@pytest.mark.parametrize("path", ["plain-sdpa", "fused-explicit", "fused-sdpa-repeat", "fused-sdpa-enable_gqa"])
def test_logits_match_transformers(kv_heads, path, monkeypatch):
    """The plain model (SDPA) and the CPU-fused kernels swapped in from outside, each path."""
    import dsllm.trainer.kernels as k
    from dsllm.trainer.parallelize import apply_kernels

    monkeypatch.setattr(k, "GQA_NATIVE", path == "fused-sdpa-enable_gqa")
    if "fused-sdpa" in path:
        monkeypatch.setattr(k, "EXPLICIT_SCORES_LIMIT", 0)
    torch.manual_seed(0)
    cfg = small(num_key_value_heads=kv_heads, initializer_range=0.05)
    ours = Transformer(cfg).eval()
    if path.startswith("fused"):
        apply_kernels(ours)
        assert type(ours.model.layers[0].self_attn) is k.FusedAttention
    with torch.no_grad():  # non-trivial norm weights so a mis-wired norm would show
        for name, p in ours.named_parameters():
            if name.endswith("layernorm.weight") or name == "model.norm.weight":
                p.add_(torch.randn_like(p) * 0.1)
    ref = hf_model(cfg)
    assert set(ours.state_dict()) == set(ref.state_dict())
    missing, unexpected = ref.load_state_dict(ours.state_dict(), strict=True)
    assert not missing and not unexpected
    ids = torch.randint(0, cfg.vocab_size, (3, 37))
    with torch.no_grad():
        ref_logits = ref(input_ids=ids).logits
        logits, loss = ours(ids, labels=ids)
        ref_loss = ref(input_ids=ids, labels=ids).loss
        _, fused_loss = ours(ids, labels=ids, return_logits=False)
    assert logits.shape == (3, 37, cfg.vocab_size)
    assert (logits - ref_logits).abs().max().item() <= 1e-5
    assert abs(loss.item() - ref_loss.item()) <= 1e-5
    assert abs(fused_loss.item() - ref_loss.item()) <= 1e-5


def test_state_dict_names_are_llama():
    cfg = small(num_key_value_heads=2)
    keys = set(Transformer(cfg).state_dict())
    assert "model.embed_tokens.weight" in keys and "lm_head.weight" in keys
    assert "model.layers.1.self_attn.k_proj.weight" in keys
    assert "model.layers.0.mlp.gate_proj.weight" in keys
    assert "model.layers.0.post_attention_layernorm.weight" in keys
    assert not any("rotary" in k or "bias" in k for k in keys)
    sd = Transformer(cfg).state_dict()
    assert sd["model.layers.0.self_attn.k_proj.weight"].shape == (32, 64)  # 2 kv heads × hd 16


def test_init_std_and_untied():
    torch.manual_seed(0)
    model = Transformer(small(vocab_size=4096, hidden_size=128, intermediate_size=352))
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    for w in (model.lm_head.weight, model.model.embed_tokens.weight, model.model.layers[0].mlp.up_proj.weight):
        assert abs(w.std().item() - 0.006) < 0.0003
    assert torch.all(model.model.norm.weight == 1)


def test_backward_produces_grads_everywhere():
    torch.manual_seed(0)
    model = Transformer(small(num_key_value_heads=2))
    ids = torch.randint(0, 320, (2, 16))
    _, loss = model(ids, labels=ids)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert abs(loss.item() - torch.log(torch.tensor(320.0)).item()) < 0.05  # ~uniform at init


def test_document_mask_isolates_documents():
    torch.manual_seed(0)
    cfg = small(num_key_value_heads=2, initializer_range=0.05)
    model = Transformer(cfg).eval()
    a = torch.randint(0, 320, (1, 10))
    b = torch.randint(0, 320, (1, 6))
    seg, pos = segments_from_offsets([[0, 10]], 16)
    assert seg.tolist()[0] == [0] * 10 + [1] * 6 and pos.tolist()[0] == list(range(10)) + list(range(6))
    with torch.no_grad():
        packed = model(torch.cat([a, b], 1), segment_ids=seg, positions=pos)
        alone = model(b)
    # the second document, packed after the first, is computed exactly as if alone
    assert (packed[:, 10:] - alone).abs().max().item() < 1e-5
    assert segment_mask(seg).shape == (1, 1, 16, 16)


def test_config_roundtrip_and_flavors(tmp_path):
    from transformers import LlamaConfig

    for name, cfg in FLAVORS.items():
        assert ModelConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
        hf = LlamaConfig(**cfg.to_hf_dict())
        assert hf.num_key_value_heads == cfg.n_kv_heads and hf.head_dim == cfg.head_dim
    assert FLAVORS["7b"].num_parameters() == pytest.approx(6.91e9, rel=0.01)
    assert FLAVORS["67b"].num_parameters() == pytest.approx(67.4e9, rel=0.01)
    # a published-style config.json (transformers 5 writes it through save_pretrained)
    LlamaConfig(**FLAVORS["tiny"].to_hf_dict()).save_pretrained(tmp_path)
    assert resolve_model(str(tmp_path / "config.json")) == FLAVORS["tiny"]


def test_bad_configs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hidden_size": 100, "num_attention_heads": 3}))
    with pytest.raises(UserError, match="not divisible"):
        resolve_model(str(bad))
    bad.write_text(json.dumps({"num_attention_heads": 8, "num_key_value_heads": 3, "hidden_size": 512}))
    with pytest.raises(UserError, match="num_key_value_heads"):
        resolve_model(str(bad))
    bad.write_text(json.dumps({"hiden_size": 512}))
    with pytest.raises(UserError, match="unknown"):
        resolve_model(str(bad))
    with pytest.raises(UserError, match="no such file"):
        resolve_model(str(tmp_path / "nope.json"))
