"""A deterministic synthetic crawl in Common Crawl layout that exercises the pipeline honestly.

`write_sample_crawl(out, SampleCrawlConfig(...))` writes `out/crawl-data/CC-MAIN-…/warc.paths.gz`,
gzip-per-record WARC files (warcinfo, then request / response / metadata per capture) and
`out/sample-crawl.json`, the ground truth of every capture (category, language, charset,
duplicate-of) for tests. The same seed gives byte-identical files.

Modules: `prose` (real public-domain text), `sites` (sites, URL patterns, boilerplate), `pages`
(HTML and other payloads), `warc` (Common Crawl naming and WARC records via FastWARC),
`crawl` (the plan of each dump and the writer).
"""

from dsllm.curation.samples.crawl import SampleCrawlConfig, write_sample_crawl

__all__ = ["SampleCrawlConfig", "write_sample_crawl"]
