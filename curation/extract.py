"""Charset decoding and main-content extraction, bounded in size and time per document.

Decoding order: the HTTP header charset, then the HTML `<meta charset>`, then detection
(resiliparse's uchardet wrapper); each declared charset is tried strictly and skipped if the bytes
do not decode with it. Legacy CJK charsets are widened to their supersets (GB2312/GBK → GB18030,
Big5 → Big5-HKSCS, Shift_JIS → CP932) as browsers do.

Extraction: resiliparse main-content `extract_plain_text` (default) or trafilatura. HTML is cut at
`max_html_bytes` before parsing; trafilatura is also interrupted by a timer after `timeout_s` (in the
main thread), and any document whose extraction took longer than `timeout_s` is dropped as `timeout`.

resiliparse (C code) cannot be interrupted, and its main-content mode costs about the sum over all
tags of their nesting depth (quadratic in depth: 8000 nested divs take ~1 s, a 2 MB page of them
minutes), while its plain mode is linear (≤ ~0.5 s on any 2 MB page). So before extracting, a
vectorized scan of the raw bytes estimates that sum (`nesting_cost`); a page above
`main_content_max_cost` is extracted without main-content heuristics (event
`extract_fallback_deep_nesting`, signal `main_content_fallback`). Pages with fewer than
√max_cost tags cannot exceed it and skip the scan.

Reasons (stage `extract`): undecodable, empty_text, timeout, extract_error.
Events: extract_fallback_deep_nesting.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from dsllm.curation.document import Document, document_id
from dsllm.curation.stage import Stage
from dsllm.curation.warc import RawPage

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{2,40})""", re.I)
_WIDEN = {
    "gbk": "gb18030",
    "gb2312": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "ascii": "cp1252",
    "latin_1": "cp1252",
    "iso8859-1": "cp1252",
}


@dataclasses.dataclass(frozen=True)
class ExtractConfig:
    """How HTML becomes text."""

    extractor: str = "resiliparse"  # or "trafilatura"
    main_content: bool = True  # resiliparse main-content heuristics
    max_html_bytes: int = 2_000_000  # HTML beyond this is cut before parsing
    max_text_chars: int = 500_000  # extracted text beyond this is cut (signal `text_truncated`)
    timeout_s: float = 5.0  # per document
    max_replacement_ratio: float = 0.02  # more U+FFFD than this after decoding: undecodable
    main_content_max_cost: int = 10_000_000  # estimated Σ tag depth above which main-content is skipped

    def __post_init__(self):
        if self.extractor not in ("resiliparse", "trafilatura"):
            raise ValueError(f"extractor must be 'resiliparse' or 'trafilatura', not {self.extractor!r}")
        if self.max_html_bytes <= 0 or self.max_text_chars <= 0 or self.timeout_s <= 0:
            raise ValueError("max_html_bytes, max_text_chars and timeout_s must be > 0")
        if self.main_content_max_cost <= 0:
            raise ValueError("main_content_max_cost must be > 0")


def python_codec(label: str | None) -> str | None:
    """A WHATWG/IANA charset label → the Python codec browsers would really use, or None."""
    if not label:
        return None
    import codecs

    from resiliparse.parse.encoding import map_encoding_to_html5

    name = map_encoding_to_html5(label.strip().strip("\"'").lower())
    if name == "utf-8" and label.strip().lower().replace("_", "-") not in ("utf-8", "utf8"):
        return None  # resiliparse falls back to utf-8 for unknown labels: treat as unknown
    name = _WIDEN.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_html(data: bytes, http_charset: str | None) -> tuple[str, str, str, float]:
    """Bytes → (text, codec, source, replacement_ratio); source is "http", "meta" or "detected"."""
    from resiliparse.parse.encoding import detect_encoding

    meta = _META_CHARSET.search(data[:4096])
    for source, label in (("http", http_charset), ("meta", meta.group(1).decode("ascii") if meta else None)):
        codec = python_codec(label)
        if codec:
            try:
                return _strip_bom(data.decode(codec)), codec, source, 0.0
            except UnicodeDecodeError:
                continue
    detected = detect_encoding(data, max_len=65536)
    codec = _WIDEN.get(detected, detected)
    text = _strip_bom(data.decode(codec, errors="replace"))
    bad = text.count("\ufffd")
    return text, codec, "detected", bad / max(1, len(text))


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


