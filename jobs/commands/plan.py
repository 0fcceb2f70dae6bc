"""DeepSeek LLM scaling-law hyperparameters for a compute budget."""

from __future__ import annotations

from jobs.commands.common import not_yet


def add_arguments(p) -> None:
    p.add_argument("args", nargs="*", help="(not implemented yet)")


def run(args) -> int:
    not_yet("plan", "issue #8")
