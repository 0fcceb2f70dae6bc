"""Bounded resources on hostile WARC input, measured in a subprocess of its own: a gzip member
that inflates to 256 MiB of zeros, a 200 MB HTML payload and a record whose Content-Length claims a
terabyte sit between small valid records. Each hostile record is dropped under a counted reason,
every valid record not swallowed by the liar is kept (the swallowed one is counted as
`length_overrun`), and the peak RSS stays far below any one inflated payload."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent("""
    import gzip, io, json, zlib
    from dsllm.curation.warc import ReadConfig, WarcReader
    from dsllm.curation.stage import StageCounts

    def peak_rss_mb():  # VmHWM: this process image's own peak (ru_maxrss also counts the forking parent)
        line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024

    HTTP = b"HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\n\\r\\n"

    def head(n):
        return (b"WARC/1.0\\r\\nWARC-Type: response\\r\\nWARC-Target-URI: http://x.example/\\r\\n"
                b"WARC-Record-ID: <urn:uuid:1>\\r\\nContent-Type: application/http; msgtype=response\\r\\n"
                b"Content-Length: %d\\r\\n\\r\\n" % n) + HTTP

    def member(n_claimed, chunk, repeat):
        c = zlib.compressobj(1, zlib.DEFLATED, 31)   # one gzip member, built without holding it inflated
        parts = [c.compress(head(n_claimed))]
        parts += [c.compress(chunk) for _ in range(repeat)]
        return b"".join(parts + [c.compress(b"\\r\\n\\r\\n"), c.flush()])

    small_body = b"<html><body><p>a small valid page</p></body></html>"
    small = gzip.compress(head(len(HTTP) + len(small_body)) + small_body + b"\\r\\n\\r\\n", mtime=0)
    zeros, page = b"\\0" * (1 << 20), b"<p>" + b"spam " * 200 + b"</p>"
    bomb = member(len(HTTP) + 256 * len(zeros), zeros, 256)                    # 256 MiB inflated
    html = member(len(HTTP) + 200_000_000 // len(page) * len(page), page, 200_000_000 // len(page))
    liar = member(10 ** 12, page, 100)                                          # claims 1 TB
    data = small + bomb + small + html + small + liar + small
    counts = StageCounts("read")
    kept = sum(1 for _ in WarcReader(ReadConfig())(io.BytesIO(data), counts))
    print(json.dumps({"counts": counts.to_json(), "kept": kept, "compressed": len(data),
                      "peak_rss_mb": peak_rss_mb()}))
""")


def test_bomb_huge_payload_and_lying_length_are_counted_with_bounded_memory():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=str(ROOT), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    counts = out["counts"]
    assert counts["in"] == 7, out  # each record counted once
    assert counts["in"] == counts["out"] + sum(counts["dropped"].values())
    # the valid records before the liar survive; the one its 1 TB claim swallows is counted, not lost
    assert out["kept"] == 3 and counts["out"] == 3, out
    assert counts["dropped"] == {"payload_too_large": 3, "length_overrun": 1}, out
    assert out["compressed"] < 8 << 20  # the input really is small on disk...
    assert out["peak_rss_mb"] < 190, out  # ...and never held inflated (≥ 200 MB each)