# Tags that never raise the nesting depth: void elements and those whose end tag the HTML parser
# implies (an unclosed <p>, <li> or <td> does not nest). They still add to the cost at their depth.
_FLAT_TAGS = (
    b"area",
    b"base",
    b"basefont",
    b"bgsound",
    b"br",
    b"col",
    b"embed",
    b"frame",
    b"hr",
    b"image",
    b"img",
    b"input",
    b"keygen",
    b"link",
    b"meta",
    b"param",
    b"source",
    b"track",
    b"wbr",
    b"p",
    b"li",
    b"dt",
    b"dd",
    b"option",
    b"optgroup",
    b"tr",
    b"td",
    b"th",
    b"thead",
    b"tbody",
    b"tfoot",
    b"colgroup",
    b"caption",
    b"rb",
    b"rt",
    b"rp",
    b"html",
    b"head",
    b"body",
)
_NAME_BYTES = 8  # tag names are compared on their first 8 bytes (packed into a uint64)
_FLAT_KEYS = np.array(
    [int.from_bytes(t[:_NAME_BYTES].ljust(_NAME_BYTES, b"\0"), "little") for t in _FLAT_TAGS], dtype=np.uint64
)


def nesting_cost(data: bytes) -> tuple[int, int]:
    """(max depth, Σ depth over all tags) of the element nesting, estimated from the raw bytes.

    Every `<name` opens and `</name` closes; each tag name keeps its own depth, clamped at 0, so stray
    end tags of another element never hide real nesting (the estimate errs high, not low). Vectorized:
    no Python loop over tags."""
    a = np.frombuffer(data, dtype=np.uint8)
    lt = np.flatnonzero(a[:-1] == 60)  # '<'
    if lt.size == 0:
        return 0, 0
    pad = np.concatenate([a, np.zeros(_NAME_BYTES + 2, np.uint8)])
    close = pad[lt + 1] == 47  # '/'
    win = pad[(lt + 1 + close)[:, None] + np.arange(_NAME_BYTES)]
    low = win | 0x20
    alpha = (low >= 97) & (low <= 122)
    in_name = np.logical_and.accumulate(alpha | ((win >= 48) & (win <= 57)) | (win == 45), axis=1)
    key = np.where(in_name, low, 0).astype(np.uint8).view("<u8").ravel()
    is_tag = alpha[:, 0]
    key, close = key[is_tag], close[is_tag]
    nests = ~np.isin(key, _FLAT_KEYS)
    if not nests.any():
        return 0, 0
    depth = np.zeros(key.size, np.int64)
    depth[np.flatnonzero(nests)] = _depth_steps(key[nests], close[nests])
    depth = np.cumsum(depth)
    return int(depth.max()), int(depth.sum())


def _depth_steps(key: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Per tag (in document order): the change of the total depth, each name's walk clamped at 0."""
    n = key.size
    _, gid = np.unique(key, return_inverse=True)
    order = np.argsort(gid, kind="stable")  # tags grouped by name, document order within a name
    g = gid.ravel()[order].astype(np.int64)
    step = np.where(close[order], -1, 1).astype(np.int64)
    first = np.ones(n, bool)
    first[1:] = g[1:] != g[:-1]
    csum = np.cumsum(step)
    start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    walk = csum - csum[start] + step[start]  # each name's open-minus-close walk
    big = 2 * n + 2  # shifts each name below the previous ones
    low = np.minimum.accumulate(walk - g * big) + g * big
    clamped = walk - np.minimum(low, 0)  # a walk reflected at 0
    prev = np.concatenate([[0], clamped[:-1]])
    out = np.empty(n, np.int64)
    out[order] = clamped - np.where(first, 0, prev)
    return out


def needs_plain_mode(data: bytes, max_cost: int) -> bool:
    """True when main-content extraction of this HTML could take too long (see `nesting_cost`)."""
    if data.count(b"<") <= math.isqrt(max_cost):  # n tags of depth ≤ n cost ≤ n²
        return False
    return nesting_cost(data)[1] > max_cost


class ExtractionTimeout(BaseException):
    """Raised by the timer; a BaseException so extractors' broad `except Exception` cannot swallow it."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ExtractionTimeout after `seconds` of Python execution (main thread only; else no timer)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise ExtractionTimeout

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def resiliparse_text(html: str, main_content: bool = True) -> str:
    """Main-content plain text with line structure kept (what the line-based filters need)."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    return extract_plain_text(
        tree,
        preserve_formatting=True,
        main_content=main_content,
        list_bullets=True,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
    )


