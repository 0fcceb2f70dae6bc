"""Gzip-per-record WARCs with a broken member in the middle: the member is counted once, reading resyncs."""

from __future__ import annotations

import gzip
import io
import os
import zlib

import pytest

from dsllm.curation.stage import StageCounts
from dsllm.curation.warc import GzipMembers, WarcReader
from tests.curation.test_reading import gz, http_response, read_all, warc_record


def page_record(n: int, size: int = 3000) -> bytes:
    body = b"<html><body><p>" + os.urandom(size).hex().encode() + b"</p></body></html>"
    return warc_record(http_response(body), url=f"https://example.com/{n}", n=n)


def members(count: int) -> list[bytes]:
    return [gz(page_record(n)) for n in range(count)]


def ids(pages) -> list[int]:
    return [int(p.record_id[-13:-1]) for p in pages]


def flipped(member: bytes) -> bytes:
    bad = bytearray(member)
    for i in range(40, min(len(bad) - 10, 400), 7):
        bad[i] ^= 0xA5
    return bytes(bad)


def test_corrupt_member_in_the_middle_is_counted_once_and_the_rest_is_read():
    ms = members(8)
    data = b"".join(ms[:3]) + flipped(ms[3]) + b"".join(ms[4:])
    pages, counts, reader = read_all(data)
    assert ids(pages) == [0, 1, 2, 4, 5, 6, 7]
    assert counts.n_in == 8 and counts.n_out == 7 and counts.dropped == {"corrupt_gzip": 1}


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_truncated_member_in_the_middle(keep):
    ms = members(6)
    cut = ms[2][: int(len(ms[2]) * keep)]
    pages, counts, _ = read_all(b"".join(ms[:2]) + cut + b"".join(ms[3:]))
    assert ids(pages) == [0, 1, 3, 4, 5]
    assert counts.n_out == 5 and sum(counts.dropped.values()) == 1
    assert set(counts.dropped) <= {"corrupt_gzip", "truncated_gzip"}
    assert counts.n_in == counts.n_out + 1


def test_bad_crc_garbage_between_members_and_several_bad_members():
    ms = members(10)
    bad_crc = bytearray(ms[1])
    bad_crc[-8] ^= 0xFF  # CRC32 of the trailer: every byte inflates, the check fails
    junk = b"\x1f\x8b\x08 not really gzip \x00" * 50 + os.urandom(5000)
    data = (
        ms[0]
        + bytes(bad_crc)
        + ms[2]
        + junk
        + ms[3]
        + flipped(ms[4])
        + flipped(ms[5])
        + ms[6]
        + ms[7][:100]
        + ms[8]
        + ms[9][: len(ms[9]) // 2]
    )
    pages, counts, reader = read_all(data)
    assert ids(pages) == [0, 2, 3, 6, 8]
    # bad CRC, the two flipped members, the cut member 7 (one each); member 9 ends the file cut short
    assert counts.dropped == {"corrupt_gzip": 4, "truncated_gzip": 1}
    assert counts.n_in == 10 and reader.resynced_bytes >= len(junk)


def test_non_warc_data_after_damage_ends_the_input_counted_once():
    ms = members(3)
    data = ms[0] + flipped(ms[1]) + os.urandom(20000)
    pages, counts, _ = read_all(data)
    assert ids(pages) == [0] and counts.dropped == {"corrupt_gzip": 1}


def test_whole_file_gzip_and_uncompressed_warcs_still_read():
    records = [page_record(n) for n in range(5)]
    pages, counts, _ = read_all(gzip.compress(b"".join(records)))  # one gzip stream for the whole file
    assert ids(pages) == [0, 1, 2, 3, 4] and counts.dropped == {}
    pages, counts, _ = read_all(b"".join(records))
    assert ids(pages) == [0, 1, 2, 3, 4]


def test_members_stream_without_holding_the_file():
    """Inflated bytes come out in bounded reads; the compressed stream is read in chunks as needed."""
    ms = [gz(page_record(n, size=60_000)) for n in range(50)]
    raw = io.BytesIO(b"".join(ms))
    assert len(raw.getvalue()) > 3 << 20
    src = GzipMembers(raw)
    first = src.read(100)
    assert first.startswith(b"WARC/1.0") and len(first) <= 100
    assert raw.tell() <= 1 << 20  # one chunk of the compressed stream read so far
    reads = [first] + list(iter(lambda: src.read(65536), b""))
    assert max(map(len, reads)) <= 65536 and not src.error
    assert b"".join(reads) == b"".join(zlib.decompress(m, 31) for m in ms) and src.tell() == len(b"".join(reads))


def test_reader_counts_balance_when_the_bad_record_was_being_skipped():
    """A non-HTML record whose member breaks while FastWARC skips its body: the record keeps its reason,
    the member's broken rest is counted once more, and the next members are read."""
    big_image = warc_record(http_response(os.urandom(200_000), "image/png"), n=1)
    ms = [gz(page_record(0)), flipped(gz(big_image)), gz(page_record(2))]
    counts = StageCounts("read")
    pages = list(WarcReader()(io.BytesIO(b"".join(ms)), counts))
    assert ids(pages) == [0, 2] and counts.balanced()
    assert counts.dropped["corrupt_gzip"] == 1 and sum(counts.dropped.values()) <= 2
