"""The sample crawl: Common Crawl layout, WARC records FastWARC reads and verifies, the promised
kinds of content (checked from the bytes, not only from the ground truth), determinism."""

from __future__ import annotations

import collections
import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType
from resiliparse.extract.html2text import extract_plain_text

from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
from dsllm.curation.samples.crawl import SPECIAL
from tests.conftest import run_cli

CRAWLS = ("CC-MAIN-2024-10", "CC-MAIN-2024-18")
CFG = SampleCrawlConfig(warcs=2, records=40, seed=3, crawls=CRAWLS)
PATH_RE = re.compile(
    r"^crawl-data/(CC-MAIN-\d{4}-\d{2})/segments/\d{13}\.\d+/warc/"
    r"CC-MAIN-\d{14}-\d{14}-\d{5}\.warc\.gz$"
)


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    summary = write_sample_crawl(str(out), CFG)
    truth = json.loads((out / "sample-crawl.json").read_text())
    return out, summary, truth


@pytest.fixture(scope="module")
def records(crawl):
    """Every WARC record of the crawl: (warc path, record type, WARC headers, HTTP status, HTTP headers, payload)."""
    out, _, truth = crawl
    rows = []
    for path in sorted({c["warc"] for c in truth["captures"]}):
        for rec in ArchiveIterator(open(out / path, "rb"), parse_http=True):
            http = rec.http_headers if rec.is_http else None
            rows.append(
                dict(
                    warc=path,
                    type=rec.record_type,
                    headers=rec.headers.asdict(),
                    status=http.status_code if http is not None else None,
                    http=http.asdict() if http is not None else {},
                    payload=rec.reader.read(),
                )
            )
    return rows


def _responses(records):
    return {r["headers"]["WARC-Record-ID"]: r for r in records if r["type"] == WarcRecordType.response}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(crawl, tmp_path):
    out, _, _ = crawl
    write_sample_crawl(str(tmp_path / "again"), CFG)
    assert _files(tmp_path / "again") == _files(out)
    other = SampleCrawlConfig(warcs=2, records=40, seed=4, crawls=CRAWLS)
    write_sample_crawl(str(tmp_path / "other"), other)
    a, b = _files(out), _files(tmp_path / "other")
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a if k.endswith(".warc.gz"))


def test_warc_paths_list_existing_files_in_common_crawl_layout(crawl):
    out, summary, _ = crawl
    for name in CRAWLS:
        listing = gzip.decompress((out / "crawl-data" / name / "warc.paths.gz").read_bytes()).decode().split()
        assert len(listing) == CFG.warcs
        assert listing == summary["crawls"][name]["warcs"]
        for rel in listing:
            m = PATH_RE.match(rel)
            assert m and m.group(1) == name, rel
            assert (out / rel).stat().st_size > 1000
        # one gzip member per record: each member decompresses to exactly one WARC record
        data = (out / listing[0]).read_bytes()
        assert data.count(b"\x1f\x8b\x08") >= 1 + 3 * CFG.records


def test_records_are_real_common_crawl_shape_and_digests_verify(crawl, records):
    out, summary, truth = crawl
    by_file = collections.defaultdict(list)
    for r in records:
        by_file[r["warc"]].append(r)
    for path, recs in by_file.items():
        info = recs[0]
        assert info["type"] == WarcRecordType.warcinfo
        assert info["headers"]["WARC-Filename"] == path.rsplit("/", 1)[1]
        assert f"isPartOf: {path.split('/')[1]}" in info["payload"].decode()
        body = recs[1:]
        assert len(body) == 3 * CFG.records
        for req, resp, meta in zip(body[0::3], body[1::3], body[2::3]):
            assert (req["type"], resp["type"], meta["type"]) == (
                WarcRecordType.request,
                WarcRecordType.response,
                WarcRecordType.metadata,
            )
            assert resp["headers"]["WARC-Concurrent-To"] == req["headers"]["WARC-Record-ID"]
            assert meta["headers"]["WARC-Concurrent-To"] == resp["headers"]["WARC-Record-ID"]
            uri = req["headers"]["WARC-Target-URI"]
            assert resp["headers"]["WARC-Target-URI"] == meta["headers"]["WARC-Target-URI"] == uri
            assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", resp["headers"]["WARC-Date"])
            for r in (req, resp, meta):
                assert r["headers"]["WARC-Warcinfo-ID"] == info["headers"]["WARC-Record-ID"]
                assert re.match(r"^<urn:uuid:[0-9a-f-]{36}>$", r["headers"]["WARC-Record-ID"])
            assert req["http"]["User-Agent"].startswith("CCBot/2.0")
            assert "fetchTimeMs" in meta["payload"].decode()
    # every record's block digest and every response's payload digest verify
    for path in by_file:
        for rec in ArchiveIterator(open(out / path, "rb"), parse_http=False):
            assert rec.verify_block_digest(), (path, rec.record_id)
            if rec.record_type == WarcRecordType.response:
                rec.parse_http()
                assert rec.verify_payload_digest(), (path, rec.record_id)
    ids = {r["headers"]["WARC-Record-ID"] for r in records if r["type"] == WarcRecordType.response}
    assert ids == {c["record_id"] for c in truth["captures"]}
    assert summary["warc_records"] == {"warcinfo": 4, "request": 160, "response": 160, "metadata": 160}


