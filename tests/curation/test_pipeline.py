"""The curate run without the CLI: funnel invariants, manifest, resume after a kill, failures, --skip."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dsllm.curation.config import CurateConfig
from dsllm.curation.document import SCHEMA
from dsllm.curation.executor import LocalExecutor
from dsllm.curation.pipeline import process_input, replace_skip, work_dir
from dsllm.curation.run import run_curate
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
from dsllm.curation.sources import InputSpec, resolve_inputs
from dsllm.errors import UserError
from dsllm.jobs.runner import RayExecutor
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def crawl(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crawl")
    write_sample_crawl(str(root), SampleCrawlConfig(warcs=3, records=40, seed=1))
    return root


def quiet(*a):
    pass


def documents(out: Path) -> list[dict]:
    rows = []
    for shard in sorted((out / "shards").glob("part-*.parquet")):
        rows += pq.read_table(shard).to_pylist()
    return rows


STAGES = [
    "read",
    "extract",
    "decontaminate",
    "langid",
    "gopher_quality",
    "gopher_repetition",
    "c4",
    "fineweb",
    "url_filter",
    "pii",
    "exact_dedup",
    "minhash_dedup",
]


def run_and_check_funnel(specs, out: Path) -> tuple[dict, dict, list[dict]]:
    """Run every stage (small shards, so there are several) and check what holds for any input: the
    funnel chains and balances, shards match the manifest, rows are well formed. Returns
    (stats, manifest, rows)."""
    cfg = dataclasses.replace(CurateConfig(), output=dataclasses.replace(CurateConfig().output, shard_rows=40))
    result = run_curate(specs, str(out), cfg, LocalExecutor(), log=quiet)
    assert not result.failed
    stats = json.loads((out / "stats.json").read_text())
    assert [s["name"] for s in stats["stages"]] == STAGES
    for prev, cur in zip(stats["stages"], stats["stages"][1:]):
        assert cur["in"] == prev["out"]
    for s in stats["stages"]:
        assert s["in"] + s["added"] == s["out"] + sum(s["dropped"].values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert stats["stages"][0]["in"] == sum(i["records"] for i in manifest["inputs"])
    rows = documents(out)
    assert (
        stats["stages"][-1]["out"]
        == len(rows)
        == stats["totals"]["documents"]
        == sum(s["rows"] for s in manifest["shards"])
    )
    assert len(manifest["shards"]) > 1
    for shard in manifest["shards"]:
        data = (out / shard["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard["sha256"] and len(data) == shard["bytes"]
        assert pq.read_schema(out / shard["path"]).equals(SCHEMA, check_metadata=False)
        assert pq.ParquetFile(out / shard["path"]).metadata.row_group(0).column(0).compression == "ZSTD"
    assert {r["lang"] for r in rows} == {"en", "zh"} and set(stats["languages"]) == {"en", "zh"}
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["n_chars"] == len(r["text"]) and 0 <= r["quality_score"] <= 1 for r in rows)
    assert {"n_words", "dup_lines", "line_punct_ratio", "charset"} <= set(json.loads(rows[0]["signals"]))
    # every surviving document once, counted by domain: the natural mix is the shards' own
    from collections import Counter

    assert {d: v["documents"] for d, v in stats["domains"]["natural"].items()} == Counter(r["domain"] for r in rows)
    assert "remixed" not in stats["domains"]
    assert json.loads((out / "config.json").read_text())["langid"]["languages"] == ["en", "zh"]
    # a rerun of a complete run does nothing and changes nothing
    again = run_curate(specs, str(out), cfg, LocalExecutor(), log=quiet)
    assert again.skipped_complete and documents(out) == rows
    return stats, manifest, rows


KEPT_CATEGORIES = {"good", "exact_duplicate", "near_duplicate"}  # the sample crawl's pages worth keeping


def test_funnel_on_a_generated_crawl_against_its_ground_truth(crawl, tmp_path):
    """Runs on a plain clone: the sample crawl's sample-crawl.json says what every record is."""
    truth = json.loads((crawl / "sample-crawl.json").read_text())
    stats, manifest, rows = run_and_check_funnel(resolve_inputs([str(crawl)]), tmp_path / "out")
    read = next(s for s in stats["stages"] if s["name"] == "read")
    records = truth["summary"]["warc_records"]
    captures = truth["captures"]
    assert read["in"] == sum(records.values())
    for kind in ("warcinfo", "request", "metadata"):
        assert read["dropped"][f"record_{kind}"] == records[kind]
    not_ok = sum(c["status"] != 200 for c in captures)
    not_html = sum(c["payload_type"] not in (None, "text/html") for c in captures)
    n_category = lambda name: sum(c["category"] == name for c in captures)  # noqa: E731
    assert read["dropped"]["http_not_200"] == not_ok and read["dropped"]["not_html"] == not_html
    assert read["dropped"]["empty_payload"] == n_category("empty_payload")
    assert read["dropped"]["bad_http_header"] == n_category("malformed_http_header")
    assert read["out"] == len(captures) - not_ok - not_html - n_category("empty_payload") - n_category(
        "malformed_http_header"
    )
    # every kept row is one capture worth keeping, in its language and crawl; junk never survives
    by_page = {(c["warc"].rsplit("/", 1)[-1], c["url"]): i for i, c in enumerate(captures)}
    sources = {by_page[(r["warc_file"].rsplit("/", 1)[-1], r["url"])] for r in rows}
    for r in rows:
        c = captures[by_page[(r["warc_file"].rsplit("/", 1)[-1], r["url"])]]
        assert c["category"] in KEPT_CATEGORIES and (r["lang"], r["crawl"]) == (c["lang"], c["crawl"]), c
    # of an exact or near duplicate and its original, at most one is kept
    dups = [(i, c["dup_of"]) for i, c in enumerate(captures) if c["dup_of"] is not None]
    assert dups and not any(i in sources and j in sources for i, j in dups)
    removed = sum(s["dropped"].get(k, 0) for s in stats["stages"] for k in ("exact_duplicate", "near_duplicate"))
    assert 0 < removed <= len(dups)


