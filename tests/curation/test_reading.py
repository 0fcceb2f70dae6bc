"""Reading WARC/WET with FastWARC: real Common Crawl excerpts, every bad record counted, inputs listed."""

from __future__ import annotations

import gzip
import io
import os

import pytest

from dsllm.curation.sources import InputSpec, resolve_inputs
from dsllm.curation.stage import StageCounts
from dsllm.curation.warc import ReadConfig, WarcReader
from dsllm.errors import UserError
from tests.conftest import shared_path


def http_response(body: bytes, content_type: str = "text/html; charset=utf-8", status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\r\n".encode() + body


def warc_record(
    block: bytes, rtype: str = "response", url: str = "https://example.com/", n: int = 0, http: bool = True
) -> bytes:
    """One uncompressed WARC record."""
    head = (
        f"WARC/1.0\r\nWARC-Type: {rtype}\r\nWARC-Target-URI: {url}\r\n"
        f"WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-{n:012d}>\r\nWARC-Date: 2024-03-01T00:00:00Z\r\n"
    )
    if http:
        head += "Content-Type: application/http; msgtype=response\r\n"
    return (head + f"Content-Length: {len(block)}\r\n\r\n").encode() + block + b"\r\n\r\n"


def gz(record: bytes) -> bytes:
    """A gzip member per record, as Common Crawl writes them."""
    return gzip.compress(record, compresslevel=1)


def read_all(data: bytes, cfg: ReadConfig | None = None):
    cfg = cfg or ReadConfig()
    counts = StageCounts("read")
    reader = WarcReader(cfg)
    pages = list(reader(io.BytesIO(data), counts))
    assert counts.balanced(), counts
    return pages, counts, reader


def test_real_common_crawl_excerpts_go_through_cleanly():
    warc = shared_path("data", "warc", "resiliparse_CC-MAIN-2020-34_warcfile.warc.gz")
    pages, counts, reader = read_all(warc.read_bytes())
    assert counts.n_in == 50 and counts.n_out == 16  # 16 HTML responses (6 text/html + 10 xhtml)
    assert counts.dropped == {"record_request": 17, "record_metadata": 16, "record_warcinfo": 1}
    assert reader.crawl == "CC-MAIN-2020-34"
    assert all(p.payload and p.url.startswith("http") and p.record_id.startswith("<urn:uuid:") for p in pages)
    wet = shared_path("data", "warc", "whirlwind_CC-MAIN-2024-22.warc.wet.gz")
    pages, counts, reader = read_all(wet.read_bytes())
    assert [p.kind for p in pages] == ["text"] and counts.dropped == {"record_warcinfo": 1}
    assert reader.crawl == "CC-MAIN-2024-22"


def test_every_bad_record_is_counted_with_its_reason():
    good = http_response(b"<html><body><p>Hello there, a fine page.</p></body></html>")
    records = [
        warc_record(b"isPartOf: CC-MAIN-2024-10\r\n", "warcinfo", http=False),
        warc_record(good, n=1),
        warc_record(http_response(b"<p>gone</p>", status="404 Not Found"), n=2),
        warc_record(http_response(b"\x89PNG\r\n\x1a\n....", "image/png"), n=3),
        warc_record(http_response(b""), n=4),
        warc_record(http_response(b"\x00\x01\x02binary\x00stuff" * 20), n=5),
        warc_record(b"garbage status line\r\nno: headers\r\n\r\n<p>x</p>", n=6),
        warc_record(http_response(b"<p>" + b"a" * (50 << 20) + b"</p>"), n=7),  # a 50 MB page
        warc_record(b"GET / HTTP/1.1\r\n\r\n", "request", n=8),
        warc_record(b"fetchTimeMs: 5\r\n", "metadata", n=9, http=False),
        warc_record(good, n=10),
    ]
    data = b"".join(gz(r) for r in records)
    last = gz(warc_record(http_response(b"<p>" + os.urandom(4000).hex().encode() + b"</p>"), n=11))
    pages, counts, reader = read_all(data + last[: len(last) // 2])  # a truncated gzip member at the end
    assert [p.record_id[-3:-1] for p in pages] == ["01", "10"]
    assert reader.crawl == "CC-MAIN-2024-10"
    assert counts.dropped == {
        "record_warcinfo": 1,
        "http_not_200": 1,
        "not_html": 1,
        "empty_payload": 1,
        "binary_payload": 1,
        "bad_http_header": 1,
        "payload_too_large": 1,
        "record_request": 1,
        "record_metadata": 1,
        "truncated_gzip": 1,
    }


def test_broken_streams_are_counted():
    pages, counts, _ = read_all(b"this is not a WARC file at all\n" * 10)
    assert pages == [] and counts.dropped == {"invalid_warc": 1}
    # a broken WARC header line inside a record: the record is unknown, the stream goes on
    bad = b"WARC/1.0\r\nthis header has no colon\r\nContent-Length: 5\r\n\r\nabcde\r\n\r\n"
    pages, counts, _ = read_all(
        warc_record(http_response(b"<p>a</p>"), n=1) + bad + warc_record(http_response(b"<p>b</p>"), n=3)
    )
    assert len(pages) == 2 and counts.dropped == {"record_other": 1}


def test_resolve_local_inputs(tmp_path):
    d = tmp_path / "crawl"
    d.mkdir()
    for name in ("b.warc.gz", "a.warc.gz", "notes.txt", "x.warc.wet.gz"):
        (d / name).write_bytes(b"x")
    specs = resolve_inputs([str(d)])
    assert [os.path.basename(s.uri) for s in specs] == ["a.warc.gz", "b.warc.gz", "x.warc.wet.gz"]
    assert len(resolve_inputs([str(d / "*.warc.gz"), str(d / "a.warc.gz")])) == 2  # no duplicates
    assert resolve_inputs([str(d)], limit=1)[0].uri.endswith("a.warc.gz")
    with pytest.raises(UserError, match="no such file"):
        resolve_inputs([str(tmp_path / "missing.warc.gz")])
    assert InputSpec("/x/CC-MAIN-2024-10.warc.gz").key != InputSpec("/y/CC-MAIN-2024-10.warc.gz").key


def test_cc_crawl_from_warc_paths_over_http(tmp_path, http_server):
    crawl = tmp_path / "crawl-data" / "CC-MAIN-2024-10"
    crawl.mkdir(parents=True)
    paths = [f"crawl-data/CC-MAIN-2024-10/segments/1/warc/CC-MAIN-2024-{i}.warc.gz" for i in range(3)]
    (crawl / "warc.paths.gz").write_bytes(gzip.compress("\n".join(paths).encode() + b"\n"))
    base = http_server(tmp_path)
    specs = resolve_inputs(["cc:CC-MAIN-2024-10"], cc_base_url=base, limit=2)
    assert [s.uri for s in specs] == [base + p for p in paths[:2]]
    assert {s.crawl for s in specs} == {"CC-MAIN-2024-10"}
    with pytest.raises(UserError, match="cannot read the crawl's file list"):
        resolve_inputs(["cc:CC-MAIN-2023-50"], cc_base_url=base)
    with pytest.raises(UserError, match="not a Common Crawl crawl name"):
        resolve_inputs(["cc:CC-MAIN-24"], cc_base_url=base)
