"""WARC files exactly as Common Crawl writes them: WARC/1.0, one gzip member per record, a
warcinfo record first, then request, response and metadata records per capture, with
WARC-Record-ID, WARC-Date, WARC-Target-URI, WARC-IP-Address, WARC-Concurrent-To,
WARC-Warcinfo-ID, SHA-1 block and payload digests and WARC-Identified-Payload-Type.

Records are built and serialized with FastWARC's own writer (`WarcRecord.write` into a
`GzipWriter` per record); only header values (dates, ids, digests) are set here so that the
same seed gives byte-identical files.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import random
import re
import urllib.parse
import uuid

from dsllm.errors import UserError

CRAWL_RE = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")
USER_AGENT = "CCBot/2.0 (https://commoncrawl.org/faq/)"


def crawl_start(crawl: str) -> dt.datetime:
    """Monday 00:00 UTC of the ISO week a crawl is named after (CC-MAIN-YYYY-WW)."""
    m = CRAWL_RE.match(crawl)
    if not m:
        raise UserError(f"crawl name {crawl!r}: expected CC-MAIN-YYYY-WW, e.g. CC-MAIN-2024-10")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        day = dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        raise UserError(f"crawl name {crawl!r}: week {week} does not exist in {year}") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def warc_path(crawl: str, index: int, per_segment: int = 2) -> str:
    """Relative path of WARC number `index` of a crawl, in Common Crawl's layout."""
    start = crawl_start(crawl)
    seg = index // per_segment
    seg_ms = int(start.timestamp() * 1000) + 3_600_000 * seg + 347
    t0 = start + dt.timedelta(hours=21, minutes=10, seconds=55) + dt.timedelta(hours=seg)
    t1 = t0 + dt.timedelta(hours=3)
    name = f"CC-MAIN-{t0:%Y%m%d%H%M%S}-{t1:%Y%m%d%H%M%S}-{index:05d}.warc.gz"
    return f"crawl-data/{crawl}/segments/{seg_ms}.{seg}/warc/{name}"


