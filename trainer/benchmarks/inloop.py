"""Benchmark scores inside the training loop (`eval_tasks`, `eval_every` in the train config).

Requests are loaded and tokenized once, when training starts; at each evaluation every worker scores
the same requests with its (DDP or FSDP) model, so collective forward passes line up on every worker
layout (an FSDP model gathers each layer's shards in every forward: all ranks must run the same
passes), and rank 0 logs `task/<name>` into metrics.jsonl next to `val_loss`. Requests sharing a
context share a row, as in `dsllm eval --tasks` (trainer/benchmarks/scoring.py).
"""

from __future__ import annotations

import numpy as np

from dsllm.errors import UserError
from dsllm.trainer.benchmarks import tasks as T
from dsllm.trainer.benchmarks.report import task_score
from dsllm.trainer.benchmarks.scoring import encode_requests, score_sequences


class LoopTasks:
    """Callable (model, autocast) -> {"task/<name>": value} over pre-tokenized requests."""

    def __init__(
        self,
        names: tuple[str, ...],
        tokenizer_path: str,
        limit: int | None,
        shots: int | None,
        max_len: int,
        bos_id: int | None,
        vocab_size: int,
    ):
        from tokenizers import Tokenizer

        if not tokenizer_path:
            raise UserError("eval_tasks needs eval_tokenizer (the tokenizer.json the data was packed with)")
        try:
            tok = Tokenizer.from_file(tokenizer_path)
        except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception type
            raise UserError(f"eval_tokenizer {tokenizer_path}: not a tokenizers JSON file ({exc})") from None
        self.tasks = [T.load_requests(n, shots, limit) for n in T.expand(list(names))]
        flat = [r for _, reqs in self.tasks for r in reqs]
        self.seqs = encode_requests(tok, flat, bos_id)
        top = max((max(ids) for ids, _ in self.seqs), default=0)
        if top >= vocab_size:
            raise UserError(f"eval_tokenizer {tokenizer_path}: token id {top} is outside the model's vocabulary")
        self.max_len = max_len

    def loglikelihoods(self, model, autocast) -> np.ndarray:
        """log P(continuation | context) of every request, in task order."""
        with autocast():
            return score_sequences(model, self.seqs, self.max_len)

    def __call__(self, model, autocast) -> dict[str, float]:
        ll = self.loglikelihoods(model, autocast)
        n_tok = np.array([n for _, n in self.seqs], dtype=np.int64)
        out, lo = {}, 0
        for spec, reqs in self.tasks:
            hi = lo + len(reqs)
            out[f"task/{spec.name}"] = task_score(spec, reqs, ll[lo:hi], n_tok[lo:hi])["value"]
            lo = hi
        return out