def trafilatura_text(html: str, main_content: bool = True) -> str:
    import trafilatura

    return (
        trafilatura.extract(
            html, include_comments=False, include_tables=True, deduplicate=False, no_fallback=not main_content
        )
        or ""
    )


class HtmlExtractor(Stage):
    """Raw pages → Documents (decoded, extracted, bounded)."""

    name = "extract"

    def __init__(
        self,
        cfg: ExtractConfig = ExtractConfig(),
        crawl: Callable[[], str] | str = "",
        warc_file: str = "",
        id_base: str = "",
        domain_of: Callable[[str], str] | None = None,
    ):
        self.cfg = cfg
        self.crawl = crawl
        self.warc_file = warc_file
        self.id_base = id_base or warc_file
        self.domain_of = domain_of
        self.fn = resiliparse_text if cfg.extractor == "resiliparse" else trafilatura_text
        self.python_extractor = cfg.extractor != "resiliparse"
        self.events: Counter = Counter()
        self.last_bad = 0.0

    def outcomes(self, pages: Iterable[RawPage]) -> Iterator[tuple[Document | None, str | None]]:
        """Each page becomes a Document, or is dropped with a reason."""
        for page in pages:
            doc, reason = self.extract(page)
            yield (doc, None) if doc is not None else (page, reason)

    def deciding(self, item, reason: str) -> tuple[float | None, str | None]:
        """The share of undecodable characters of an `undecodable` page (the last page judged)."""
        return (self.last_bad, None) if reason == "undecodable" else (None, None)

    def extract(self, page: RawPage) -> tuple[Document | None, str]:
        cfg = self.cfg
        data = page.payload[: cfg.max_html_bytes]
        signals = {"html_truncated": len(page.payload) > cfg.max_html_bytes or page.warc_truncated}
        if page.kind == "text":
            text, codec, source, bad = data.decode("utf-8", errors="replace"), "utf-8", "wet", 0.0
            bad = text.count("\ufffd") / max(1, len(text))
        else:
            text, codec, source, bad = decode_html(data, page.http_charset)
        if bad > cfg.max_replacement_ratio:
            self.last_bad = round(bad, 4)
            return None, "undecodable"
        if page.kind == "html":
            main_content = cfg.main_content
            if main_content and not self.python_extractor and needs_plain_mode(data, cfg.main_content_max_cost):
                main_content, signals["main_content_fallback"] = False, True
                self.events["extract_fallback_deep_nesting"] += 1
            start = time.perf_counter()
            try:
                if self.python_extractor:
                    with _time_limit(cfg.timeout_s):
                        text = self.fn(text, main_content)
                else:
                    text = self.fn(text, main_content)
            except ExtractionTimeout:
                return None, "timeout"
            except Exception:  # noqa: BLE001 - a parser failure on one page is counted, not fatal
                return None, "extract_error"
            if time.perf_counter() - start > cfg.timeout_s:
                return None, "timeout"
        text = text.strip()
        if not text:
            return None, "empty_text"
        if len(text) > cfg.max_text_chars:
            text, signals["text_truncated"] = text[: cfg.max_text_chars], True
        signals.update(charset=codec, charset_source=source)
        crawl = self.crawl() if callable(self.crawl) else self.crawl
        domain = self.domain_of(page.url) if self.domain_of else ""
        return Document(
            id=document_id(self.id_base, page.record_id),
            text=text,
            url=page.url,
            crawl=crawl,
            warc_file=self.warc_file,
            domain=domain,
            signals=signals,
        ), ""
