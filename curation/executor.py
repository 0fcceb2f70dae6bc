"""How curation runs many tasks without importing Ray itself.

The curate run (curation.run), dedup (curation.dedup) and packing (tokenizer.pack) receive an
`Executor` and call `executor.map(fn, items, label=...)`: a plain loop in this process
(`LocalExecutor`), Ray tasks in production (`dsllm.jobs.runner.RayExecutor`, which also reports
progress under `label`, by default the function's module/name). `fn` must be a module-level
function (picklable); results come back in the order of `items`, and never depend on which
executor ran them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class Executor(Protocol):
    parallelism: int

    def map(self, fn: Callable[[A], R], items: Iterable[A], label: str | None = None) -> list[R]: ...


class LocalExecutor:
    """Runs every task in this process, one after another."""

    parallelism = 1

    def map(self, fn, items, label: str | None = None):
        return [fn(item) for item in items]