def test_funnel_with_real_common_crawl_excerpts(crawl, tmp_path):
    """The same run over real Common Crawl excerpts from ../shared beside the sample crawl."""
    specs = resolve_inputs([str(crawl), str(shared_path("data", "warc"))])
    stats, manifest, rows = run_and_check_funnel(specs, tmp_path / "out")
    assert stats["stages"][0]["in"] == 3 * (1 + 40 * 3) + 50 + 4 + 2  # sample WARCs + the real excerpts
    assert "CC-MAIN-2024-10" in {r["crawl"] for r in rows} <= {"CC-MAIN-2024-10", "CC-MAIN-2020-34", "CC-MAIN-2024-22"}


def test_killed_run_resumes_to_the_same_documents(crawl, tmp_path):
    specs = resolve_inputs([str(crawl)])
    cfg = CurateConfig()
    whole = tmp_path / "whole"
    run_curate(specs, str(whole), cfg, LocalExecutor(), log=quiet)
    killed = tmp_path / "killed"
    # the "killed" run finished one input, left a half-written temp file for another, and nothing else
    first = process_input(specs[0], cfg, str(killed))
    assert first["status"] == "done" and first["documents"] > 0
    half = Path(work_dir(str(killed), specs[1]))
    half.mkdir(parents=True)
    (half / ".shard-partial.parquet.tmp").write_bytes(b"PAR1 half a file")
    assert process_input(specs[0], cfg, str(killed)).get("skipped")  # finished inputs are skipped
    run_curate(specs, str(killed), cfg, LocalExecutor(), log=quiet)
    assert documents(killed) == documents(whole)
    assert (
        json.loads((killed / "stats.json").read_text())["stages"]
        == json.loads((whole / "stats.json").read_text())["stages"]
    )


def test_failed_input_is_recorded_and_retried_alone_on_rerun(crawl, tmp_path):
    good = resolve_inputs([str(crawl)])[:2]
    missing = tmp_path / "later" / "CC-MAIN-2024-10-late.warc.gz"
    specs = good + [InputSpec(str(missing), "CC-MAIN-2024-10")]
    cfg = dataclasses.replace(CurateConfig(), run=dataclasses.replace(CurateConfig().run, retries=1))
    out = tmp_path / "out"
    result = run_curate(specs, str(out), cfg, LocalExecutor(), log=quiet)
    assert [f["uri"] for f in result.failed] == [str(missing)]
    manifest = json.loads((out / "manifest.json").read_text())
    status = {i["uri"]: (i["status"], i["error"]) for i in manifest["inputs"]}
    assert status[str(missing)][0] == "failed" and "no such file" in status[str(missing)][1]
    assert all(status[s.uri] == ("done", None) for s in good)
    assert documents(out) and not (out / "_work" / "complete.json").exists()
    missing.parent.mkdir()
    shutil.copy(good[0].uri, missing)
    result = run_curate(specs, str(out), cfg, LocalExecutor(), log=quiet)
    assert not result.failed
    assert [bool(r.get("skipped")) for r in result.inputs] == [True, True, False]
    assert (out / "_work" / "complete.json").exists()


def test_skip_stages(crawl, tmp_path):
    specs = resolve_inputs([str(crawl)])[:1]
    cfg = replace_skip(CurateConfig(), ["minhash_dedup", "c4", "pii"])
    run_curate(specs, str(tmp_path), cfg, LocalExecutor(), log=quiet)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert [s["name"] for s in stats["stages"]] == [
        "read",
        "extract",
        "decontaminate",
        "langid",
        "gopher_quality",
        "gopher_repetition",
        "fineweb",
        "url_filter",
        "exact_dedup",
    ]
    assert stats["skipped"] == ["minhash_dedup", "c4", "pii"]
    with pytest.raises(UserError, match="unknown stage"):
        replace_skip(CurateConfig(), ["dedupe"])
    with pytest.raises(UserError, match="cannot be skipped"):
        replace_skip(CurateConfig(), ["read"])


def test_ray_executor_gives_the_same_documents(crawl, tmp_path, ray_local):
    specs = resolve_inputs([str(crawl)])
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    run_curate(specs, str(local), CurateConfig(), LocalExecutor(), log=quiet)
    run_curate(specs, str(ray_out), CurateConfig(), RayExecutor(quiet=True), log=quiet)
    assert documents(ray_out) == documents(local)
