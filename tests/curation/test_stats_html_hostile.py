"""`dsllm stats --html` on curated output whose URLs, hosts, text, drop reasons and input errors
carry script and `onerror` payloads: in headless Chromium the payloads stay text (no element,
attribute or script of theirs appears, none runs) and the page carries a CSP that allows only its
own inline script and style."""

from __future__ import annotations

import html.parser
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from dsllm.curation.dropped import DROPPED_SCHEMA
from tests.conftest import run_cli
from tests.curation.test_stats_builders import write_curated
from tests.curation.test_stats_html import _browser

PAYLOADS = [
    "</script><script>document.body.setAttribute('data-pwned','script')</script>",
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','img')\">",
    "<!--<script>document.body.setAttribute('data-pwned','comment')</script>-->",
    "\"><svg onload=\"document.body.setAttribute('data-pwned','svg')\">",
    "&lt;b&gt;entity&amp;",
]


class _Dom(html.parser.HTMLParser):
    """Every element of a dumped DOM: tags, attributes named on*, the body's attributes, all text."""

    def __init__(self):
        super().__init__()
        self.tags, self.handlers, self.body, self.text = [], [], {}, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        if tag == "body":
            self.body = dict(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _poison(out: str) -> None:
    """Payloads into every shard's url, domain and text, a drop reason and a failed input's error."""
    for name in sorted(os.listdir(os.path.join(out, "shards"))):
        path = os.path.join(out, "shards", name)
        rows = pq.read_table(path).to_pylist()
        for i, row in enumerate(rows):
            p = PAYLOADS[i % len(PAYLOADS)]
            row["url"] = f"http://evil.example/{p}"
            row["domain"] = p
            row["text"] = f"{p}\n{row['text']}"
        pq.write_table(pq.read_table(path).from_pylist(rows, schema=pq.read_schema(path)), path)
    stats_path, manifest_path = os.path.join(out, "stats.json"), os.path.join(out, "manifest.json")
    stats = json.load(open(stats_path))
    stats["stages"][1]["dropped"] = (
        {PAYLOADS[1]: sum(stats["stages"][1]["dropped"].values())} if stats["stages"][1]["dropped"] else {}
    )
    # two kept dropped documents of that reason, payloads in every text field
    stage = stats["stages"][1]["name"]
    os.makedirs(os.path.join(out, "dropped"), exist_ok=True)
    rows = [
        {
            "stage": stage,
            "reason": PAYLOADS[1],
            "value": 0.5,
            "detail": PAYLOADS[(i + 2) % len(PAYLOADS)],
            "duplicate_of": PAYLOADS[(i + 3) % len(PAYLOADS)],
            "id": PAYLOADS[i],
            "url": f"http://evil.example/{PAYLOADS[(i + 4) % len(PAYLOADS)]}",
            "crawl": "CC-MAIN-2024-10",
            "lang": PAYLOADS[0],
            "warc_file": "x.warc.gz",
            "n_chars": 10,
            "text": "\n".join(PAYLOADS),
        }
        for i in range(2)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=DROPPED_SCHEMA), os.path.join(out, "dropped", "samples.parquet"))
    stats["dropped_samples"] = {
        "mode": "sample",
        "keep": 5,
        "files": ["dropped/samples.parquet"],
        "rows": {f"{stage}:{PAYLOADS[1]}": 2},
    }
    json.dump(stats, open(stats_path, "w"))
    manifest = json.load(open(manifest_path))
    manifest["inputs"][-1]["error"] = PAYLOADS[0]
    manifest["inputs"][-1]["uri"] = "/crawl/" + PAYLOADS[1]
    json.dump(manifest, open(manifest_path, "w"))


def test_hostile_crawl_data_renders_as_text(tmp_path):
    out = tmp_path / "cur"
    write_curated(str(out))
    _poison(str(out))
    page = tmp_path / "report.html"
    proc = run_cli("stats", str(out), "--html", str(page), "--sample", "12", "--verify")
    assert proc.returncode in (0, 1), proc.stderr  # --verify may flag the rewritten shards' hashes
    source = page.read_text()
    assert "Content-Security-Policy" in source and "'unsafe-inline'" not in source
    assert source.count("<script") == 2 and "data-pwned" not in source.split('id="report-data">')[0]

    dumped = _browser(tmp_path, "--dump-dom", f"file://{page}")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = _Dom()
    dom.feed(dumped.stdout)
    assert dom.body.get("data-rendered") == "true", "the report script did not run under its own CSP"
    assert "data-pwned" not in dom.body
    assert dom.tags.count("script") == 2 and "img" not in dom.tags
    assert not dom.handlers, dom.handlers
    assert dumped.stdout.count('data-dropped="') == 2  # the dropped documents' section was drawn
    text = "".join(dom.text)
    for p in PAYLOADS:  # shown, as the characters they are
        assert p in text or p.replace("\n", " ") in text, p
