"""Fuzzing the per-input curation chain (read → extract → … → pii) with hypothesis on real WARC
records: a sample crawl's records (always) and real Common Crawl excerpts (../shared, when present),
mutated in their bytes, WARC/HTTP headers and encodings, gzip members cut or bit-flipped.

Properties: curation never raises; every stage balances (in + added == out + dropped) and each
stage's `in` is the previous stage's `out`; when the gzip members survive intact and only payload
bytes change, every record is counted once (`read.in` equals the number of records); a rerun on
the same bytes gives the same documents and counts.

Budget: DSLLM_FUZZ_EXAMPLES examples per test (default 25, a few seconds). Inputs that once broke
it are kept in tests/curation/fuzz/*.bin and replayed every run.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsllm.curation.config import PER_INPUT_STAGES, CurateConfig
from dsllm.curation.pipeline import run_stages
from dsllm.curation.stage import StageCounts
from tests.conftest import SHARED

EXAMPLES = int(os.environ.get("DSLLM_FUZZ_EXAMPLES", "25"))
CORPUS = Path(__file__).parent / "fuzz"
# the default run replays the same examples; DSLLM_FUZZ_EXAMPLES=N explores new ones, and with
# DSLLM_FUZZ_SAVE=1 every failing input is written to the corpus
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize="DSLLM_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _members(data: bytes) -> list[bytes]:
    """The inflated records of a gzip-per-record WARC."""
    out, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        out.append(d.decompress(data[pos:]))
        pos = len(data) - len(d.unused_data)
    return out


def _sample_records() -> list[bytes]:
    import tempfile

    from dsllm.curation.samples.crawl import SampleCrawlConfig, write_sample_crawl

    with tempfile.TemporaryDirectory() as tmp:
        write_sample_crawl(tmp, SampleCrawlConfig(warcs=1, records=40, seed=3))
        warc = next(Path(tmp).rglob("*.warc.gz"))
        return _members(warc.read_bytes())[:24]


def _shared_records() -> list[bytes]:
    out = []
    for name in ("whirlwind_CC-MAIN-2024-22.warc.gz", "resiliparse_CC-MAIN-2020-34_warcfile.warc.gz"):
        p = SHARED / "data" / "warc" / name
        if p.exists():
            out += _members(p.read_bytes())[:12]
    return out


RECORDS = _sample_records() + _shared_records()
CFG = CurateConfig()


def _curate(data: bytes) -> tuple[list[tuple], list[dict]]:
    """The per-input chain over `data`: (documents as tuples, stage counts as JSON)."""
    counts = {n: StageCounts(n) for n in CFG.stages if n in PER_INPUT_STAGES}
    docs = [
        (d.id, d.url, d.text, d.lang) for d in run_stages(CFG, io.BytesIO(data), "fuzz.warc.gz", "fuzz", "", counts)
    ]
    return docs, [c.to_json() for c in counts.values()]


def _check(data: bytes, records: int | None = None) -> None:
    try:
        _check_properties(data, records)
    except BaseException:
        if os.environ.get("DSLLM_FUZZ_SAVE"):
            import hashlib

            (CORPUS / f"{hashlib.sha256(data).hexdigest()[:16]}.bin").write_bytes(data)
        raise


def _check_properties(data: bytes, records: int | None) -> None:
    docs, counts = _curate(data)
    for prev, cur in zip(counts, counts[1:]):
        assert cur["in"] == prev["out"], (prev, cur)
    for c in counts:
        assert c["in"] + c["added"] == c["out"] + sum(c["dropped"].values()), c
    assert counts[-1]["out"] == len(docs)
    if records is not None:
        assert counts[0]["in"] == records, (counts[0], records)
    assert _curate(data) == (docs, counts)  # a rerun gives the same result


def _gz(members: list[bytes]) -> bytes:
    return b"".join(gzip.compress(m, mtime=0) for m in members)


def _split(record: bytes) -> tuple[bytes, bytes]:
    head, sep, body = record.partition(b"\r\n\r\n")
    return head + sep, body


records = st.lists(st.sampled_from(range(len(RECORDS))), min_size=1, max_size=6)


@FUZZ
@given(picks=records, data=st.data())
def test_payload_mutations_count_every_record_once(picks, data):
    """Body bytes replaced, inserted or deleted with the WARC Content-Length kept true."""
    out = []
    for i in picks:
        head, body = _split(RECORDS[i])
        body = bytearray(body)
        for _ in range(data.draw(st.integers(0, 4))):
            pos = data.draw(st.integers(0, len(body)))
            op = data.draw(st.sampled_from(["flip", "insert", "delete", "charset"]))
            if op == "flip" and pos < len(body):
                body[pos] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "insert":
                body[pos:pos] = data.draw(st.binary(max_size=64))
            elif op == "delete":
                del body[pos : pos + data.draw(st.integers(1, 200))]
            else:
                body[pos:pos] = data.draw(
                    st.sampled_from(
                        [
                            b'<meta charset="x-unknown">',
                            b"<meta charset=utf-16>",
                            b"\xff\xfe\x00<",
                            b"Content-Type: text/html; charset=gbk\r\n",
                            b"\xe4\xb8",
                            b"\x00" * 8,
                        ]
                    )
                )
        head = _fix_length(head, len(body))
        out.append(head + bytes(body))
    _check(_gz(out), records=len(out))


def _fix_length(head: bytes, n: int) -> bytes:
    lines = [
        f"Content-Length: {n}".encode() if line.lower().startswith(b"content-length:") else line
        for line in head.split(b"\r\n")
    ]
    return b"\r\n".join(lines)


@FUZZ
@given(picks=records, data=st.data())
def test_header_and_stream_mutations_never_crash(picks, data):
    """WARC/HTTP header lines rewritten, Content-Length lying, members cut, bytes of the compressed
    stream flipped or cut."""
    out = []
    for i in picks:
        rec = bytearray(RECORDS[i])
        op = data.draw(st.sampled_from(["length", "header", "cut", "none"]))
        if op == "length":
            rec = bytearray(_fix_length(bytes(rec), data.draw(st.sampled_from([0, 1, 10**12, len(rec) * 3]))))
        elif op == "header":
            lines = bytes(rec).split(b"\r\n")
            k = data.draw(st.integers(0, min(len(lines) - 1, 25)))
            lines[k] = data.draw(
                st.sampled_from(
                    [
                        b"",
                        b"WARC/9.9",
                        b"WARC-Type: response",
                        b"HTTP/1.1 200",
                        b"Content-Type: text/html; charset=\x00\xff",
                        b"WARC-Target-URI: <script>",
                        lines[k] * 3,
                    ]
                )
            )
            rec = bytearray(b"\r\n".join(lines))
        elif op == "cut":
            rec = rec[: data.draw(st.integers(0, len(rec)))]
        out.append(bytes(rec))
    stream = bytearray(_gz(out))
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        stream[pos] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        stream = stream[: data.draw(st.integers(0, len(stream)))]
    _check(bytes(stream))


@pytest.mark.parametrize("case", sorted(CORPUS.glob("*.bin")), ids=lambda p: p.name)
def test_fuzz_corpus_regressions(case):
    """Inputs that broke a property once; `records` in the name when the count is known."""
    records = int(case.stem.split("-records")[1]) if "-records" in case.stem else None
    _check(case.read_bytes(), records=records)
