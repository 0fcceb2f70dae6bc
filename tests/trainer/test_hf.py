"""Hugging Face import / export against `transformers` as the reference (trainer/checkpoints/hf.py)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open

from dsllm.errors import UserError
from dsllm.trainer.checkpoints import hf
from dsllm.trainer.checkpoints.export import export_hf
from dsllm.trainer.model import Transformer

X = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("fmt,shards", [("safetensors", 1), ("safetensors", 3), ("bin", 1), ("bin", 3)])
def test_import_matches_transformers(tiny_llama, fmt, shards):
    folder, ref = tiny_llama(fmt=fmt, shards=shards)
    ckpt = hf.resolve_checkpoint(str(folder))
    assert ckpt.format == ("safetensors" if fmt == "safetensors" else "bin")
    assert (len(ckpt.files) > 1) == (shards > 1)
    if shards > 1:
        assert any(folder.glob("*.index.json"))
    model = hf.build_model(ckpt)
    with torch.no_grad():
        torch.testing.assert_close(model(X), ref(X).logits, rtol=1e-5, atol=1e-6)  # same weights; op order may differ
    for name, t in ref.state_dict().items():
        assert torch.equal(model.state_dict()[name], t), name


def test_load_into_existing_model_converts_dtype(tiny_llama):
    folder, ref = tiny_llama(dtype=torch.bfloat16)
    ckpt = hf.resolve_checkpoint(str(folder))
    model = Transformer(ckpt.config)  # fp32, random init: overwritten in place
    before = model.lm_head.weight.data_ptr()
    hf.load_into(model, ckpt)
    assert model.lm_head.weight.data_ptr() == before and model.lm_head.weight.dtype == torch.float32
    assert torch.equal(model.lm_head.weight, ref.lm_head.weight.float())


def test_old_inv_freq_buffers_are_ignored(tiny_llama, tmp_path):
    folder, ref = tiny_llama(fmt="bin")
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # as transformers < 4.31 saved
    torch.save(sd, folder / "pytorch_model.bin")
    model = hf.build_model(hf.resolve_checkpoint(str(folder)))
    with torch.no_grad():
        torch.testing.assert_close(model(X), ref(X).logits, rtol=1e-5, atol=1e-6)  # same weights; op order may differ


def test_deepseek_bos_eos_rule(tiny_llama):
    folder, _ = tiny_llama(vocab=102400, hidden=8, layers=1, bos_eos=(1, 2))
    ckpt = hf.resolve_checkpoint(str(folder))
    assert (ckpt.config.bos_token_id, ckpt.config.eos_token_id) == (100000, 100001)
    assert ckpt.notes and "100000/100001" in ckpt.notes[0]
    # another vocabulary with 1/2 is left alone
    small, _ = tiny_llama(name="small", bos_eos=(1, 2))
    c2 = hf.resolve_checkpoint(str(small))
    assert (c2.config.bos_token_id, c2.config.eos_token_id) == (1, 2) and not c2.notes


def test_deepseek_rule_from_tokenizer_file(tiny_llama):
    folder, _ = tiny_llama(vocab=128, bos_eos=(1, 2))
    (folder / "tokenizer.json").write_text(
        json.dumps(
            {"added_tokens": [{"id": 100000, "content": hf.DEEPSEEK_BOS}, {"id": 100001, "content": hf.DEEPSEEK_EOS}]}
        )
    )
    ckpt = hf.resolve_checkpoint(str(folder))
    assert (ckpt.config.bos_token_id, ckpt.config.eos_token_id) == (100000, 100001)
    assert ckpt.tokenizer == str(folder)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/dsllm-pwned-by-pickle",))


def test_malicious_pickle_is_refused_and_not_run(tiny_llama):
    folder, _ = tiny_llama(fmt="bin")
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd["model.norm.weight"] = _Evil()
    torch.save(sd, folder / "pytorch_model.bin")
    if os.path.exists("/tmp/dsllm-pwned-by-pickle"):
        os.remove("/tmp/dsllm-pwned-by-pickle")
    with pytest.raises(UserError, match="refused: the pickle holds objects other than tensors"):
        hf.build_model(hf.resolve_checkpoint(str(folder)))
    assert not os.path.exists("/tmp/dsllm-pwned-by-pickle")


def test_pickle_with_non_tensor_value_is_refused(tiny_llama):
    folder, _ = tiny_llama(fmt="bin")
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd["step"] = 1000  # plain ints pass weights_only, but are not weights
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"holds a int at 'step', not a tensor"):
        hf.build_model(hf.resolve_checkpoint(str(folder)))


def test_corrupt_and_truncated_safetensors(tiny_llama):
    folder, _ = tiny_llama()
    path = folder / "model.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:8] + b"{not json" + good[17:])
    with pytest.raises(UserError, match="corrupt safetensors header"):
        hf.resolve_checkpoint(str(folder))
    path.write_bytes((10**12).to_bytes(8, "little") + good[8:])
    with pytest.raises(UserError, match="header length"):
        hf.resolve_checkpoint(str(folder))
    path.write_bytes(good[:-100])
    with pytest.raises(UserError, match="truncated"):
        hf.resolve_checkpoint(str(folder))


def test_config_that_does_not_match_the_weights(tiny_llama):
    folder, _ = tiny_llama()
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "intermediate_size": 48}))
    with pytest.raises(
        UserError,
        match=r"config.json does not match the weights: model.layers.0.mlp.down_proj.weight "
        r"is \[32, 64\] but the config implies \[32, 48\] \(hidden_size=32, ",
    ):
        hf.resolve_checkpoint(str(folder))
    (folder / "config.json").write_text(json.dumps({**raw, "num_hidden_layers": 3}))
    with pytest.raises(UserError, match=r"lack \d+ tensor\(s\) the config needs \(first: model.layers.2"):
        hf.resolve_checkpoint(str(folder))


def test_bin_config_mismatch_found_at_load(tiny_llama):
    folder, _ = tiny_llama(fmt="bin")
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "num_hidden_layers": 1}))
    with pytest.raises(UserError, match="model.layers.1.* is not part of the model"):
        hf.build_model(hf.resolve_checkpoint(str(folder)))


def test_missing_shard(tiny_llama):
    folder, _ = tiny_llama(shards=3)
    victim = sorted(folder.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(UserError, match=f"shard {victim.name} listed in model.safetensors.index.json is missing"):
        hf.resolve_checkpoint(str(folder))


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_export_round_trip_is_lossless(tiny_llama, tmp_path, fmt):
    from transformers import LlamaForCausalLM

    folder, ref = tiny_llama(fmt=fmt, shards=2, vocab=102400, hidden=8, layers=2, dtype=torch.bfloat16)
    (folder / "tokenizer.json").write_text('{"added_tokens": []}')
    ckpt = hf.resolve_checkpoint(str(folder))
    out = tmp_path / "export"
    written = export_hf(ckpt, str(out), max_shard_bytes=600_000)
    assert "model.safetensors.index.json" in written and "tokenizer.json" in written
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (100000, 100001)
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"]) == (100000, 100001)
    exported = {}
    for f in out.glob("*.safetensors"):
        with safe_open(str(f), "pt") as sf:
            exported.update({k: sf.get_tensor(k) for k in sf.keys()})
    want = ref.state_dict()
    assert set(exported) == set(want)
    for k, t in want.items():
        assert exported[k].dtype == torch.bfloat16 and torch.equal(exported[k], t), k
    loaded = LlamaForCausalLM.from_pretrained(str(out)).eval()  # transformers reads it as it is
    with torch.no_grad():
        assert torch.equal(loaded(X).logits, ref(X).logits)
    # export of the export: byte-identical weight files
    again = tmp_path / "again"
    export_hf(hf.resolve_checkpoint(str(out)), str(again), max_shard_bytes=600_000)
    for f in out.glob("*.safetensors"):
        assert (again / f.name).read_bytes() == f.read_bytes()


def test_export_refuses_non_empty_output(tiny_llama, tmp_path):
    folder, _ = tiny_llama()
    ckpt = hf.resolve_checkpoint(str(folder))
    with pytest.raises(UserError, match="own folder"):
        export_hf(ckpt, str(folder))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        export_hf(ckpt, str(tmp_path / "busy"))
    export_hf(ckpt, str(tmp_path / "busy"), dtype="bfloat16", overwrite=True)
    with safe_open(str(tmp_path / "busy" / "model.safetensors"), "pt") as sf:
        assert sf.get_tensor("lm_head.weight").dtype == torch.bfloat16


def test_run_dir_resolves_latest_step_and_step_flag(tiny_llama, tmp_path):
    run = tmp_path / "run" / "checkpoints"
    for step, seed in ((10, 0), (20, 1)):
        folder, _ = tiny_llama(name=f"run/checkpoints/step-{step:08d}", seed=seed)
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "tokens": step * 4096}))
    ckpt = hf.resolve_checkpoint(str(run.parent))
    assert (ckpt.step, ckpt.tokens) == (20, 81920) and ckpt.path.endswith("step-00000020")
    assert hf.resolve_checkpoint(str(run.parent), step=10).step == 10
    with pytest.raises(UserError, match=r"no checkpoint at step 15 \(steps found: 10, 20\)"):
        hf.resolve_checkpoint(str(run.parent), step=15)