def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def http_message(start_line: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = start_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1", "replace") + body


def http_date(when: dt.datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S GMT")


def warc_date(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class CCWarcWriter:
    """Builds one gzip-per-record WARC file in memory (`.getvalue()`)."""

    def __init__(self, crawl: str, filename: str, rng: random.Random):
        self.crawl = crawl
        self.filename = filename
        self.rng = rng
        self.buf = io.BytesIO()
        self.records = 0
        self.warcinfo_id = self._urn()

    def _urn(self) -> str:
        return f"<urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}>"

    def _write(self, rtype, when: dt.datetime, urn: str, headers: list[tuple[str, str]], block: bytes) -> None:
        from fastwarc.stream_io import GzipWriter
        from fastwarc.warc import WarcRecord, WarcRecordType

        rec = WarcRecord()
        rec.init_headers(getattr(WarcRecordType, rtype), urn[len("<urn:") : -1].encode())
        rec.headers.status_line = "WARC/1.0"
        rec.headers.set("WARC-Date", warc_date(when))
        rec.set_bytes_content(block)  # sets Content-Length
        for k, v in headers:
            rec.headers.append(k, v)
        gz = GzipWriter(self.buf)
        rec.write(gz)
        gz.finish()
        self.records += 1

    def warcinfo(self, when: dt.datetime) -> None:
        month = crawl_start(self.crawl).strftime("%B %Y")
        fields = (
            f"isPartOf: {self.crawl}\r\npublisher: Common Crawl\r\n"
            f"description: Wide crawl of the web for {month}\r\n"
            "operator: Common Crawl Admin (info@commoncrawl.org)\r\n"
            f"hostname: ip-10-67-{self.rng.randrange(256)}-{self.rng.randrange(256)}\r\n"
            "software: Apache Nutch 1.19 (modified, https://github.com/commoncrawl/nutch/)\r\n"
            "robots: checked via crawler-commons 1.5-SNAPSHOT (https://github.com/crawler-commons/crawler-commons)\r\n"
            "format: WARC File Format 1.1\r\n"
            "conformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\n"
        ).encode()
        self._write(
            "warcinfo",
            when,
            self.warcinfo_id,
            [
                ("Content-Type", "application/warc-fields"),
                ("WARC-Filename", self.filename.rsplit("/", 1)[-1]),
                ("WARC-Block-Digest", sha1_b32(fields)),
            ],
            fields,
        )

    def capture(
        self,
        url: str,
        when: dt.datetime,
        response: bytes,
        payload_type: str | None,
        lang_hint: str,
        metadata: dict[str, str],
    ) -> str:
        """request + response + metadata records of one fetch; returns the response's WARC-Record-ID."""
        parts = urllib.parse.urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        accept_lang = "en-US,en;q=0.5" if lang_hint == "en" else "zh-CN,zh;q=0.9,en;q=0.5"
        request = http_message(
            f"GET {path or '/'} HTTP/1.1",
            [
                ("User-Agent", USER_AGENT),
                ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                ("Accept-Language", accept_lang),
                ("Accept-Encoding", "br,gzip"),
                ("Host", parts.netloc),
                ("Connection", "Keep-Alive"),
            ],
            b"",
        )
        ip = f"{self.rng.randrange(1, 224)}.{self.rng.randrange(256)}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"
        req_id, resp_id, meta_id = self._urn(), self._urn(), self._urn()
        common = [("WARC-Warcinfo-ID", self.warcinfo_id)]
        self._write(
            "request",
            when,
            req_id,
            [
                ("Content-Type", "application/http; msgtype=request"),
                *common,
                ("WARC-IP-Address", ip),
                ("WARC-Target-URI", url),
                ("WARC-Payload-Digest", sha1_b32(b"")),
                ("WARC-Block-Digest", sha1_b32(request)),
            ],
            request,
        )
        head_end = response.find(b"\r\n\r\n")
        payload = response[head_end + 4 :] if head_end >= 0 else b""
        headers = [
            ("Content-Type", "application/http; msgtype=response"),
            *common,
            ("WARC-Concurrent-To", req_id),
            ("WARC-IP-Address", ip),
            ("WARC-Target-URI", url),
            ("WARC-Payload-Digest", sha1_b32(payload)),
            ("WARC-Block-Digest", sha1_b32(response)),
        ]
        if payload_type:
            headers.append(("WARC-Identified-Payload-Type", payload_type))
        self._write("response", when, resp_id, headers, response)
        meta = "".join(f"{k}: {v}\r\n" for k, v in metadata.items()).encode()
        self._write(
            "metadata",
            when,
            meta_id,
            [
                ("Content-Type", "application/warc-fields"),
                *common,
                ("WARC-Concurrent-To", resp_id),
                ("WARC-Target-URI", url),
                ("WARC-Payload-Digest", sha1_b32(meta)),
                ("WARC-Block-Digest", sha1_b32(meta)),
            ],
            meta,
        )
        return resp_id

    def getvalue(self) -> bytes:
        return self.buf.getvalue()


def cld2_metadata(lang: str, n_bytes: int, charset: str, fetch_ms: int) -> dict[str, str]:
    """The metadata record fields Common Crawl writes (fetch time, detected charset, CLD2 languages)."""
    name, code3 = {"en": ("ENGLISH", "eng"), "zh": ("Chinese", "zho")}.get(lang, ("Unknown", "und"))
    langs = {
        "reliable": True,
        "text-bytes": n_bytes,
        "languages": [{"code": lang, "code-iso-639-3": code3, "text-covered": 0.97, "score": 980.0, "name": name}],
    }
    out = {"fetchTimeMs": str(fetch_ms), "charset-detected": charset.upper()}
    if lang in ("en", "zh"):
        out["languages-cld2"] = json.dumps(langs, separators=(",", ":"))
    return out
