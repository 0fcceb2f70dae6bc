"""How curation runs many tasks without importing Ray itself.

The curate run (curation.run), dedup (curation.dedup) and packing (tokenizer.pack) receive an
`Executor` and call `executor.map(fn, items, label=...)`: a plain loop in this process
(`LocalExecutor`), Ray tasks in production (`dsllm.jobs.runner.RayExecutor`, which also reports
progress under `label`, by default the function's module/name). `fn` must be a module-level
function (picklable); results come back in the order of `items`, and never depend on which
executor ran them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

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


class ProcessExecutor:
    """Tasks in worker processes forked from this one, on this machine only (no Ray).

    Workers are forked when the first `map` runs and live until `close()`, so whatever this process
    loaded before (imported modules, the models the stages cache per process: lid.176, the
    decontamination index) is shared copy-on-write instead of loaded again by every worker, and no
    cluster daemons start. Results come back in the order of `items`, as with every executor;
    progress is reported under `label` like RayExecutor's. For a run on one machine; a cluster run
    uses `dsllm.jobs.runner.RayExecutor`.

    A worker that dies (killed by the kernel's OOM killer, a crash in a C extension on hostile
    input) breaks the pool: as Ray retries a task whose worker died (`max_retries`, default 3), a
    new pool runs the tasks that had not finished, up to `max_retries` times per `map`; finished
    results are kept. Every task of the runs here is idempotent (outputs published atomically,
    completion markers last), so running one again is safe. A task that raises an exception is
    not retried: its exception propagates, as with Ray's application errors."""

    def __init__(self, workers: int | None = None, quiet: bool = False, max_retries: int = 3):
        import os

        self.parallelism = max(1, workers or os.cpu_count() or 1)
        self.quiet = quiet
        self.max_retries = max_retries
        self.retries = 0  # pools rebuilt after a worker died, over this executor's life
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(
                self.parallelism,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_die_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    def map(self, fn, items, label: str | None = None):
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        from dsllm.progress import StageProgress

        items = list(items)
        if not items:
            return []
        label = label or f"{fn.__module__.rsplit('.', 1)[-1]}/{fn.__name__}"
        workers = min(self.parallelism, len(items))
        progress = StageProgress(label, len(items), unit=f"tasks on {workers} worker(s)", quiet=self.quiet)
        results: list = [None] * len(items)
        pending = set(range(len(items)))
        attempt = 0
        while pending:
            futures: dict = {}
            try:  # a worker that died between two maps breaks the pool at submit already
                pool = self._get_pool()
                for i in sorted(pending):
                    futures[pool.submit(fn, items[i])] = i
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    pending.discard(futures[future])
                    progress.advance()
            except BrokenProcessPool as exc:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                attempt += 1
                if attempt > self.max_retries:
                    raise RuntimeError(
                        f"{label}: a worker process died {attempt} times; {len(pending)} task(s) did not "
                        f"finish (a rerun resumes from the finished ones)"
                    ) from exc
                self.retries += 1
                log.warning(
                    "%s: a worker process died (%s); running the %d unfinished task(s) again (retry %d of %d)",
                    label,
                    exc,
                    len(pending),
                    attempt,
                    self.max_retries,
                )
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        progress.close()
        return results

    def close(self) -> None:
        """Stop the workers (after the tasks that are running end)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _die_with_parent(parent: int) -> None:
    """In a forked worker: be killed when the command is (even by `kill -9`), so no worker outlives it."""
    import ctypes
    import os
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (AttributeError, OSError):  # not Linux: workers still end when the pool shuts down
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
