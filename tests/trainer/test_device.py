"""Device-generic training without a GPU: the real training step on the `meta` device (a tensor
created on the wrong device cannot mix with meta ones), `--device cuda` without CUDA, bf16
optimizer states, and activation checkpointing through `train()`."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from dsllm.trainer.loop import RowRange
from dsllm.trainer.optim import BF16StateAdamW, MasterWeights, OptimConfig, build_optimizer
from dsllm.trainer.parallelize import parallelize
from dsllm.trainer.train import train_step
from tests.trainer.test_train_loop import MODEL, cfg, losses, write_packed


def test_the_training_step_keeps_every_tensor_on_the_run_device(tmp_path):
    from dsllm.trainer.data import DataLoader, PackedDataset

    ds = PackedDataset(write_packed(tmp_path / "packed", rows=16, seq_len=32))
    with torch.device("meta"):
        from dsllm.trainer.model import Transformer

        model = Transformer(MODEL, seed=0)
    fwd = parallelize(model, "ddp", activation_checkpointing="selective", kernels=False)
    master = MasterWeights(model, "fp32")
    optimizer = build_optimizer(master, OptimConfig())
    for segments in (False, True):  # with the document mask's segment ids and positions too
        loader = DataLoader(RowRange(ds, 0, 16), 8, 4, 0, 0, 1, chunk_rows=ds.chunk_rows, segments=segments)
        batches = iter(loader)
        micro = [next(batches), next(batches)]
        assert micro[0].input_ids.device.type == "cpu"  # the loader yields host tensors
        loss = train_step(fwd, master, micro, torch.device("meta"), contextlib.nullcontext)
        loader.close()
        assert loss.device.type == "meta" and loss.shape == ()
        assert all(p.grad is not None and p.grad.is_meta for p in master.master)
        optimizer.step()
        assert all(p.is_meta for p in model.parameters())
        assert all(t.is_meta for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t) and t.ndim)
    # the oracle bites: a host tensor reaching the meta model is an error
    with pytest.raises((RuntimeError, NotImplementedError)):
        fwd(micro[0].input_ids, labels=micro[0].input_ids)


def test_device_cuda_without_cuda_is_one_line(cli, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    data = write_packed(tmp_path / "packed", rows=16, seq_len=32)
    out = cli(
        "train",
        "--model",
        "tiny",
        "--data",
        data,
        "--output",
        str(tmp_path / "run"),
        "--device",
        "cuda",
        "--max-steps",
        "1",
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "--device cuda" in out.stderr and "CUDA is not available" in out.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_bf16_optimizer_states_follow_adamw():
    """Against torch.optim.AdamW: same updates to bf16 rounding of the moments; states in bf16."""
    torch.manual_seed(0)
    w0 = torch.randn(64, 32)
    ours, ref = w0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
    opt = BF16StateAdamW([{"params": [ours], "weight_decay": 0.1}], lr=1e-2, betas=(0.9, 0.95))
    want = torch.optim.AdamW([ref], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    for step in range(5):
        g = torch.randn(64, 32, generator=torch.Generator().manual_seed(step))
        ours.grad, ref.grad = g.clone(), g.clone()
        opt.step(), want.step()
    moved = (ref.detach() - w0).abs().mean()
    assert moved > 0.01
    assert (ours.detach() - ref.detach()).abs().max() < 0.05 * moved
    state = opt.state[ours]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16


@pytest.mark.parametrize("mode", ["full"])
def test_train_with_activation_checkpointing_gives_the_same_losses(tmp_path, mode):
    from dsllm.trainer.train import train

    data = write_packed(tmp_path / "packed", rows=32, seq_len=32)
    for name, ac in (("off", "none"), ("on", mode)):
        train(
            MODEL,
            cfg(max_steps=3, eval_every=0, activation_checkpointing=ac, device="cpu"),
            data,
            str(tmp_path / name),
            quiet=True,
        )
    off, on = losses(tmp_path / "off"), losses(tmp_path / "on")
    assert len(off) == 3 and [s for s, _ in on] == [s for s, _ in off]
    assert all(abs(a - b) < 1e-5 for (_, a), (_, b) in zip(off, on))
    assert json.loads((tmp_path / "on" / "metrics.jsonl").read_text().splitlines()[-1])["loss"] > 0


def _cpu_has_native_bf16() -> bool:
    """From the kernel's CPU flags, not from torch: oneDNN's bf16 needs at least AVX512 core
    (AVX512BW, VL and DQ), or the AVX512-BF16, AMX-BF16 or AVX-NE-CONVERT extensions."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if {"avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        return True
    return any(f in flags for f in ("avx512_bf16", "amx_bf16", "avx_ne_convert"))


def test_precision_auto_is_bf16_only_where_the_cpu_has_it(cli, tmp_path):
    """`precision = "auto"` (the default) trains in bf16 only on a CPU with native bf16; elsewhere fp32,
    said in one line and recorded in the checkpoint. An explicit precision is kept as given."""
    data = write_packed(tmp_path / "packed", rows=16, seq_len=32)
    small = [
        f"--set=model.{k}={v}"
        for k, v in (
            ("hidden_size", 32),
            ("intermediate_size", 64),
            ("num_hidden_layers", 1),
            ("num_attention_heads", 2),
            ("num_key_value_heads", 1),
            ("vocab_size", 128),
        )
    ]
    expected = "bf16" if _cpu_has_native_bf16() else "fp32"
    for given, want in (("auto", expected), ("bf16-autocast", "bf16-autocast")):
        run = tmp_path / f"run-{given}"
        out = cli(
            "train",
            "--model",
            "tiny",
            "--data",
            data,
            "--output",
            str(run),
            "--device",
            "cpu",
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            f"--set=precision={given}",
            "--set=checkpoint_every_steps=1",
            *small,
        )
        assert out.returncode == 0, out.stderr
        assert (f"precision auto: {want}" in out.stderr) == (given == "auto"), out.stderr
        state = json.loads(next(run.glob("checkpoints/step-*/trainer_state.json")).read_text())
        assert state["precision"] == want and state["train_config"]["precision"] == want
