"""`RUN/metrics.jsonl` has one owner: rank 0. Other ranks of the same run (sharing the run
directory) neither write nor truncate it, so a resumed multi-rank run keeps every line once (CI
once saw each step twice when two FSDP ranks both appended, and lines lost when one rank's resume
truncation renamed a new file over the one the other rank had open)."""

from __future__ import annotations

import json

from dsllm.trainer.metrics import MetricsLog


def _rec(step: int) -> dict:
    return {"step": step, "loss": 1.0 / step, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1.0, "mfu": 0.0}


def _steps(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_only_the_owner_writes_and_a_resume_truncates_once(tmp_path):
    ranks = [MetricsLog(tmp_path, 4, quiet=True, write=r == 0) for r in range(2)]
    for step in (1, 2, 3):
        for log in ranks:
            log.log(_rec(step))
    for log in ranks:
        log.close()
    assert _steps(tmp_path / "metrics.jsonl") == [1, 2, 3]

    # resume from step 2 on two ranks opened one after the other: step 3 is dropped once, and
    # the owner's handle stays on the file that is read back
    ranks = [MetricsLog(tmp_path, 4, resume_step=2, quiet=True, write=r == 0) for r in range(2)]
    for step in (3, 4):
        for log in ranks:
            log.log(_rec(step))
    for log in ranks:
        log.close()
    assert _steps(tmp_path / "metrics.jsonl") == [1, 2, 3, 4]
