"""Sharded (DCP) checkpoints in one process: `checkpoint_format=dcp` with `async_checkpoint`
resumes bit for bit under `precision=bf16` (the fp32 master weights are what is saved), and the
step folder is read back by torch's own DCP converter and by our loader (eval, export). Two ranks: tests/jobs/test_torchrun.py."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.test_train_loop import MODEL, cfg, losses


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from tests.trainer.test_train_loop import write_packed

    return write_packed(tmp_path_factory.mktemp("packed") / "data")


def test_dcp_async_checkpoint_resumes_bitwise_with_bf16_master_weights(packed, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from dsllm.trainer.train import train

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    sched = {"warmup_steps": 2, "total_tokens": 6 * 8 * 32}
    kw = dict(precision="bf16", schedule=sched, checkpoint_format="dcp", async_checkpoint=True, eval_every=0)
    train(MODEL, cfg(**kw), packed, str(whole), quiet=True)
    train(MODEL, cfg(max_steps=3, **kw), packed, str(parts), quiet=True)
    step3 = parts / "checkpoints" / "step-00000003"
    assert (step3 / "sharded" / ".metadata").is_file() and not (step3 / "model.safetensors").exists()
    train(MODEL, cfg(**kw), packed, str(parts), quiet=True)  # resumes at 3 from the sharded checkpoint
    assert losses(parts) == losses(whole)  # exact float equality, every step

    saved = {}
    for run in (whole, parts):
        dcp_to_torch_save(run / "checkpoints" / "step-00000006" / "sharded", tmp_path / f"{run.name}.pt")
        saved[run.name] = torch.load(tmp_path / f"{run.name}.pt", weights_only=True)
    a, b = saved["whole"], saved["parts"]
    assert set(a["model"]) == set(b["model"]) and len(a["model"]) == 2 + 9 * MODEL.num_hidden_layers + 1
    for name, t in a["model"].items():
        assert t.dtype == torch.float32  # the master weights, not the bf16 copy
        assert torch.equal(t, b["model"][name]), name
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(a["optim"][name][key], b["optim"][name][key]), (name, key)

    # what `dsllm eval` / `--resume-from` (weights) load from a run of sharded checkpoints: its latest step
    from dsllm.trainer.checkpoints import hf

    ckpt = hf.resolve_checkpoint(str(parts))
    assert (ckpt.format, ckpt.step) == ("dcp", 6)
    model = hf.build_model(ckpt)
    for name, t in model.state_dict().items():
        assert torch.equal(t, a["model"][name]), name
