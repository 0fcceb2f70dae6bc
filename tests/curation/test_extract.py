"""Charset decoding (header → meta → detection) and bounded main-content extraction."""

from __future__ import annotations

import pytest

from dsllm.curation.extract import ExtractConfig, HtmlExtractor, decode_html, python_codec
from dsllm.curation.stage import StageCounts
from dsllm.curation.warc import RawPage

ZH = "滚滚长江东逝水，浪花淘尽英雄。是非成败转头空。青山依旧在，几度夕阳红。白发渔樵江渚上，惯看秋月春风。"
ZH_TW = "滾滾長江東逝水，浪花淘盡英雄。是非成敗轉頭空。青山依舊在，幾度夕陽紅。白髮漁樵江渚上，慣看秋月春風。"
JA = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。"


def page(body: str, encoding: str, meta: str | None = None) -> bytes:
    head = f'<meta charset="{meta}">' if meta else ""
    html = f"<html><head>{head}<title>t</title></head><body><article><p>{body}</p></article></body></html>"
    return html.encode(encoding)


@pytest.mark.parametrize(
    "text,encoding,http,meta,source",
    [
        (ZH, "gbk", "GBK", None, "http"),
        (ZH, "gb18030", "gb2312", None, "http"),  # GB2312 label widened to GB18030
        (ZH_TW, "big5", None, "big5", "meta"),
        (JA, "shift_jis", None, "Shift_JIS", "meta"),
        (ZH, "gb18030", "utf-8", "gbk", "meta"),  # wrong header charset: the meta tag wins
        (ZH * 3, "gb18030", None, None, "detected"),  # no charset anywhere: detection
        (JA * 3, "shift_jis", "bogus-charset", None, "detected"),
    ],
)
def test_charset_order_decodes_cjk_pages(text, encoding, http, meta, source):
    decoded, codec, got_source, bad = decode_html(page(text, encoding, meta), http)
    assert text in decoded
    assert got_source == source and bad == 0.0


def test_codec_labels():
    assert python_codec("GB2312") == "gb18030"
    assert python_codec("big5") == "big5hkscs"
    assert python_codec("Shift_JIS") == "cp932"
    assert python_codec("iso-8859-1") == "cp1252"
    assert python_codec("no-such-charset") is None


def extract(payload: bytes, cfg: ExtractConfig | None = None, charset: str | None = "utf-8"):
    cfg = cfg or ExtractConfig()
    counts = StageCounts("extract")
    docs = list(
        HtmlExtractor(cfg, crawl="CC-MAIN-2024-10", warc_file="f.warc.gz")(
            [RawPage("<urn:uuid:1>", "https://example.com/a", payload, charset)], counts
        )
    )
    assert counts.balanced()
    return docs, counts


ARTICLE = (
    "<html><body><nav><ul><li><a href='/'>Home</a></li><li><a href='/about'>About us</a></li></ul></nav>"
    "<main><article><h1>On rivers</h1>"
    "<p>The river runs through the valley and feeds the fields of the farmers who live along its banks.</p>"
    "<p>In spring the water rises, and the whole village gathers to watch the ice break on the river.</p>"
    "</article></main><footer>Copyright 2024 Example Corp. All rights reserved.</footer>"
    "<script>var tracking = 1;</script></body></html>"
)


@pytest.mark.parametrize("extractor", ["resiliparse", "trafilatura"])
def test_main_content_extraction(extractor):
    docs, _ = extract(ARTICLE.encode(), ExtractConfig(extractor=extractor))
    (doc,) = docs
    assert "feeds the fields of the farmers" in doc.text and "ice break on the river" in doc.text
    assert "tracking" not in doc.text and "Copyright 2024" not in doc.text
    assert doc.crawl == "CC-MAIN-2024-10" and doc.url == "https://example.com/a" and len(doc.id) == 24
    assert doc.signals["charset"] == "utf-8" and doc.signals["charset_source"] == "http"


def test_invalid_utf8_and_empty_pages_are_counted():
    mostly_binary = bytes(range(128, 256)) * 40  # declared utf-8, not decodable as anything sensible
    docs, counts = extract(
        b"<html><body><p>" + mostly_binary + b"</p></body></html>", ExtractConfig(max_replacement_ratio=0.0)
    )
    assert docs == [] and counts.dropped in ({"undecodable": 1}, {"empty_text": 1})
    docs, counts = extract(b"<html><head><title>x</title></head><body><script>1</script></body></html>")
    assert docs == [] and counts.dropped == {"empty_text": 1}
    # a few invalid bytes in otherwise UTF-8 text: detection decodes it, the text survives
    docs, _ = extract(
        page("A perfectly normal sentence about rivers and valleys." * 5, "utf-8").replace(b"rivers", b"riv\xffers", 1),
        charset="utf-8",
    )
    assert len(docs) == 1 and "valleys" in docs[0].text


def test_huge_pages_are_bounded():
    big = ("<html><body>" + "<p>word after word in a very long page.</p>" * 200_000 + "</body></html>").encode()
    cfg = ExtractConfig(max_html_bytes=200_000, max_text_chars=5_000, main_content=False)
    (doc,), _ = extract(big, cfg)
    assert doc.signals["html_truncated"] is True and doc.signals["text_truncated"] is True
    assert len(doc.text) == 5_000


def test_slow_extraction_is_stopped_by_the_time_limit():
    big = ("<html><body>" + "<div><p>a paragraph of text that goes on.</p></div>" * 40_000 + "</body></html>").encode()
    docs, counts = extract(big, ExtractConfig(extractor="trafilatura", timeout_s=0.05, max_html_bytes=10_000_000))
    assert docs == [] and counts.dropped == {"timeout": 1}
