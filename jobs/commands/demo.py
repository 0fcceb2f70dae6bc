"""Run the whole pipeline on a generated sample crawl: sample-crawl → curate → stats → tokenizer → pack → train."""

from __future__ import annotations

from jobs.commands.common import not_yet


def add_arguments(p) -> None:
    p.add_argument("args", nargs="*", help="(not implemented yet)")


def run(args) -> int:
    not_yet("demo", "issue #2")
