"""Benchmark scores in the training loop: `task/<name>` in metrics.jsonl at every eval step, equal to
`dsllm eval --tasks` on the checkpoint of the same step, on one process and on two DDP ranks."""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import pytest

from dsllm.trainer.train import train
from tests.conftest import run_cli
from tests.trainer.test_train_loop import MODEL, cfg, write_packed

WORDS = [
    "question",
    "what",
    "colour",
    "is",
    "the",
    "sky",
    "answer",
    "blue",
    "green",
    "red",
    "le",
    "ciel",
    "est",
    "bleu",
    "vert",
    "rouge",
]


def _setup(tmp_path: Path) -> tuple[str, str, str]:
    """Packed data, a word-level tokenizer inside the model's vocabulary, a 2-document task file."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i + 2 for i, w in enumerate(WORDS)} | {"[UNK]": 60}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tokenizer.json"))
    task = tmp_path / "mine.jsonl"
    docs = [
        ("question what colour is the sky answer", ["blue", "green", "red"], 0),
        ("le ciel est", ["bleu", "vert", "rouge"], 1),
    ]
    task.write_text(
        "".join(
            json.dumps({"doc_id": d, "idx": i, "label": g, "request": {"context": c, "continuation": " " + x}}) + "\n"
            for d, (c, xs, g) in enumerate(docs)
            for i, x in enumerate(xs)
        )
    )
    return write_packed(tmp_path / "packed"), str(tmp_path / "tokenizer.json"), str(task)


def _cfg(tok: str, task: str, **kw):
    return cfg(max_steps=4, eval_every=2, checkpoint_every_steps=2, eval_tasks=[task], eval_tokenizer=tok, **kw)


def _records(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def _cli_scores(run: Path, tok: str, task: str) -> dict[int, float]:
    """`dsllm eval --tasks` in one process over every step checkpoint of the run: {step: score}."""
    res = run_cli(
        "eval", "--model", str(run), "--tasks", task, "--tokenizer", tok, "--json", env={"HF_HUB_OFFLINE": "1"}
    )
    assert res.returncode == 0, res.stderr
    return {row["step"]: row["tasks"]["mine"]["value"] for row in json.loads(res.stdout)}


def test_task_scores_in_metrics_match_dsllm_eval(tmp_path):
    packed, tok, task = _setup(tmp_path)
    run = tmp_path / "run"
    train(MODEL, _cfg(tok, task), packed, str(run), quiet=True)
    logged = {step: r["task/mine"] for step, r in _records(run).items() if "task/mine" in r}
    assert list(logged) == [2, 4]
    assert logged == _cli_scores(run, tok, task)


def test_bad_eval_tokenizer_is_a_user_error(tmp_path):
    from dsllm.errors import UserError

    packed, tok, task = _setup(tmp_path)
    with pytest.raises(UserError, match="eval_tokenizer"):
        train(MODEL, _cfg("", task), packed, str(tmp_path / "run"), quiet=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, packed: str, run: str, tok: str, task: str, strategy: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        train(MODEL, _cfg(tok, task, strategy=strategy), packed, run, quiet=True)
    finally:
        dist.destroy_process_group()


def _spawn(target, *args) -> None:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, *args)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_log_the_task_scores_of_their_weights(tmp_path, strategy):
    """Two gloo workers (DDP, FSDP2): task scores at every eval step in metrics.jsonl, equal to one
    process scoring the checkpoint the run wrote at that step (the same weights)."""
    packed, tok, task = _setup(tmp_path)
    run = tmp_path / "run2"
    _spawn(_rank_main, _free_port(), packed, str(run), tok, task, strategy)
    logged = {step: r["task/mine"] for step, r in _records(run).items() if "task/mine" in r}
    assert list(logged) == [2, 4]
    assert logged == _cli_scores(run, tok, task)


def _fsdp_scores(rank: int, port: int, tok: str, task: str, out) -> None:
    """LoopTasks' log-likelihoods with the model FSDP2-sharded over two ranks (CPU-fused kernels, as
    the training loop runs it), and the full weights gathered for the single-process reference."""
    import torch.distributed as dist

    from dsllm.trainer.benchmarks.inloop import LoopTasks
    from dsllm.trainer.loop import autocast_for
    from dsllm.trainer.model import Transformer
    from dsllm.trainer.parallelize import apply_fsdp, apply_kernels

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = Transformer(MODEL, seed=5)
        apply_fsdp(apply_kernels(model))
        assert type(model.lm_head.weight).__name__ == "DTensor"
        tasks = LoopTasks((task,), tok, None, None, MODEL.max_position_embeddings, MODEL.bos_token_id, MODEL.vocab_size)
        full = {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}
        ll = tasks.loglikelihoods(model, autocast_for("fp32"))
        out[rank] = (ll, full)
    finally:
        dist.destroy_process_group()


def test_fsdp_sharded_model_scores_each_request_as_one_process_does(tmp_path):
    import numpy as np
    import torch
    import torch.multiprocessing as mp

    from dsllm.trainer.benchmarks.inloop import LoopTasks
    from dsllm.trainer.model import Transformer

    _, tok, task = _setup(tmp_path)
    out = mp.Manager().dict()
    _spawn(_fsdp_scores, _free_port(), tok, task, out)
    (ll0, full), (ll1, _) = out[0], out[1]
    model = Transformer(MODEL, seed=5)
    model.load_state_dict(full)
    assert all(torch.equal(p, Transformer(MODEL, seed=5).state_dict()[n]) for n, p in full.items())
    tasks = LoopTasks((task,), tok, None, None, MODEL.max_position_embeddings, MODEL.bos_token_id, MODEL.vocab_size)
    want = tasks.loglikelihoods(model, contextlib.nullcontext)
    assert len(want) == 6 and np.all(want < 0)
    np.testing.assert_allclose(ll0, want, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ll0, ll1)
