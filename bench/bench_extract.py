"""HTML → text documents per second per core: resiliparse (ours, with charset decoding) against
trafilatura on the same records, in CPU seconds of this process (one core). Prints a markdown table
row (medians over --repeats runs).

    python bench/bench_extract.py [--records 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsllm.curation.extract import ExtractConfig, HtmlExtractor  # noqa: E402
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl  # noqa: E402
from dsllm.curation.sources import resolve_inputs  # noqa: E402
from dsllm.curation.stage import StageCounts  # noqa: E402
from dsllm.curation.warc import WarcReader  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "warc"


def html_pages(paths: list[str]) -> list:
    pages = []
    for p in paths:
        with open(p, "rb") as f:
            pages += [pg for pg in WarcReader()(f, StageCounts("read")) if pg.kind == "html"]
    return pages


def docs_per_second(pages, extractor: str) -> float:
    ex = HtmlExtractor(ExtractConfig(extractor=extractor, timeout_s=60))
    start = time.process_time()
    n = sum(1 for _ in ex(iter(pages), StageCounts("extract")))
    assert n > 0
    return len(pages) / (time.process_time() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_sample_crawl(tmp, SampleCrawlConfig(warcs=1, records=args.records, seed=7))
        paths = [s.uri for s in resolve_inputs([tmp])] + [
            str(p) for p in SHARED.glob("*.warc.gz") if "wet" not in p.name
        ]
        pages = html_pages(paths)
    ours = statistics.median(docs_per_second(pages, "resiliparse") for _ in range(args.repeats))
    anchor = statistics.median(docs_per_second(pages, "trafilatura") for _ in range(args.repeats))
    print("| HTML records | resiliparse docs/s/core (ours) | trafilatura docs/s/core | speed-up |")
    print("|---|---|---|---|")
    print(f"| {len(pages)} (sample crawl + real CC excerpts) | {ours:.0f} | {anchor:.1f} | {ours / anchor:.1f}× |")


if __name__ == "__main__":
    main()
