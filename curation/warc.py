"""FastWARC reading: a WARC (or WET) stream → raw pages, every other record counted under a reason.

Kept: `response` records with HTTP 200 and an HTML payload (by WARC-Identified-Payload-Type, else
the HTTP Content-Type), and WET `conversion` records (already plain text). The stream is read
record by record; payloads above `max_payload_bytes` are skipped without being held in memory.

Reasons (stage `read`): record_warcinfo, record_request, record_metadata, record_revisit,
record_resource, record_other (unknown or broken WARC header), bad_http_header, http_not_200,
not_html, empty_payload, payload_too_large, truncated_record, binary_payload, corrupt_gzip,
invalid_warc, read_error.
"""

from __future__ import annotations

import dataclasses
from typing import IO, Iterator

from curation.stage import StageCounts

_TYPE_REASONS = {"warcinfo": "record_warcinfo", "request": "record_request", "metadata": "record_metadata",
                 "revisit": "record_revisit", "resource": "record_resource"}


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """What the reader keeps."""

    html_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    max_payload_bytes: int = 10_000_000   # larger payloads are skipped unread (payload_too_large)
    binary_probe_bytes: int = 2048        # NUL bytes in this prefix mark a binary payload
    wet: bool = True                      # keep WET conversion records (plain text)

    def __post_init__(self):
        if self.max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be > 0")
        if not self.html_types:
            raise ValueError("html_types must not be empty")


@dataclasses.dataclass
class RawPage:
    """One kept record: the payload bytes and what the headers say about them."""

    record_id: str
    url: str
    payload: bytes
    http_charset: str | None = None
    kind: str = "html"          # "html" or "text" (WET)
    warc_truncated: bool = False


class WarcReader:
    """Reads one WARC/WET stream. After iteration, `crawl` holds the warcinfo's isPartOf (if any)."""

    name = "read"

    def __init__(self, cfg: ReadConfig = ReadConfig()):
        self.cfg = cfg
        self.crawl = ""
        self.records = 0

    def __call__(self, stream: IO[bytes], counts: StageCounts) -> Iterator[RawPage]:
        from fastwarc.warc import ArchiveIterator

        it = iter(ArchiveIterator(stream, parse_http=True, fsspec_args=False))
        while True:
            try:
                record = next(it)
            except StopIteration:
                return
            except OSError as exc:
                # the rest of the stream is unreadable: count it once and stop this input
                counts.n_in += 1
                self.records += 1
                counts.drop(_stream_error_reason(exc))
                return
            counts.n_in += 1
            self.records += 1
            page, reason = self._page(record)
            if page is None:
                counts.drop(reason)
            else:
                counts.n_out += 1
                yield page

    def _page(self, record) -> tuple[RawPage | None, str]:
        rtype = str(record.record_type)
        if rtype == "warcinfo":
            self._read_warcinfo(record)
        if rtype == "conversion" and self.cfg.wet:
            return self._payload(record, kind="text")
        if rtype != "response":
            return None, _TYPE_REASONS.get(rtype, "record_other")
        http = record.http_headers
        if not record.is_http or http is None or http.status_code is None:
            return None, "bad_http_header"
        if http.status_code != 200:
            return None, "http_not_200"
        ptype = (record.headers.get("WARC-Identified-Payload-Type") or record.http_content_type or "").lower()
        if ptype.split(";")[0].strip() not in self.cfg.html_types:
            return None, "not_html"
        return self._payload(record, kind="html")

    def _payload(self, record, kind: str) -> tuple[RawPage | None, str]:
        length = record.content_length
        if length > self.cfg.max_payload_bytes:
            return None, "payload_too_large"  # the iterator skips the body without buffering it
        data = record.reader.read()
        if not data.strip():
            return None, "empty_payload"
        if len(data) < length:
            return None, "truncated_record"
        if b"\x00" in data[: self.cfg.binary_probe_bytes]:
            return None, "binary_payload"
        return RawPage(record_id=record.record_id or "", url=record.headers.get("WARC-Target-URI") or "",
                       payload=data, http_charset=record.http_charset if kind == "html" else "utf-8",
                       kind=kind, warc_truncated=bool(record.headers.get("WARC-Truncated"))), ""

    def _read_warcinfo(self, record) -> None:
        body = record.reader.read(65536)
        for line in body.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == "ispartof" and value.strip():
                self.crawl = value.strip()


def _stream_error_reason(exc: OSError) -> str:
    msg = str(exc).lower()
    if "gzip" in msg or "decompress" in msg or "zstd" in msg or "lz4" in msg:
        return "corrupt_gzip"
    if "warc" in msg and "header" in msg:
        return "invalid_warc"
    return "read_error"
