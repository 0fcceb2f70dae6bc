"""`dsllm stats --html`: the page opens in headless Chromium with no network, its script draws
every chart with the right number of bars and points, and a screenshot shows them."""

from __future__ import annotations

import html.parser
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from dsllm.curation.report import summarize
from dsllm.curation.report.html import render_html
from tests.conftest import run_cli
from tests.curation.test_stats_builders import write_curated, write_packed


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("needs headless Chromium (Debian package `chromium`, which .ci/run installs)")


def _browser(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class _Charts(html.parser.HTMLParser):
    """Per `<svg data-chart=NAME>`: the attributes of its `rect.bar` and `circle.point` elements."""

    def __init__(self):
        super().__init__()
        self.current, self.bars, self.points, self.body = None, {}, {}, {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if tag == "svg" and "data-chart" in a:
            self.current = a["data-chart"]
            self.bars.setdefault(self.current, [])
            self.points.setdefault(self.current, [])
        elif tag == "rect" and a.get("class") == "bar" and self.current:
            self.bars[self.current].append(a)
        elif tag == "circle" and a.get("class") == "point" and self.current:
            self.points[self.current].append(a)

    def handle_endtag(self, tag):
        if tag == "svg":
            self.current = None


def _rendered(tmp_path, page) -> _Charts:
    proc = _browser(tmp_path, "--dump-dom", f"file://{page}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    charts = _Charts()
    charts.feed(proc.stdout)
    charts.dom = proc.stdout
    assert charts.body.get("data-rendered") == "true", "the report script did not finish"
    return charts


def test_curated_page_renders_every_chart(tmp_path):
    out = tmp_path / "cur"
    write_curated(str(out))
    page = tmp_path / "report.html"
    proc = run_cli("stats", str(out), "--html", str(page), "--sample", "2")
    assert proc.returncode == 0, proc.stderr
    text = page.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "the page must not load anything"
    rep = summarize(str(out), sample=2)
    charts = _rendered(tmp_path, page)
    b = charts.bars
    assert len(b["funnel"]) == len(rep["funnel"]) == 11
    assert len(b["languages"]) == len(rep["languages"])
    assert [x["data-series"] for x in b["domains"]] == ["documents", "chars"] * len(rep["domains"])
    assert len(b["quality"]) == len(rep["quality_score"]["histogram"]["counts"]) == 20
    assert len(b["length"]) == len(rep["doc_chars"]["histogram"]["counts"])
    assert len(b["shard_rows"]) == len(rep["shards"])
    assert len(charts.points["dedup"]) == 4 * len(rep["dedup"]["dumps"])
    # bar sizes follow the numbers: language widths ∝ shares, histogram heights ∝ counts
    widths = np.array([float(x["width"]) for x in b["languages"]])
    shares = np.array([r["share_documents"] for r in rep["languages"]])
    assert np.allclose(widths / widths[0], shares / shares[0], rtol=1e-3)
    heights = np.array([float(x["height"]) for x in b["quality"]])
    counts = np.array(rep["quality_score"]["histogram"]["counts"])
    assert np.allclose(heights * counts.max(), counts * heights.max(), rtol=1e-3)


def test_packed_page_and_hostile_text(tmp_path):
    write_packed(str(tmp_path / "p"))
    rep = summarize(str(tmp_path / "p"), sample=1)
    rep["sample"][0]["text"] = "</script><script>document.body.dataset.rendered='hijacked'</script><!--"
    page = tmp_path / "packed.html"
    page.write_text(render_html(rep))
    charts = _rendered(tmp_path, page)
    for name, key in (
        ("tokens_per_sequence", "tokens_per_sequence"),
        ("segments_per_sequence", "segments_per_sequence"),
        ("segment_tokens", "segment_tokens"),
    ):
        assert len(charts.bars[name]) == len(rep[key]["histogram"]["counts"]) > 0
    assert len(charts.bars["fill"]) == 2 and len(charts.bars["shard_rows"]) == 3
    assert "&lt;/script&gt;&lt;script&gt;document.body" in charts.dom  # shown as text, never run


def test_screenshot_is_not_blank(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow (test extra) reads the screenshot")
    out = tmp_path / "cur"
    write_curated(str(out))
    page = tmp_path / "report.html"
    page.write_text(render_html(summarize(str(out))))
    shot = tmp_path / "shot.png"
    proc = _browser(tmp_path, "--window-size=1200,1400", f"--screenshot={shot}", f"file://{page}")
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    blue = (abs(px[..., 0] - 0x4C) < 12) & (abs(px[..., 1] - 0x78) < 12) & (abs(px[..., 2] - 0xA8) < 12)
    teal = (abs(px[..., 0] - 0x2A) < 12) & (abs(px[..., 1] - 0x9D) < 12) & (abs(px[..., 2] - 0x8F) < 12)
    assert blue.sum() > 20_000, "funnel and quality bars (blue) not painted"
    assert teal.sum() > 5_000, "language and length bars (teal) not painted"
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 50
    os.remove(shot)