def test_every_kind_of_record_appears_in_every_dump(crawl):
    _, _, truth = crawl
    for name in CRAWLS:
        caps = [c for c in truth["captures"] if c["crawl"] == name]
        kinds = {(c["category"], c["lang"]) for c in caps}
        for category, lang, charset, declared, _ in SPECIAL:
            if category == "good":
                assert any(c["charset"] == charset and c["charset_declared"] == declared for c in caps)
            else:
                assert (category, lang) in kinds, (name, category, lang)
        site_kinds = {(c["kind"], c["lang"]) for c in caps if c["category"] == "good"}
        assert len(site_kinds) >= 10
        good = collections.Counter(c["lang"] for c in caps if c["category"] == "good")
        assert good["en"] > 20 and good["zh"] > 10


def test_good_pages_carry_real_prose_inside_boilerplate(crawl, records):
    _, _, truth = crawl
    resp = _responses(records)
    good = [c for c in truth["captures"] if c["category"] == "good" and c["charset"] == "utf-8"]
    for c in good[:30]:
        html = resp[c["record_id"]]["payload"].decode("utf-8")
        assert "<nav" in html and "<footer" in html
        full = extract_plain_text(html)
        main = extract_plain_text(html, main_content=True)
        if c["lang"] == "en":
            assert len(main.split()) >= 80
        else:
            assert len(re.findall(r"[\u4e00-\u9fff]", main)) >= 150
        assert len(full) > len(main)  # boilerplate that main-content extraction removes
    urls = " ".join(c["url"] for c in truth["captures"])
    for host in (
        "en.wikipedia.org/wiki/",
        "zh.wikipedia.org",
        "baike.baidu.com",
        "stackoverflow.com/questions",
        "zhihu.com/question",
        "docs.python.org",
        "arxiv.org/abs",
        ".gov",
        "gov.cn",
        ".edu",
    ):
        assert host in urls, host


def test_exact_and_near_duplicates_within_and_across_dumps(crawl, records):
    _, _, truth = crawl
    resp = _responses(records)
    by_id = {c["record_id"]: c for c in truth["captures"]}
    scopes = collections.Counter()
    for c in truth["captures"]:
        if c["category"] not in ("exact_duplicate", "near_duplicate"):
            continue
        src = by_id[c["dup_of"]]
        scopes[(c["category"], c["dup_scope"])] += 1
        a, b = resp[c["record_id"]]["payload"], resp[src["record_id"]]["payload"]
        if c["category"] == "exact_duplicate":
            assert a == b
        else:
            assert a != b and 0.6 < c["jaccard"] < 0.97
        if c["dup_scope"] == "across_dumps":
            assert (src["crawl"], c["crawl"]) == CRAWLS and src["url"] == c["url"]
        else:
            assert src["crawl"] == c["crawl"] and src["url"] != c["url"]
    assert all(
        scopes[(cat, scope)] > 0
        for cat in ("exact_duplicate", "near_duplicate")
        for scope in ("within_dump", "across_dumps")
    )


@pytest.mark.parametrize("charset,codec", [("gbk", "gbk"), ("big5", "big5")])
def test_legacy_charset_pages_declare_the_charset_in_one_place_and_decode(crawl, records, charset, codec):
    _, _, truth = crawl
    resp = _responses(records)
    pages = [c for c in truth["captures"] if c["charset"] == charset and c["category"] == "good"]
    assert {c["charset_declared"] for c in pages} == {"header", "meta"}
    for c in pages:
        r = resp[c["record_id"]]
        body, ctype = r["payload"], r["http"]["Content-Type"]
        meta = re.search(rb'<meta http-equiv="Content-Type" content="text/html; charset=([\w-]+)">', body)
        if c["charset_declared"] == "header":
            assert ctype.lower() == f"text/html; charset={charset}" and meta is None
        else:
            assert ctype == "text/html" and meta.group(1).decode() == charset
        with pytest.raises(UnicodeDecodeError):
            body.decode("utf-8")
        text = extract_plain_text(body.decode(codec), main_content=True)
        han = re.findall(r"[\u4e00-\u9fff]", text)
        assert len(han) > 150 and len(han) > 0.6 * len(text.replace("\n", ""))
    if charset == "big5":  # Taiwan / Hong Kong pages are in traditional script
        text = resp[pages[0]["record_id"]]["payload"].decode(codec)
        assert re.search("[說們國為與這會來時]", text)


