"""How curation stages run many tasks without importing Ray themselves.

Stages receive an `Executor` and call `executor.map(fn, items)`: a plain loop in tests
(`LocalExecutor`), Ray tasks in production (`jobs.runner.RayExecutor`). `fn` must be a
module-level function (picklable); results come back in the order of `items`.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol, TypeVar

A = TypeVar("A")
R = TypeVar("R")


class Executor(Protocol):
    parallelism: int

    def map(self, fn: Callable[[A], R], items: Iterable[A]) -> list[R]: ...


class LocalExecutor:
    """Runs every task in this process, one after another."""

    parallelism = 1

    def map(self, fn, items):
        return [fn(item) for item in items]
