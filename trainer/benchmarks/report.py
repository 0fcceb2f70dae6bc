"""Task scores from scored requests (DeepSeek's definitions), a per-checkpoint table, an HTML chart.

Multiple choice: a document is correct when the gold choice has the highest score, where the score is
the log-likelihood minus the unconditional log-likelihood of the same answer ("unconditional": ARC,
OpenBookQA) or the mean log-likelihood per answer token ("length": the rest). Ties go to the first
choice. Bits per byte: -sum(log-likelihood) / ln 2 / sum(UTF-8 bytes of the gold answers).
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict

import numpy as np

from dsllm.trainer.benchmarks.scoring import ScoreStats, encode_requests, score_sequences
from dsllm.trainer.benchmarks.tasks import UNCOND_OFFSET, Request, TaskSpec


def task_score(spec: TaskSpec, requests: list[Request], ll: np.ndarray, n_tokens: np.ndarray) -> dict:
    """{"metric": name, "value": x, "docs": n} for one task."""
    if spec.kind == "bpb":
        nbytes = sum(len(r.continuation.encode("utf-8")) for r in requests)
        return {"metric": "bpb", "value": float(-ll.sum() / math.log(2) / max(nbytes, 1)), "docs": len(requests)}
    uncond = {(r.doc_id - UNCOND_OFFSET, r.idx): v for r, v in zip(requests, ll) if r.unconditional}
    choices: dict[int, list] = defaultdict(list)
    labels: dict[int, int | None] = {}
    for r, v, n in zip(requests, ll, n_tokens):
        if r.unconditional:
            continue
        if spec.norm == "unconditional":
            score = v - uncond.get((r.doc_id, r.idx), 0.0)
        else:
            score = v / max(int(n), 1)
        choices[r.doc_id].append((r.idx, score))
        labels[r.doc_id] = r.label
    correct = 0
    for doc, cs in choices.items():
        best = max(cs, key=lambda c: (c[1], -c[0]))[0]
        correct += int(best == labels[doc])
    metric = "acc_uncond" if spec.norm == "unconditional" else "acc_len"
    return {"metric": metric, "value": correct / max(len(choices), 1), "docs": len(choices)}


def evaluate_tasks(
    model,
    tokenizer,
    tasks: list[tuple[TaskSpec, list[Request]]],
    max_len: int,
    bos_id: int | None = None,
    batch_tokens: int = 8192,
    log=None,
    share_contexts: bool = True,
    stats: ScoreStats | None = None,
) -> dict[str, dict]:
    """Score every task's requests in one batched pass (requests of one context in one row, unless
    `share_contexts` is off); `log(record)` gets one dict per request; `stats` accumulates the cost."""
    flat = [r for _, reqs in tasks for r in reqs]
    seqs = encode_requests(tokenizer, flat, bos_id)
    ll = score_sequences(model, seqs, max_len, batch_tokens, share_contexts=share_contexts, stats=stats)
    n_tok = np.array([n for _, n in seqs], dtype=np.int64)
    out, lo = {}, 0
    for spec, reqs in tasks:
        hi = lo + len(reqs)
        out[spec.name] = task_score(spec, reqs, ll[lo:hi], n_tok[lo:hi])
        lo = hi
    if log is not None:
        for r, v, n in zip(flat, ll, n_tok):
            log(
                {
                    "task": r.task,
                    "doc_id": r.doc_id,
                    "idx": r.idx,
                    "context": r.context,
                    "continuation": r.continuation,
                    "loglikelihood": float(v),
                    "num_tokens": int(n),
                }
            )
    return out


def format_table(rows: list[dict], tasks: list[str]) -> str:
    """One line per checkpoint: step, trained tokens, each task's value (acc or bpb)."""
    head = f"{'checkpoint':<36} {'step':>9} {'tokens':>12} " + " ".join(f"{t[:14]:>14}" for t in tasks)
    lines = [head, "-" * len(head)]
    for r in rows:
        name = r["checkpoint"] if len(r["checkpoint"]) <= 36 else "…" + r["checkpoint"][-35:]
        vals = " ".join(f"{r['tasks'][t]['value']:>14.4f}" for t in tasks)
        step = "-" if r.get("step") is None else str(r["step"])
        tok = "-" if r.get("trained_tokens") is None else str(r["trained_tokens"])
        lines.append(f"{name:<36} {step:>9} {tok:>12} {vals}")
    return "\n".join(lines)


def html_chart(rows: list[dict], tasks: list[str], title: str = "dsllm eval") -> str:
    """A self-contained page: one inline SVG line chart per task against training tokens."""
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif}svg{border:1px solid #ccc;margin:6px}</style>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for t in tasks:
        pts = [(r.get("trained_tokens") or r.get("step") or i, r["tasks"][t]["value"]) for i, r in enumerate(rows)]
        parts.append(_svg(t, rows[0]["tasks"][t]["metric"] if rows else "", pts))
    parts.append("<h2>Data</h2><pre>" + html.escape(json.dumps(rows, indent=1)) + "</pre>")
    return "\n".join(parts)


def _svg(task: str, metric: str, pts: list[tuple[float, float]], w: int = 420, h: int = 260) -> str:
    """An inline SVG: x = training tokens (or step), y = the task's value."""
    xs, ys = [p[0] for p in pts] or [0], [p[1] for p in pts] or [0]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = lambda x: 50 + (w - 70) * ((x - x0) / (x1 - x0) if x1 > x0 else 0.5)
    sy = lambda y: h - 40 - (h - 70) * ((y - y0) / (y1 - y0) if y1 > y0 else 0.5)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
    dots = "".join(
        f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3'><title>{x}: {y:.4f}</title></circle>" for x, y in pts
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}'>"
        f"<text x='10' y='18'>{html.escape(task)} ({html.escape(metric)})</text>"
        f"<text x='10' y='{h - 8}'>training tokens {x0:g} … {x1:g}</text>"
        f"<text x='10' y='34'>{y1:.4f}</text><text x='10' y='{h - 42}'>{y0:.4f}</text>"
        f"<polyline fill='none' stroke='#2563eb' stroke-width='2' points='{path}'/>{dots}</svg>"
    )
