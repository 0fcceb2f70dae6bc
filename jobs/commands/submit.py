"""Submit curate / tokenizer / pack / train as a Ray job to a cluster."""

from __future__ import annotations

from jobs.commands.common import not_yet


def add_arguments(p) -> None:
    p.add_argument("args", nargs="*", help="(not implemented yet)")


def run(args) -> int:
    not_yet("submit", "issue #10")
