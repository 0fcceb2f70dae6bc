"""`dsllm stats` on real output: a sample crawl of two dumps curated by the real pipeline
(curation.run.run_curate), a tokenizer trained on it and the shards packed by tokenizer.pack — all
in-process with the LocalExecutor — checked against the files themselves."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from dsllm.curation.report import summarize
from dsllm.curation.report.html import render_html


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from dsllm.curation.config import CurateConfig
    from dsllm.curation.executor import LocalExecutor
    from dsllm.curation.run import run_curate
    from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
    from dsllm.curation.sources import resolve_inputs
    from dsllm.tokenizer.pack import PackConfig, pack
    from dsllm.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    root = tmp_path_factory.mktemp("real")
    crawls = ("CC-MAIN-2024-10", "CC-MAIN-2024-18")
    write_sample_crawl(str(root / "crawl"), SampleCrawlConfig(warcs=1, records=60, seed=2, crawls=crawls))
    specs = resolve_inputs([f"cc:{c}" for c in crawls], str(root / "crawl"), None)
    cfg = CurateConfig()
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, shard_rows=25))
    run_curate(specs, str(root / "cur"), cfg, LocalExecutor(), log=lambda *a: None)
    train_tokenizer([str(root / "cur")], str(root / "tok"), TokenizerTrainConfig(vocab_size=600), progress=False)
    pack(
        [str(root / "cur")],
        str(root / "tok"),
        str(root / "packed"),
        PackConfig(seq_len=128),
        LocalExecutor(),
        log=lambda *a: None,
    )
    return root


def test_real_curated_output(real):
    rep = summarize(str(real / "cur"), verify=True, sample=3)
    assert rep["checks"]["ok"], rep["checks"]
    stats = json.loads((real / "cur" / "stats.json").read_text())
    manifest = json.loads((real / "cur" / "manifest.json").read_text())
    docs = [r for s in manifest["shards"] for r in pq.read_table(real / "cur" / s["path"]).to_pylist()]
    assert rep["totals"]["documents"] == len(docs) == stats["stages"][-1]["out"]
    assert rep["shard_summary"]["count"] == len(manifest["shards"]) > 1
    assert rep["totals"]["chars"] == sum(d["n_chars"] for d in docs)
    assert [s["name"] for s in rep["funnel"]] == [s["name"] for s in stats["stages"]]
    assert {r["lang"] for r in rep["languages"]} == set(stats["languages"])
    q = np.array([d["quality_score"] for d in docs], dtype=np.float64)
    assert sum(rep["quality_score"]["histogram"]["counts"]) == len(docs)
    assert rep["quality_score"]["mean"] == pytest.approx(q.mean(), rel=1e-5)
    dumps = rep["dedup"]["dumps"]
    assert [d["crawl"] for d in dumps] == ["CC-MAIN-2024-10", "CC-MAIN-2024-18"]
    assert dumps[1]["removed_against_index"] > 0  # the second dump recrawls part of the first
    by_id = {d["id"]: d for d in docs}
    assert all(s["text"] == by_id[s["id"]]["text"] for s in rep["sample"])
    page = render_html(rep)  # the page embeds exactly the report (its script draws the charts from it)
    start = page.index('<script type="application/json" id="report-data">') + len(
        '<script type="application/json" id="report-data">'
    )
    assert json.loads(page[start : page.index("</script>", start)]) == rep


def test_real_packed_output(real):
    rep = summarize(str(real / "packed"), verify=True, sample=2)
    assert rep["checks"]["ok"] and rep["checks"]["problems"] == [], rep["checks"]
    manifest = json.loads((real / "packed" / "manifest.json").read_text())
    table = pq.read_table(real / "packed" / manifest["shards"][0]["path"])
    p = rep["packed"]
    assert (p["seq_len"], p["sequences"], p["tokens"]) == (128, manifest["rows"], manifest["tokens"])
    assert rep["totals"]["tokens"] == manifest["tokens"]
    assert p["fill"] == pytest.approx(manifest["tokens"] / (manifest["rows"] * 128), abs=1e-6)
    assert p["tokenizer"]["sha256"] == manifest["tokenizer"]["sha256"]
    assert rep["segment_tokens"]["count"] == pytest.approx(
        rep["segments_per_sequence"]["mean"] * rep["segments_per_sequence"]["count"]
    )
    assert rep["segment_tokens"]["mean"] * rep["segment_tokens"]["count"] == pytest.approx(manifest["tokens"])
    assert table.schema.field("input_ids").type.list_size == 128
    # the sample is decoded with the manifest's tokenizer (its sha256 matched: no warning)
    assert all(isinstance(s["text"], str) and s["text"] for s in rep["sample"])
