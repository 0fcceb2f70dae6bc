"""SIGTERM stops a dsllm command the way Ctrl-C does.

A scheduler, `kill` or `ray job stop` sends SIGTERM; Python's default ends the process at once
(no finally-blocks, no Ray shutdown), and `ray.init()` installs a handler of its own that exits with
status 15. `install()` turns SIGTERM into KeyboardInterrupt, so the command's clean-up runs: finished
inputs keep their markers, training writes its checkpoint, Ray shuts down; the CLI exits 130.
"""

from __future__ import annotations

import signal
import threading

_installed = False


def _raise(signum, frame):
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGTERM to KeyboardInterrupt (main thread only; a no-op elsewhere)."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)
        _installed = True


def reinstall() -> None:
    """Put the handler back after a library (ray.init) replaced it, if the command installed it."""
    if _installed:
        install()
