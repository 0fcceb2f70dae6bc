"""Write a deterministic synthetic bilingual crawl in Common Crawl layout.

OUT/crawl-data/CC-MAIN-YYYY-WW/warc.paths.gz lists gzip-per-record WARC files (warcinfo, then
request / response / metadata per capture) under OUT/crawl-data/CC-MAIN-YYYY-WW/segments/.
English and Chinese pages of many kinds of sites with boilerplate, exact and near duplicates,
low-quality pages, images, PDFs, HTTP errors, redirects, GBK / Big5 pages and malformed records.
With several --crawl names the later dumps recrawl part of the earlier ones. OUT/sample-crawl.json
is the ground truth of every capture. The same seed gives byte-identical files.
Read it with `dsllm curate cc:CC-MAIN-YYYY-WW --cc-base OUT ...` or the WARC paths directly.
"""

from __future__ import annotations

from dsllm import console

DEFAULT_CRAWL = "CC-MAIN-2024-10"


def add_arguments(p) -> None:
    p.add_argument("out", metavar="OUT", help="output directory (local path or s3://bucket/prefix)")
    p.add_argument("--warcs", type=int, default=2, metavar="N", help="WARC files per crawl (default 2)")
    p.add_argument(
        "--records",
        type=int,
        default=150,
        metavar="N",
        help="captures (request+response+metadata) per WARC file (default 150)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument(
        "--crawl",
        dest="crawls",
        action="extend",
        nargs="+",
        metavar="NAME",
        help=f"crawl name(s) CC-MAIN-YYYY-WW, oldest first (default {DEFAULT_CRAWL}); "
        "later dumps recrawl part of the earlier ones",
    )


def run(args) -> int:
    from dsllm import storage
    from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
    from dsllm.errors import UserError

    crawls = tuple(c.removeprefix("cc:") for c in (args.crawls or [DEFAULT_CRAWL]))
    try:
        cfg = SampleCrawlConfig(warcs=args.warcs, records=args.records, seed=args.seed, crawls=crawls)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    total = len(crawls) * cfg.warcs
    done = []

    def progress(path: str) -> None:
        done.append(path)
        console.out(f"[{len(done)}/{total}] {storage.join(args.out, path)}")

    summary = write_sample_crawl(args.out, cfg, progress=progress)
    for crawl, info in summary["crawls"].items():
        console.out(
            f"{crawl}: {info['captures']} captures in {len(info['warcs'])} WARC files "
            f"({storage.join(args.out, f'crawl-data/{crawl}/warc.paths.gz')})"
        )
        for key, n in info["counts"].items():
            console.out(f"  {key:<32} {n:>6}")
    recs = summary["warc_records"]
    console.out("WARC records: " + ", ".join(f"{k} {v}" for k, v in recs.items()))
    console.out(f"ground truth: {storage.join(args.out, 'sample-crawl.json')}")
    return 0
