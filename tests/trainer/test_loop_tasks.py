"""Benchmark scores in the training loop: `task/<name>` in metrics.jsonl at every eval step, equal to
`dsllm eval --tasks` on the checkpoint of the same step, on one process and on two DDP ranks."""

from __future__ import annotations

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


def _cli_score(run: Path, step: int, tok: str, task: str) -> float:
    res = run_cli(
        "eval",
        "--model",
        str(run / "checkpoints" / f"step-{step:08d}"),
        "--tasks",
        task,
        "--tokenizer",
        tok,
        "--json",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)[0]["tasks"]["mine"]["value"]


def test_task_scores_in_metrics_match_dsllm_eval(tmp_path):
    packed, tok, task = _setup(tmp_path)
    run = tmp_path / "run"
    train(MODEL, _cfg(tok, task), packed, str(run), quiet=True)
    recs = _records(run)
    assert [s for s, r in recs.items() if "task/mine" in r] == [2, 4]
    for step in (2, 4):
        assert recs[step]["task/mine"] == _cli_score(run, step, tok, task)


def test_bad_eval_tokenizer_is_a_user_error(tmp_path):
    from dsllm.errors import UserError

    packed, tok, task = _setup(tmp_path)
    with pytest.raises(UserError, match="eval_tokenizer"):
        train(MODEL, _cfg("", task), packed, str(tmp_path / "run"), quiet=True)


def _rank_main(rank: int, port: int, packed: str, run: str, tok: str, task: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        train(MODEL, _cfg(tok, task), packed, run, quiet=True)
    finally:
        dist.destroy_process_group()


def test_two_ddp_ranks_log_the_same_task_scores(tmp_path):
    import torch.multiprocessing as mp

    packed, tok, task = _setup(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run2"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank_main, args=(r, port, packed, str(run), tok, task)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    recs = _records(run)
    assert [s for s, r in recs.items() if "task/mine" in r] == [2, 4]
    assert recs[4]["task/mine"] == _cli_score(run, 4, tok, task)
