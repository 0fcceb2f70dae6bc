"""Tokenize curated shards and pack fixed-length sequences joined with EOS."""

from __future__ import annotations

from jobs.commands.common import not_yet


def add_arguments(p) -> None:
    p.add_argument("args", nargs="*", help="(not implemented yet)")


def run(args) -> int:
    not_yet("pack", "issue #7")
