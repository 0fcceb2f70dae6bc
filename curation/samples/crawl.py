"""Plans and writes the sample crawl: which captures each dump holds (good pages, duplicates,
near duplicates, recrawls of the previous dump, low-quality pages, non-HTML records, HTTP
errors, legacy charsets, malformed records), renders them and writes WARCs + ground truth."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import gzip
import random

from dsllm import storage
from dsllm.curation.samples import pages, prose
from dsllm.curation.samples.sites import SITES, SPAM_HOSTS, Site
from dsllm.curation.samples.warc import CCWarcWriter, cld2_metadata, crawl_start, http_date, http_message, warc_path

MIN_CAPTURES = 40

# (category, lang, charset, declared-in, fraction of a dump's captures); each appears at least once
SPECIAL = [
    ("exact_duplicate", "en", None, None, 0.03),
    ("exact_duplicate", "zh", None, None, 0.02),
    ("near_duplicate", "en", None, None, 0.03),
    ("near_duplicate", "zh", None, None, 0.02),
    ("good", "zh", "gbk", "header", 0.01),
    ("good", "zh", "gbk", "meta", 0.01),
    ("good", "zh", "big5", "header", 0.01),
    ("good", "zh", "big5", "meta", 0.01),
    ("spam_keywords", "en", None, None, 0.01),
    ("spam_keywords", "zh", None, None, 0.01),
    ("lorem_ipsum", "en", None, None, 0.01),
    ("link_farm", "en", None, None, 0.01),
    ("link_farm", "zh", None, None, 0.005),
    ("short", "en", None, None, 0.01),
    ("short", "zh", None, None, 0.01),
    ("image", "en", None, None, 0.015),
    ("pdf", "en", None, None, 0.015),
    ("http_404", "en", None, None, 0.01),
    ("http_404", "zh", None, None, 0.005),
    ("http_500", "en", None, None, 0.01),
    ("redirect", "en", None, None, 0.01),
    ("redirect", "zh", None, None, 0.01),
    ("malformed_http_header", "en", None, None, 0.007),
    ("binary_as_html", "en", None, None, 0.007),
    ("empty_payload", "en", None, None, 0.007),
]
RECRAWL_FRACTION = 0.2  # of a later dump's captures: pages of the previous dump fetched again
NEAR_EDIT_RATE = 0.03


@dataclasses.dataclass(frozen=True)
class SampleCrawlConfig:
    """Size and seed of a sample crawl. `records` counts captures (HTTP fetches) per WARC file;
    each capture is a request, a response and a metadata record, plus one warcinfo per file."""

    warcs: int = 2
    records: int = 150
    seed: int = 0
    crawls: tuple[str, ...] = ("CC-MAIN-2024-10",)

    def __post_init__(self):
        if self.warcs < 1 or self.records < 1:
            raise ValueError("warcs and records must be at least 1")
        if self.warcs * self.records < MIN_CAPTURES:
            raise ValueError(
                f"warcs × records must be at least {MIN_CAPTURES} so every kind of record appears "
                f"(got {self.warcs} × {self.records})"
            )
        if not self.crawls or len(set(self.crawls)) != len(self.crawls):
            raise ValueError("crawl names must be given and distinct")
        for c in self.crawls:
            crawl_start(c)


@dataclasses.dataclass
class Capture:
    """One planned fetch: what it is (ground truth) and the bytes of its HTTP response."""

    category: str
    lang: str
    url: str = ""
    response: bytes = b""
    payload_type: str | None = "text/html"
    charset: str | None = None
    charset_declared: str | None = None
    status: int = 200
    dup_of: int | None = None  # index (into all captures) of the original
    dup_scope: str | None = None
    jaccard: float | None = None
    # kept for good pages so they can be duplicated or recrawled
    site: Site | None = None
    title: str = ""
    paragraphs: list[str] = dataclasses.field(default_factory=list)
    html_body: bytes = b""
    index: int = -1
    crawl: str = ""
    record_id: str = ""
    warc: str = ""


def _n(frac: float, total: int) -> int:
    return max(1, round(frac * total))


def _response(status: int, reason: str, ctype: str | None, body: bytes, when, rng, extra=()) -> bytes:
    headers = [
        ("Date", http_date(when)),
        ("Server", rng.choice(["nginx", "Apache", "cloudflare", "openresty", "Tengine"])),
    ]
    if ctype:
        headers.append(("Content-Type", ctype))
    if body and rng.random() < 0.5:
        headers.append(("X-Crawler-Content-Encoding", "gzip"))  # CC stores bodies decoded
    headers += list(extra) + [("Cache-Control", "max-age=600"), ("Content-Length", str(len(body)))]
    return http_message(f"HTTP/1.1 {status} {reason}", headers, body)


class CrawlPlanner:
    """Deterministic content of every dump; dumps after the first recrawl part of the previous one."""

    def __init__(self, cfg: SampleCrawlConfig):
        self.cfg = cfg
        self.prose = prose.ProseAllocator(cfg.seed)
        self.captures: list[Capture] = []
        self._site_cycle: dict[tuple[str, str], list[Site]] = {}

    def _next_site(self, lang: str, charset: str, rng) -> Site:
        """Sites in shuffled rounds, so every site appears once there are enough pages."""
        cycle = self._site_cycle.setdefault((lang, charset), [])
        if not cycle:
            cycle.extend(s for s in SITES if s.lang == lang and s.charset == charset)
            rng.shuffle(cycle)
        return cycle.pop()

    def _add(self, cap: Capture) -> Capture:
        cap.index = len(self.captures)
        self.captures.append(cap)
        return cap

    def _page(self, site: Site, title: str, paragraphs: list[str], rng, when, declared: str) -> bytes:
        meta = None if declared == "header" else site.charset
        html = pages.render_article(site, title, paragraphs, rng, when, meta_charset=meta)
        if site.charset == "big5":  # Taiwan / Hong Kong sites: traditional script throughout
            html = prose.traditional(html)
        return html.encode(site.charset, errors="xmlcharrefreplace")

    def _ctype(self, site: Site, declared: str) -> str:
        return (
            "text/html"
            if declared == "meta"
            else f"text/html; charset={site.charset.upper() if site.charset != 'utf-8' else 'UTF-8'}"
        )

    def good(self, lang: str, charset: str, declared: str, rng, published) -> Capture:
        site = self._next_site(lang, charset, rng)
        paras = self.prose.take(lang)
        if charset == "big5":
            paras = [prose.traditional(p) for p in paras]
        title = prose.title_of(lang, paras)
        body = self._page(site, title, paras, rng, published, declared)
        return Capture(
            "good",
            lang,
            site.url(title, rng, published),
            charset=charset,
            charset_declared=declared,
            site=site,
            title=title,
            paragraphs=paras,
            html_body=body,
        )

    def copy_of(self, src: Capture, near: bool, scope: str, rng, published) -> Capture:
        """An exact or near duplicate of `src`: a recrawl (same URL) or another URL of the same page."""
        site, url = src.site, src.url
        if scope == "within_dump":
            if near:  # syndicated to another site of the same kind
                others = [s for s in SITES if s.lang == src.lang and s.charset == site.charset and s != site]
                site = rng.choice([s for s in others if s.kind == site.kind] or others)
                url = site.url(src.title, rng, published)
            else:  # the same bytes under another URL of the same page
                url = rng.choice(
                    [
                        src.url + ("&" if "?" in src.url else "?") + "utm_source=twitter&utm_medium=social",
                        src.url.replace("https://", "http://", 1),
                        src.url.replace("://www.", "://m.", 1) if "://www." in src.url else src.url + "#comments",
                    ]
                )
        cap = Capture(
            "near_duplicate" if near else "exact_duplicate",
            src.lang,
            url,
            charset=src.charset,
            charset_declared=src.charset_declared,
            dup_of=src.index,
            dup_scope=scope,
            site=site,
            title=src.title,
        )
        if near:
            cap.paragraphs = prose.edit_text(src.lang, src.paragraphs, NEAR_EDIT_RATE, rng)
            cap.html_body = self._page(site, src.title, cap.paragraphs, rng, published, src.charset_declared)
            sep = " " if src.lang == "en" else ""
            cap.jaccard = round(prose.shingle_jaccard(src.lang, sep.join(src.paragraphs), sep.join(cap.paragraphs)), 4)
        else:
            cap.paragraphs, cap.html_body = src.paragraphs, src.html_body
        return cap

    def special(self, category: str, lang: str, rng, published) -> Capture:
        if category in ("spam_keywords", "lorem_ipsum", "link_farm", "short"):
            if category == "spam_keywords":
                title, html = pages.spam_page(lang, rng)
            elif category == "lorem_ipsum":
                title, html = pages.lorem_page(rng)
            elif category == "link_farm":
                title, html = pages.link_farm_page(lang, rng)
            else:
                title, html = pages.short_page(lang, rng)
            host = rng.choice(SPAM_HOSTS) if category != "short" else f"www.site{rng.randrange(10**4)}.com"
            return Capture(
                category,
                lang,
                f"https://{host}/{rng.getrandbits(32):08x}.html",
                charset="utf-8",
                html_body=html.encode("utf-8"),
                title=title,
            )
        site = rng.choice([s for s in SITES if s.lang == lang and s.charset == "utf-8"])
        url = site.url(f"page {rng.randrange(10**6)}", rng, published)
        return Capture(category, lang, url, site=site)

    def plan_dump(self, k: int, crawl: str) -> list[Capture]:
        """All captures of dump `k` (in WARC order)."""
        cfg, total = self.cfg, self.cfg.warcs * self.cfg.records
        rng = random.Random(f"{cfg.seed}:{crawl}:plan")
        start = crawl_start(crawl)
        published = lambda: start - dt.timedelta(days=rng.randrange(1, 400))  # noqa: E731
        specials = [(c, lang, cs, d) for c, lang, cs, d, f in SPECIAL for _ in range(_n(f, total))]
        prev_good = (
            [
                c
                for c in self.captures
                if c.category in ("good",) and c.dup_scope is None and c.crawl == cfg.crawls[k - 1]
            ]
            if k
            else []
        )
        n_recrawl = min(len(prev_good), round(RECRAWL_FRACTION * total)) if k else 0
        n_good = total - len(specials) - n_recrawl
        if n_good < 4:
            raise ValueError("sample crawl too small for its special records")
        dump: list[Capture] = []
        for i in range(n_good):
            lang = "en" if rng.random() < 0.6 else "zh"
            dump.append(
                self._add(self.good(lang, "utf-8", rng.choice(["both", "both", "header", "meta"]), rng, published()))
            )
        for c, lang, cs, d in specials:
            if c == "good":
                dump.append(self._add(self.good(lang, cs, d, rng, published())))
        originals = [c for c in dump if c.category == "good" and c.charset == "utf-8"]
        for src in rng.sample(prev_good, n_recrawl):
            dump.append(self._add(self.copy_of(src, rng.random() < 1 / 3, "across_dumps", rng, published())))
        for c, lang, cs, d in specials:
            if c in ("exact_duplicate", "near_duplicate"):
                src = rng.choice([o for o in originals if o.lang == lang])
                dump.append(self._add(self.copy_of(src, c == "near_duplicate", "within_dump", rng, published())))
            elif c != "good":
                dump.append(self._add(self.special(c, lang, rng, published())))
        for cap in dump:
            cap.crawl = crawl
        rng.shuffle(dump)
        return dump


def respond(cap: Capture, when: dt.datetime, rng: random.Random) -> bytes:
    """The HTTP response block of a capture, fetched at `when` (sets url/payload type where needed)."""
    c = cap.category
    if cap.html_body:
        if cap.charset_declared == "meta":
            ctype = "text/html"
        else:
            ctype = f"text/html; charset={'UTF-8' if cap.charset == 'utf-8' else cap.charset.upper()}"
        return _response(200, "OK", ctype, cap.html_body, when, rng)
    if c == "image":
        cap.url = (
            f"https://upload.wikimedia.org/wikipedia/commons/{rng.getrandbits(12):03x}/Photo_{rng.randrange(10**6)}.jpg"
        )
        cap.payload_type = "image/jpeg"
        return _response(200, "OK", "image/jpeg", pages.jpeg_bytes(rng), when, rng)
    if c == "pdf":
        cap.url = f"https://arxiv.org/pdf/2402.{rng.randrange(10**4, 10**5)}v1"
        cap.payload_type = "application/pdf"
        return _response(200, "OK", "application/pdf", pages.pdf_bytes("Sample paper"), when, rng)
    if c in ("http_404", "http_500"):
        cap.status = int(c[-3:])
        reason = "Not Found" if cap.status == 404 else "Internal Server Error"
        return _response(cap.status, reason, "text/html", pages.error_page(cap.status, cap.lang).encode(), when, rng)
    if c == "redirect":
        cap.status = 301
        target = cap.url.rstrip("/") + "/" if not cap.url.endswith("/") else cap.url + "index.html"
        return _response(
            301,
            "Moved Permanently",
            "text/html",
            pages.error_page(301, cap.lang).encode(),
            when,
            rng,
            extra=[("Location", target)],
        )
    if c == "malformed_http_header":  # no status code, a header line without a colon, no blank line
        cap.payload_type = None
        return (
            b"HTTP/1.1 OK\r\nServer nginx\r\nContent-Type: text/html\r\n"
            b"<html><body><p>Headers never ended properly.</p></body></html>"
        )
    if c == "binary_as_html":
        cap.payload_type = "application/octet-stream"
        return _response(200, "OK", "text/html; charset=utf-8", rng.randbytes(rng.randrange(1024, 4096)), when, rng)
    if c == "empty_payload":
        cap.payload_type = None
        return _response(200, "OK", "text/html", b"", when, rng)
    raise AssertionError(f"unknown capture category {c}")


def _truth(cap: Capture, captures: list[Capture]) -> dict:
    src = captures[cap.dup_of] if cap.dup_of is not None else None
    return {
        "crawl": cap.crawl,
        "warc": cap.warc,
        "record_id": cap.record_id,
        "url": cap.url,
        "category": cap.category,
        "lang": cap.lang,
        "kind": cap.site.kind if cap.site else None,
        "status": cap.status,
        "payload_type": cap.payload_type,
        "charset": cap.charset,
        "charset_declared": cap.charset_declared,
        "dup_of": src.record_id if src else None,
        "dup_of_warc": src.warc if src else None,
        "dup_scope": cap.dup_scope,
        "jaccard": cap.jaccard,
    }


def write_sample_crawl(out: str, cfg: SampleCrawlConfig, progress=None) -> dict:
    """Write every dump of the sample crawl under `out` (local or s3://) in Common Crawl layout,
    plus `out/sample-crawl.json` (ground truth per capture). Returns the summary."""
    planner = CrawlPlanner(cfg)
    dumps = [(crawl, planner.plan_dump(k, crawl)) for k, crawl in enumerate(cfg.crawls)]
    summary: dict = {"crawls": {}, "warc_records": collections.Counter()}
    for crawl, dump in dumps:
        paths = []
        for w in range(cfg.warcs):
            path = warc_path(crawl, w)
            rng = random.Random(f"{cfg.seed}:{crawl}:{w}:warc")
            writer = CCWarcWriter(crawl, path, rng)
            t = crawl_start(crawl) + dt.timedelta(hours=21 + w, minutes=11)
            writer.warcinfo(t)
            for cap in dump[w * cfg.records : (w + 1) * cfg.records]:
                t += dt.timedelta(seconds=rng.randrange(1, 40))
                response = respond(cap, t, rng)
                text_bytes = sum(len(p.encode()) for p in cap.paragraphs)
                meta = cld2_metadata(
                    cap.lang if cap.html_body else "", text_bytes, cap.charset or "UTF-8", rng.randrange(30, 2000)
                )
                cap.warc = path
                cap.record_id = writer.capture(cap.url, t, response, cap.payload_type, cap.lang, meta)
            storage.write_bytes(storage.join(out, path), writer.getvalue())
            summary["warc_records"]["warcinfo"] += 1
            for rtype in ("request", "response", "metadata"):
                summary["warc_records"][rtype] += min(cfg.records, max(0, len(dump) - w * cfg.records))
            paths.append(path)
            if progress:
                progress(path)
        listing = "".join(p + "\n" for p in paths).encode()
        storage.write_bytes(storage.join(out, f"crawl-data/{crawl}/warc.paths.gz"), gzip.compress(listing, mtime=0))
        counts = collections.Counter(f"{c.category}/{c.lang}" for c in dump)
        counts.update(f"charset/{c.charset}-{c.charset_declared}" for c in dump if c.charset in ("gbk", "big5"))
        counts.update(
            f"cross_dump/{'near' if c.category == 'near_duplicate' else 'exact'}"
            for c in dump
            if c.dup_scope == "across_dumps"
        )
        summary["crawls"][crawl] = {"warcs": paths, "captures": len(dump), "counts": dict(sorted(counts.items()))}
    summary["warc_records"] = dict(summary["warc_records"])
    truth = {
        "kind": "sample-crawl",
        "seed": cfg.seed,
        "warcs": cfg.warcs,
        "records": cfg.records,
        "crawls": list(cfg.crawls),
        "summary": summary,
        "captures": [_truth(c, planner.captures) for _, dump in dumps for c in dump],
    }
    storage.write_json(storage.join(out, "sample-crawl.json"), truth)
    return summary