def test_non_html_errors_redirects_and_malformed_records(crawl, records):
    _, _, truth = crawl
    resp = _responses(records)
    seen = collections.Counter()
    for c in truth["captures"]:
        r = resp[c["record_id"]]
        cat = c["category"]
        seen[cat] += 1
        if cat == "image":
            assert r["payload"][:3] == b"\xff\xd8\xff" and r["headers"]["WARC-Identified-Payload-Type"] == "image/jpeg"
        elif cat == "pdf":
            assert r["payload"].startswith(b"%PDF-1.") and r["payload"].rstrip().endswith(b"%%EOF")
            assert r["http"]["Content-Type"] == "application/pdf"
        elif cat in ("http_404", "http_500"):
            assert r["status"] == int(cat[-3:])
        elif cat == "redirect":
            assert r["status"] == 301 and r["http"]["Location"].startswith("https://")
        elif cat == "malformed_http_header":
            assert r["status"] is None or r["payload"] == b""
        elif cat == "binary_as_html":
            assert r["http"]["Content-Type"].startswith("text/html")
            with pytest.raises(UnicodeDecodeError):
                r["payload"].decode("utf-8")
        elif cat == "empty_payload":
            assert r["status"] == 200 and r["payload"] == b""
        elif cat in ("spam_keywords", "link_farm", "lorem_ipsum", "short"):
            text = extract_plain_text(r["payload"].decode("utf-8"))
            if cat == "short":
                assert len(text) < 40
            elif cat == "lorem_ipsum":
                assert "lorem ipsum" in text.lower()
            elif cat == "link_farm":
                assert r["payload"].count(b"<a href") >= 80
            else:
                words = text.split()
                assert len(words) < 2 or len(set(words)) < 0.3 * len(words) or c["lang"] == "zh"
    assert all(
        seen[k]
        for k in (
            "image",
            "pdf",
            "http_404",
            "http_500",
            "redirect",
            "malformed_http_header",
            "binary_as_html",
            "empty_payload",
            "spam_keywords",
            "link_farm",
            "lorem_ipsum",
        )
    )


def test_written_to_s3_and_read_back(s3_bucket):
    from dsllm import storage

    cfg = SampleCrawlConfig(warcs=1, records=40, seed=1)
    write_sample_crawl(f"s3://{s3_bucket}/cc", cfg)
    names = [f.uri for f in storage.list_files(f"s3://{s3_bucket}/cc")]
    listing = gzip.decompress(storage.read_bytes(f"s3://{s3_bucket}/cc/crawl-data/CC-MAIN-2024-10/warc.paths.gz"))
    path = listing.decode().strip()
    assert f"s3://{s3_bucket}/cc/{path}" in names
    with storage.open_read(f"s3://{s3_bucket}/cc/{path}") as f:
        n = sum(1 for _ in ArchiveIterator(f, fsspec_args=False))
    assert n == 1 + 3 * 40


def test_cli_writes_summary_and_rejects_bad_input(tmp_path):
    out = run_cli(
        "sample-crawl",
        str(tmp_path / "c"),
        "--warcs",
        "1",
        "--records",
        "40",
        "--seed",
        "2",
        "--crawl",
        "CC-MAIN-2023-50",
        "cc:CC-MAIN-2024-10",
    )
    assert out.returncode == 0, out.stderr
    assert "CC-MAIN-2023-50: 40 captures in 1 WARC files" in out.stdout
    assert re.search(r"near_duplicate/en\s+\d+", out.stdout)
    truth = json.loads((tmp_path / "c" / "sample-crawl.json").read_text())
    assert truth["crawls"] == ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
    digest = hashlib.sha256((tmp_path / "c" / "sample-crawl.json").read_bytes()).hexdigest()
    again = run_cli(
        "sample-crawl",
        str(tmp_path / "d"),
        "--warcs",
        "1",
        "--records",
        "40",
        "--seed",
        "2",
        "--crawl",
        "CC-MAIN-2023-50",
        "CC-MAIN-2024-10",
    )
    assert hashlib.sha256((tmp_path / "d" / "sample-crawl.json").read_bytes()).hexdigest() == digest
    for bad in (["--crawl", "CC-MAIN-2024-77"], ["--crawl", "2024-10"], ["--records", "3", "--warcs", "1"]):
        res = run_cli("sample-crawl", str(tmp_path / "e"), *bad)
        assert res.returncode == 2 and again.returncode == 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dsllm sample-crawl: error:"), res.stderr
