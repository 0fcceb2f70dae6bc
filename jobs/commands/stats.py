"""Statistics of curated or packed output or a mixture (local or S3).

Reads manifest.json, stats.json and the shards' Parquet footers plus a few small numeric columns;
document text only with --sample, shard bytes only with --verify. Shows the stage funnel, totals,
language and domain mix (natural; a mixture: natural vs target vs mixed per domain), quality and length distributions, dedup per dump,
and a per-shard table with outliers flagged; for packed output: sequences, tokens, fill, documents
per sequence and the tokenizer. Exit code 0 when every check passes, 1 when a check fails (rows,
bytes, sha256 or funnel mismatches, missing or unreadable shards), 2 on a user error.
"""

from __future__ import annotations

import argparse
import sys

from dsllm import console
from dsllm.jobs.commands.common import add_requester_pays


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path", metavar="PATH", help="curated OUT, PACKED or MIX directory (local or s3://), or its manifest.json"
    )
    p.add_argument("--json", action="store_true", help="print the numbers as JSON (stable keys) instead of tables")
    p.add_argument(
        "--html", metavar="FILE", help="also write a self-contained HTML report with charts (local or s3://)"
    )
    p.add_argument(
        "--sample", metavar="N", type=int, default=0, help="show N random documents (or sequences) with metadata"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of --sample (default 0)")
    p.add_argument(
        "--dropped",
        metavar="REASON",
        default=None,
        help="show the dropped documents curate kept (OUT/dropped/) for REASON: stage:reason, a reason, or a stage",
    )
    p.add_argument(
        "--limit", type=int, default=20, metavar="N", help="with --dropped: documents shown (default 20; 0 = all)"
    )
    p.add_argument("--verify", action="store_true", help="re-read every shard and check sha256 against the manifest")
    p.add_argument(
        "--threads", type=int, default=None, metavar="N", help="parallel shard reads (default: 8 local, 32 remote)"
    )
    add_requester_pays(p)


def run(args) -> int:
    import json

    from dsllm import storage
    from dsllm.curation.report import summarize
    from dsllm.errors import UserError

    if args.sample < 0:
        raise UserError(f"--sample {args.sample}: must be >= 0")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads}: must be >= 1")
    storage.set_requester_pays(args.requester_pays)
    if args.dropped is not None:
        return _dropped(args)
    with _progress() as progress:
        report = summarize(
            args.path, sample=args.sample, verify=args.verify, seed=args.seed, threads=args.threads, progress=progress
        )
    if args.html:
        from dsllm.curation.report.html import render_html

        storage.write_text(args.html, render_html(report))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    else:
        from dsllm.curation.report.terminal import render

        render(report)
        if args.html:
            console.out(f"HTML report: {args.html}")
    return 0 if report["checks"]["ok"] else 1


def _dropped(args) -> int:
    import json

    from dsllm.curation.report.dropped import dropped_report
    from dsllm.errors import UserError

    if args.limit < 0:
        raise UserError(f"--limit {args.limit}: must be >= 0")
    other = [flag for flag, on in (("--html", args.html), ("--sample", args.sample), ("--verify", args.verify)) if on]
    if other:
        raise UserError(
            f"--dropped shows dropped documents only; drop {', '.join(other)} (or run them without --dropped)"
        )
    report = dropped_report(args.path, args.dropped.strip(), args.limit)
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=True) + "\n")
    else:
        from dsllm.curation.report.terminal import render_dropped

        render_dropped(report)
    return 0


class _progress:
    """A transient rich progress bar on stderr when it is a terminal; silent otherwise."""

    def __enter__(self):
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self.bar = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
        return self

    def __call__(self, label: str, total: int):
        if self.bar is None:
            return None
        task = self.bar.add_task(label, total=total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
