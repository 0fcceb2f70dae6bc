"""Statistics of curated or packed output (local or S3)."""

from __future__ import annotations

from jobs.commands.common import not_yet


def add_arguments(p) -> None:
    p.add_argument("args", nargs="*", help="(not implemented yet)")


def run(args) -> int:
    not_yet("stats", "issue #5")
