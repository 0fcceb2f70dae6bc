"""Per-document time bound of resiliparse: deeply nested pages fall back to plain extraction."""

from __future__ import annotations

import gzip
import random
import time

from dsllm.curation.config import CurateConfig
from dsllm.curation.extract import ExtractConfig, needs_plain_mode, nesting_cost
from dsllm.curation.pipeline import process_input
from dsllm.curation.sources import InputSpec
from tests.curation.test_extract import ARTICLE, extract
from tests.curation.test_reading import http_response, warc_record


def reference_cost(html: bytes) -> tuple[int, int]:
    """The definition of `nesting_cost`, one tag at a time."""
    import re

    from dsllm.curation.extract import _FLAT_TAGS

    depth, per_name, best, total = 0, {}, 0, 0
    for m in re.finditer(rb"<(/?)([A-Za-z][A-Za-z0-9-]*)", html):
        name = m.group(2).lower()[:8]
        if name not in {t[:8] for t in _FLAT_TAGS}:
            before = per_name.get(name, 0)
            per_name[name] = max(0, before + (-1 if m.group(1) else 1))
            depth += per_name[name] - before
        best, total = max(best, depth), total + depth
    return best, total


def test_nesting_cost_matches_its_definition():
    rng = random.Random(3)
    pieces = [
        "<div>",
        "</div>",
        "<span class=x>",
        "</SPAN>",
        "<p>",
        "</p>",
        "<br>",
        "<img src=a>",
        "<DIV>",
        "text",
        "<!-- c -->",
        "< 3",
        "<custom-el>",
        "</custom-el>",
        "</b>",
        "<b>",
        "<li>",
        "<ul>",
        "</ul>",
    ]
    for _ in range(200):
        html = "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 300))).encode()
        assert nesting_cost(html) == reference_cost(html), html
    assert nesting_cost(b"<div>" * 3 + b"</div>" * 3) == (3, 1 + 2 + 3 + 2 + 1 + 0)
    assert nesting_cost(b"</div>" * 5 + b"<div>" * 5)[0] == 5  # stray end tags do not hide nesting
    assert nesting_cost(b"<div></span>" * 50)[0] == 50  # nor do end tags of other elements
    assert nesting_cost(b"<p>a<p>b<br><img>" * 100)[0] == 0  # implied ends and void elements
    assert nesting_cost(b"no tags at all") == (0, 0)


def nested(depth: int) -> bytes:
    return b"<html><body>" + b"<div>" * depth + b"<p>deep text here</p>" + b"</div>" * depth + b"</body></html>"


def test_deep_nesting_falls_back_to_plain_extraction_and_normal_pages_do_not():
    cfg = ExtractConfig()
    assert not needs_plain_mode(ARTICLE.encode(), cfg.main_content_max_cost)
    assert needs_plain_mode(nested(20_000), cfg.main_content_max_cost)
    docs, counts = extract(ARTICLE.encode())
    assert "main_content_fallback" not in docs[0].signals and "Home" not in docs[0].text  # main content
    docs, counts = extract(nested(50_000))  # 550 KB: minutes in main-content mode
    assert docs[0].text == "deep text here" and docs[0].signals["main_content_fallback"] is True


def test_two_megabyte_nested_page_goes_through_the_pipeline(tmp_path):
    body = nested(190_000)  # cut at max_html_bytes (2 MB) before extraction
    assert len(body) > 2_000_000
    records = [
        warc_record(http_response(body), url="https://deep.example.com/", n=1),
        warc_record(http_response(ARTICLE.encode()), url="https://fine.example.com/", n=2),
        warc_record(http_response(b"<html><body>" + b"<div>" * 4_000_000), url="https://x.example.com/", n=3),
    ]
    warc = tmp_path / "deep.warc.gz"
    warc.write_bytes(b"".join(gzip.compress(r, 1) for r in records))
    start = time.perf_counter()
    result = process_input(InputSpec(str(warc), crawl="CC-MAIN-2024-10"), CurateConfig(), str(tmp_path / "out"))
    seconds = time.perf_counter() - start
    counts = {c["name"]: c for c in result["counts"]}
    assert counts["read"]["out"] == 2 and counts["read"]["dropped"] == {"payload_too_large": 1}  # 20 MB page
    assert counts["extract"]["in"] == 2 and counts["extract"]["events"] == {"extract_fallback_deep_nesting": 1}
    assert seconds < 60, seconds  # without the fallback the 2 MB page alone takes many minutes
