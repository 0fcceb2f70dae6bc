"""FastWARC reading: a WARC (or WET) stream → raw pages, every other record counted under a reason.

Kept: `response` records with HTTP 200 and an HTML payload (by WARC-Identified-Payload-Type, else
the HTTP Content-Type), and WET `conversion` records (already plain text). The stream is read
record by record; payloads above `max_payload_bytes` are skipped without being held in memory.

Gzip-per-record files (Common Crawl) are inflated here member by member (zlib, streaming) and each
member is handed to FastWARC on its own, so a corrupt or truncated member costs only itself: the
reader counts it once (`corrupt_gzip`, or `truncated_gzip` when the file ends inside it) and resyncs
at the next gzip member whose inflated bytes start with a WARC header. Other inputs (uncompressed,
lz4) go to FastWARC as they are.

Reasons (stage `read`): record_warcinfo, record_request, record_metadata, record_revisit,
record_resource, record_other (unknown or broken WARC header), bad_http_header, http_not_200,
not_html, empty_payload, payload_too_large, truncated_record, binary_payload, corrupt_gzip,
truncated_gzip, invalid_warc, read_error, length_overrun (records swallowed by an earlier
record's lying Content-Length, gzip-per-record input). Event `resynced_bytes`: compressed bytes skipped to resync.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from typing import IO

from dsllm.curation.stage import Stage

_TYPE_REASONS = {
    "warcinfo": "record_warcinfo",
    "request": "record_request",
    "metadata": "record_metadata",
    "revisit": "record_revisit",
    "resource": "record_resource",
}


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """What the reader keeps."""

    html_types: tuple[str, ...] = ("text/html", "application/xhtml+xml")
    max_payload_bytes: int = 10_000_000  # larger payloads are skipped unread (payload_too_large)
    binary_probe_bytes: int = 2048  # NUL bytes in this prefix mark a binary payload
    wet: bool = True  # keep WET conversion records (plain text)

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
    kind: str = "html"  # "html" or "text" (WET)
    warc_truncated: bool = False


class WarcReader(Stage):
    """Reads one WARC/WET stream: the stage's items are its records, kept as RawPages or dropped
    with a reason. After iteration, `crawl` holds the warcinfo's isPartOf (if any)."""

    name = "read"

    def __init__(self, cfg: ReadConfig = ReadConfig()):
        self.cfg = cfg
        self.crawl = ""
        self.records = 0
        self.resynced_bytes = 0

    def deciding(self, item, reason: str) -> tuple[float | None, str | None]:
        """The HTTP status of a non-200 response, the Content-Length of a too large payload."""
        if item is None:
            return None, None
        if reason == "http_not_200":
            return float(item.http_headers.status_code), None
        if reason == "payload_too_large":
            return float(item.content_length), None
        return None, str(item.record_type).rsplit(".", 1)[-1] if reason == "record_other" else None

    def describe(self, item):
        """A dropped FastWARC record: its record id and target URI (no text: it was not extracted)."""
        from dsllm.curation.dropped import DroppedItem

        return DroppedItem(item.record_id or "", item.headers.get("WARC-Target-URI") or "")

    def outcomes(self, stream: IO[bytes]) -> Iterator[tuple]:
        """(page, None) for each page passed on, (record, reason) for each record dropped (None for
        the unreadable rest of a stream)."""
        head = stream.read(_CHUNK)
        if head[:3] != GZIP_MAGIC:
            yield from self._records(_Prefixed(head, stream))
            return
        members = GzipMembers(stream, head)
        while True:  # one FastWARC iterator per run of good members
            records, completed = self.records, members.completed
            yield from self._records(members)
            yield from self._overrun(members, self.records - records, members.completed - completed)
            if not members.error:
                break
            if not members.charged:  # the broken member's unreadable rest, counted once
                self.records += 1
                yield None, members.error
            if not members.resync():
                break
        self.resynced_bytes = members.skipped

    def _overrun(self, members: GzipMembers, seen: int, completed: int) -> Iterator[tuple[None, str]]:
        """Gzip-per-record input holds one record per member: members that FastWARC never showed as
        records were swallowed by an earlier record whose Content-Length lied. Each is counted once."""
        if members.error and members.charged:
            seen -= 1  # that record lies in the broken member, which did not complete
        for _ in range(max(0, completed - seen)):
            self.records += 1
            yield None, "length_overrun"

    def _records(self, stream) -> Iterator[tuple[RawPage | None, str | None]]:
        from fastwarc.warc import ArchiveIterator

        it = iter(ArchiveIterator(stream, parse_http=True, fsspec_args=False))
        while True:
            try:
                record = next(it)
            except StopIteration:
                return
            except OSError as exc:
                # the rest of the stream is unreadable: count it once and stop this input
                self.records += 1
                yield None, _stream_error_reason(exc)
                return
            self.records += 1
            page, reason = self._page(record)
            if getattr(stream, "error", "") and record.stream_pos >= stream.bad_start:
                stream.charged = True  # this record lies in the broken member
                page, reason = None, stream.error
            yield (page, None) if page is not None else (record, reason)

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
        return RawPage(
            record_id=record.record_id or "",
            url=record.headers.get("WARC-Target-URI") or "",
            payload=data,
            http_charset=record.http_charset if kind == "html" else "utf-8",
            kind=kind,
            warc_truncated=bool(record.headers.get("WARC-Truncated")),
        ), ""

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


