"""Where a curate run's time goes: per-stage and per-phase wall and CPU seconds for `stats.json`.

    timer = ChainTimer()
    docs = timer.wrap("read", reader(stream, counts["read"]))   # each stage's generator, in order
    ...
    timer.exclusive(["read", "extract", ...], total_cpu, total_wall)   # {stage: (cpu_s, wall_s)}

Stages are chained generators, so the time spent inside `next()` of stage k includes stages 0..k-1;
a stage's own time is its inclusive time minus its upstream's. Building the stages (loading models,
cached per process) is `setup`; what the consumer of the last stage spends (scoring, the Parquet
write, opening the input) is the remainder of the task's total, reported as `write`.

Phases of the run (`startup`, `inputs`, `dedup`, `shards`, `stats`, `publish`) are timed on the
driver with `RunTimer.phase(name)`; tasks run through `TimedExecutor`, which returns each task's
own CPU seconds, so a phase's CPU is the driver's plus that of every task that ran in another
process (summed over workers), and its wall is the phase's elapsed time. CPU is process CPU time
(`time.process_time`): the stage's work plus whatever the process's own background threads did
meanwhile. Timings differ run to run; they are informative and never part of a run's outputs'
identity (shards, ids and counts do not depend on them).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


class ChainTimer:
    """Inclusive CPU and wall seconds of each wrapped generator, turned into per-stage exclusive times."""

    def __init__(self) -> None:
        self.inclusive: dict[str, list[float]] = {}
        self.setup = [0.0, 0.0]  # building the stages (model loads), outside every stage's next()

    def wrap(self, name: str, items: Iterable) -> Iterator:
        acc = self.inclusive.setdefault(name, [0.0, 0.0])
        return self._timed(iter(items), acc)

    @staticmethod
    def _timed(it: Iterator, acc: list[float]) -> Iterator:
        while True:
            c0, w0 = _clock()
            try:
                item = next(it)
            except StopIteration:
                c1, w1 = _clock()
                acc[0] += c1 - c0
                acc[1] += w1 - w0
                return
            c1, w1 = _clock()
            acc[0] += c1 - c0
            acc[1] += w1 - w0
            yield item

    def exclusive(self, order: list[str], total_cpu: float, total_wall: float) -> dict[str, list[float]]:
        """{stage: [cpu_s, wall_s]}: `setup`, the wrapped stages in chain order, and `write` (the rest)."""
        out: dict[str, list[float]] = {"setup": list(self.setup)}
        prev = [0.0, 0.0]
        for name in order:
            inc = self.inclusive.get(name, prev)
            out[name] = [max(0.0, inc[0] - prev[0]), max(0.0, inc[1] - prev[1])]
            prev = inc
        rest = [total_cpu - prev[0] - self.setup[0], total_wall - prev[1] - self.setup[1]]
        out["write"] = [max(0.0, rest[0]), max(0.0, rest[1])]
        return out


def merge_stage_times(per_task: Iterable[dict[str, list[float]]], order: Iterable[str]) -> list[dict]:
    """Sum per-task {stage: [cpu, wall]} over tasks; a list in `order` (names absent everywhere left out)."""
    sums: dict[str, list[float]] = {}
    tasks: dict[str, int] = {}
    for times in per_task:
        for name, (cpu, wall) in times.items():
            s = sums.setdefault(name, [0.0, 0.0])
            s[0] += cpu
            s[1] += wall
            tasks[name] = tasks.get(name, 0) + 1
    return [
        {"name": n, "cpu_s": round(sums[n][0], 4), "wall_s": round(sums[n][1], 4), "tasks": tasks[n]}
        for n in order
        if n in sums
    ]


def timed_call(job: tuple) -> tuple:
    """Run `fn(item)`; return (result, CPU seconds it took, pid). Module-level so executors pickle it."""
    fn, item = job
    c0 = time.process_time()
    result = fn(item)
    return result, time.process_time() - c0, os.getpid()


class TimedExecutor:
    """An executor that counts the CPU seconds its tasks spent in other processes (Ray workers).

    Tasks that ran in this process (LocalExecutor) are already in the driver's own CPU time."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.task_cpu = 0.0
        self.tasks = 0
        self.pids: list[int] = []  # the process of every task, in order; this one's pid for local tasks

    @property
    def parallelism(self) -> int:
        return self.inner.parallelism

    def map(self, fn, items, label: str | None = None) -> list:
        label = label or f"{fn.__module__.rsplit('.', 1)[-1]}/{fn.__name__}"
        results = self.inner.map(timed_call, [(fn, item) for item in items], label=label)
        me = os.getpid()
        for _, cpu, pid in results:
            self.tasks += 1
            self.pids.append(pid)
            if pid != me:
                self.task_cpu += cpu
        return [r for r, _, _ in results]


class RunTimer:
    """Wall and CPU seconds of each phase of a run (driver CPU + CPU of tasks in other processes)."""

    def __init__(self, executor: TimedExecutor, startup: dict | None = None) -> None:
        self.executor = executor
        self.phases: dict[str, dict] = {}
        self.started = _clock()
        if startup is not None:
            self.phases["startup"] = {
                "wall_s": round(startup["wall_s"], 4),
                "cpu_s": round(startup["cpu_s"], 4),
                "tasks": 0,
                "workers": 0,
            }

    @contextlib.contextmanager
    def phase(self, name: str):
        c0, w0 = _clock()
        t0, n0 = self.executor.task_cpu, self.executor.tasks
        try:
            yield
        finally:
            c1, w1 = _clock()
            ran = self.executor.tasks - n0
            workers = len(set(self.executor.pids[n0:]))  # processes that ran this phase's tasks
            prev = self.phases.get(name, {"wall_s": 0.0, "cpu_s": 0.0, "tasks": 0, "workers": 0})
            self.phases[name] = {
                "wall_s": round(prev["wall_s"] + w1 - w0, 4),
                "cpu_s": round(prev["cpu_s"] + (c1 - c0) + (self.executor.task_cpu - t0), 4),
                "tasks": prev["tasks"] + ran,
                "workers": max(prev["workers"], workers),
            }

    def to_json(self, stages: list[dict]) -> dict:
        """stats.json `timing`: phases in run order, per-input stages summed over inputs, totals."""
        phases = [dict(name=n, **v) for n, v in self.phases.items()]
        return {
            "phases": phases,
            "stages": stages,
            "total": {
                "wall_s": round(sum(p["wall_s"] for p in phases), 4),
                "cpu_s": round(sum(p["cpu_s"] for p in phases), 4),
            },
        }
