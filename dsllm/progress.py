"""Progress of long work, for people and for logs.

On a terminal: a rich progress bar per stage with counts, rate and ETA. Anywhere else (nohup, a Ray
job's log, CI): one plain line when a stage starts, one every `DSLLM_PROGRESS_SECONDS` (default 30)
while it runs, and one when it ends, each naming the stage:

    [curate/inputs] 12/40 inputs (30%) | 0.82/s | eta 34s | 14.6s
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class StageProgress:
    """Counts done out of `total` for one named stage; use as a context manager or call close()."""

    def __init__(
        self,
        stage: str,
        total: int,
        unit: str = "items",
        quiet: bool = False,
        stream: IO[str] | None = None,
        interval: float | None = None,
    ):
        self.stage, self.total, self.unit, self.quiet = stage, int(total), unit, quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = float(os.environ.get("DSLLM_PROGRESS_SECONDS", 30)) if interval is None else interval
        self.done, self.start = 0, time.monotonic()
        self._last_line = self.start
        self._bar = None
        if quiet:
            return
        if getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn(f"[bold]{stage}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._task = self._bar.add_task(stage, total=self.total)
            self._bar.start()
        else:
            self._print()

    def line(self) -> str:
        """The plain progress line for the current count."""
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = (
            _duration((self.total - self.done) / rate)
            if rate > 0 and self.done < self.total
            else ("-" if self.done < self.total else "done")
        )
        return f"[{self.stage}] {self.done}/{self.total} {self.unit}{pct} | {rate:.2f}/s | eta {eta} | {elapsed:.1f}s"

    def _print(self) -> None:
        self.stream.write(self.line() + "\n")  # the stream given (stderr by default), as it is
        self.stream.flush()
        self._last_line = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.done >= self.total or time.monotonic() - self._last_line >= self.interval:
            self._print()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