GZIP_MAGIC = b"\x1f\x8b\x08"
_CHUNK = 1 << 20
_FEED = 16 << 10
_RESYNC_WINDOW = 16 << 20  # compressed bytes of the current member kept to search for the next one


class _Prefixed:
    """A stream with its first bytes already read (file-like for FastWARC)."""

    def __init__(self, head: bytes, stream: IO[bytes]):
        self.head, self.stream = head, stream
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
        else:
            out = self.stream.read(n)
        self.pos += len(out)
        return out

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class GzipMembers:
    """A gzip-per-record byte stream inflated member after member (file-like for FastWARC, streaming).

    When a member is corrupt or cut short, reading stops there (`error`, `bad_start` = the inflated
    offset where that member began) and `resync()` moves to the next member start, searched from the
    broken member's second byte on, whose inflated bytes begin with a WARC header."""

    def __init__(self, stream: IO[bytes], head: bytes = b""):
        self.stream = stream
        self.buf, self.off = head, 0  # compressed bytes read, and how far the inflater took them
        self.history: list = []  # compressed slices taken since the current member began
        self.kept = 0
        self.skipped = 0  # compressed bytes skipped by resyncs
        self.pos = 0  # inflated bytes delivered
        self.error = ""
        self.bad_start = 0
        self.charged = False
        self.completed = 0  # members inflated to their end
        self._start_member(0)

    def _start_member(self, start: int) -> None:
        self.inflater = zlib.decompressobj(31)
        self.tail = b""
        self.member_start = start
        self.history, self.kept = [], 0

    def tell(self) -> int:
        return self.pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if self.error:
            return b""
        n = n if n and n > 0 else _CHUNK
        parts, size = [], 0
        while size < n:  # fill the request across member boundaries
            data = self.tail or self._take()
            if not data:
                if self.history:  # the stream ended inside a member
                    self._fail("truncated_gzip")
                break
            try:
                out = self.inflater.decompress(data, n - size)
            except zlib.error:
                self._fail("corrupt_gzip")
                break
            parts.append(out)
            size += len(out)
            self.tail = self.inflater.unconsumed_tail
            if self.inflater.eof:  # the next member starts in the bytes fed after this one
                self.completed += 1
                self.off -= len(self.inflater.unused_data)
                self._start_member(self.pos + size)
        self.pos += size
        return b"".join(parts)

    def _fail(self, reason: str) -> None:
        self.error, self.bad_start, self.charged = reason, self.member_start, False

    def _take(self) -> memoryview | bytes:
        """The next compressed slice (small, so zlib's leftover copies stay small), remembered for a resync."""
        if self.off >= len(self.buf):
            self.buf, self.off = self.stream.read(_CHUNK), 0
            if not self.buf:
                return b""
        data = memoryview(self.buf)[self.off : self.off + _FEED]
        self.off += len(data)
        self.history.append(data)
        self.kept += len(data)
        if self.kept - len(self.history[0]) >= _RESYNC_WINDOW:
            self.kept -= len(self.history.pop(0))
        return data

    def resync(self) -> bool:
        """After a failure: skip to the next valid member; False when the stream has none."""
        buf = b"".join(self.history)[1:] + self.buf[self.off :]
        self.buf, self.off = b"", 0
        while True:
            i = buf.find(GZIP_MAGIC)
            if i >= 0:
                self.skipped += i
                buf = buf[i:]
                while len(buf) < 65536 and (more := self.stream.read(_CHUNK)):
                    buf += more
                if _starts_warc(buf):
                    self.buf, self.error = buf, ""
                    self._start_member(self.pos)
                    return True
                self.skipped += 1
                buf = buf[1:]
                continue
            more = self.stream.read(_CHUNK)
            if not more:
                self.skipped += len(buf)
                return False
            self.skipped += max(0, len(buf) - 2)
            buf = buf[-2:] + more


def _starts_warc(data: bytes) -> bool:
    try:
        return zlib.decompressobj(31).decompress(data[:65536], 8).startswith(b"WARC/1.")
    except zlib.error:
        return False
