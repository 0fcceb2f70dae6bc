"""`dsllm curate` as a user runs it: cc:CRAWL over HTTP, S3 output, a failing input, resume, errors."""

from __future__ import annotations

import collections
import shutil

from dsllm import storage
from dsllm.config import load_config
from dsllm.curation.config import CurateConfig
from dsllm.curation.dropped import read_dropped
from dsllm.curation.executor import LocalExecutor
from dsllm.curation.pipeline import replace_skip
from dsllm.curation.run import run_curate
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
from dsllm.curation.sources import resolve_inputs
from tests.conftest import run_cli


def test_cc_crawl_over_http_to_s3_with_a_failing_input_then_resume(tmp_path, http_server, s3_bucket):
    root = tmp_path / "mirror"
    write_sample_crawl(str(root), SampleCrawlConfig(warcs=2, records=20, seed=3))
    base = http_server(root)
    late = "crawl-data/late/CC-MAIN-2024-10-late.warc.gz"
    out = f"s3://{s3_bucket}/run1"
    args = [
        "curate",
        "cc:CC-MAIN-2024-10",
        base + late,
        "--cc-base",
        base,
        "--limit",
        "2",
        "--output",
        out,
        "--set",
        "run.retries=0",
        "--skip",
        "minhash_dedup",
    ]
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    assert "1 input(s) failed" in proc.stderr and late in proc.stderr.splitlines()[-1]
    manifest = storage.read_json(f"{out}/manifest.json")
    status = [(i["uri"].replace(base, ""), i["status"]) for i in manifest["inputs"]]
    assert status[2] == (late, "failed") and [s for _, s in status[:2]] == ["done", "done"]
    assert "HTTP 404" in manifest["inputs"][2]["error"] or "not found" in manifest["inputs"][2]["error"]
    stats = storage.read_json(f"{out}/stats.json")
    assert stats["stages"][0]["in"] == 2 * (1 + 20 * 3)
    assert stats["stages"][-1]["out"] == sum(s["rows"] for s in manifest["shards"]) > 0
    assert "minhash_dedup" not in [s["name"] for s in stats["stages"]]
    kept = collections.Counter(f"{r['stage']}:{r['reason']}" for r in read_dropped(out).to_pylist())  # over S3
    assert kept == {f"{s['name']}:{r}": min(5, n) for s in stats["stages"] for r, n in s["dropped"].items()}
    for shard in manifest["shards"]:
        assert storage.stat(f"{out}/{shard['path']}").size == shard["bytes"]

    # the rerun (in-process here, to spare a second Ray start) retries only the failed input
    (root / late).parent.mkdir(parents=True)
    first = sorted(root.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz"))[0]
    shutil.copy(first, root / late)
    cfg = replace_skip(load_config(CurateConfig, None, ["run.retries=0"], default="curate.toml"), ["minhash_dedup"])
    specs = resolve_inputs(["cc:CC-MAIN-2024-10", base + late], base, 2)
    result = run_curate(specs, out, cfg, LocalExecutor(), log=lambda *a: None)
    assert not result.failed and [bool(r.get("skipped")) for r in result.inputs] == [True, True, False]
    manifest = storage.read_json(f"{out}/manifest.json")
    assert [i["status"] for i in manifest["inputs"]] == ["done"] * 3
    stats = storage.read_json(f"{out}/stats.json")
    exact = next(s for s in stats["stages"] if s["name"] == "exact_dedup")
    assert exact["dropped"]["exact_duplicate"] >= manifest["inputs"][2]["documents"]  # the copy is all duplicates
    assert storage.exists(f"{out}/_work/complete.json")


def test_user_errors_are_one_line(tmp_path):
    for args, needle in (
        (["curate", str(tmp_path / "none.warc.gz"), "--output", str(tmp_path / "o")], "no such file"),
        (["curate", str(tmp_path), "--output", str(tmp_path / "o"), "--skip", "dedupe"], "unknown stage"),
        (["curate", "cc:CC-MAIN-99", "--output", str(tmp_path / "o")], "crawl name"),
        (["curate", str(tmp_path), "--output", str(tmp_path / "o"), "--set", "langid.threshold=2"], "threshold"),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "Traceback" not in proc.stderr
