"""What trainer/parallelize.py applies from outside the model: activation checkpointing, the
CPU-fused kernels, meta-device builds and FSDP2 sharded materialisation (two gloo processes)."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from dsllm.trainer.config import FLAVORS, ModelConfig
from dsllm.trainer.model import Transformer
from dsllm.trainer.parallelize import apply_activation_checkpointing, apply_kernels, build_model

SMALL = ModelConfig(
    vocab_size=321,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    initializer_range=0.05,
)


def _loss_and_grads(model, ids):
    _, loss = model(ids, labels=ids, return_logits=False)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "cpu-kernels"])
@pytest.mark.parametrize("mode", ["selective", "full"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(mode, fused):
    ids = torch.randint(0, SMALL.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    ref = Transformer(SMALL, seed=3)
    ckpt = Transformer(SMALL, seed=3)
    if fused:
        apply_kernels(ref), apply_kernels(ckpt)
    apply_activation_checkpointing(ckpt, mode)
    assert list(ckpt.state_dict()) == list(ref.state_dict())  # names unchanged
    want_loss, want = _loss_and_grads(ref, ids)
    # the recomputation really happens: a layer's forward runs twice per step with checkpointing
    calls, mlp = [], ckpt.model.layers[0].mlp
    mlp.forward = lambda x, _f=mlp.forward: calls.append(1) or _f(x)  # (module hooks skip recomputes)
    got_loss, got = _loss_and_grads(ckpt, ids)
    assert len(calls) == 2
    assert torch.allclose(got_loss, want_loss, atol=1e-6)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-6, rtol=1e-5), name


def test_unknown_activation_checkpointing_mode():
    with pytest.raises(ValueError, match="activation_checkpointing"):
        apply_activation_checkpointing(Transformer(SMALL, seed=0), "some")


def test_seeded_init_is_the_seed_and_a_plain_function_of_it():
    a, b = Transformer(SMALL, seed=5), Transformer(SMALL, seed=5)
    c = Transformer(SMALL, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    torch.manual_seed(0)
    d = Transformer(SMALL)
    torch.manual_seed(0)
    assert torch.equal(Transformer(SMALL).lm_head.weight, d.lm_head.weight)  # torch's seed decides


@pytest.mark.parametrize("name", ["7b", "67b"])
def test_paper_models_build_on_meta_with_their_parameter_counts(name):
    model = build_model(FLAVORS[name], seed=0, meta=True)
    n = sum(p.numel() for p in model.parameters())
    assert all(p.is_meta for p in model.parameters())
    assert n == FLAVORS[name].num_parameters()
    assert n == pytest.approx({"7b": 6.91e9, "67b": 67.4e9}[name], rel=0.005)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_worker(rank: int, world: int, port: int, block_rows: int, out: dict) -> None:
    import torch.distributed as dist

    import dsllm.trainer.model as m
    from dsllm.trainer.parallelize import apply_fsdp, materialize

    m.INIT_BLOCK_ROWS = block_rows  # shard boundaries fall inside blocks
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        model = build_model(SMALL, seed=11, meta=True)
        apply_fsdp(model)
        materialize(model, "cpu")
        local = {n: p.to_local().detach().clone() for n, p in model.named_parameters()}
        full = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
        out[rank] = (local, full)
    finally:
        dist.destroy_process_group()


def test_meta_build_sharded_on_two_workers_draws_the_plain_init(tmp_path):
    """FSDP2 over two gloo processes: each rank materialises only its rows, and the gathered
    weights equal a plain single-process build's for the same seed (vocab 321: uneven shards)."""
    import torch.multiprocessing as mp

    manager = mp.Manager()
    out = manager.dict()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.start_processes(_shard_worker, args=(2, _free_port(), 5, out), nprocs=2, start_method="spawn")
    import dsllm.trainer.model as m

    old, m.INIT_BLOCK_ROWS = m.INIT_BLOCK_ROWS, 5
    try:
        plain = Transformer(SMALL, seed=11).state_dict()
    finally:
        m.INIT_BLOCK_ROWS = old
    local0, full0 = out[0]
    local1, full1 = out[1]
    for name, want in plain.items():
        assert torch.equal(full0[name], want) and torch.equal(full1[name], want), name
        rows0 = local0[name].shape[0]
        assert rows0 == -(-want.shape[0] // 2)  # rank 0 holds ⌈n/2⌉ rows, rank 1 the rest
        assert torch.equal(torch.cat([local0[name], local1[name]]), want), name
