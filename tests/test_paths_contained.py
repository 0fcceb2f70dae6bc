"""Names that come from data never lead outside the directory dsllm was given: manifest entries,
checkpoint `weight_map` files and joined keys with `..`, absolute paths, backslashes or control
characters are refused with one clear error (exit 2 on the command line), before anything is read."""

from __future__ import annotations

import json
import shutil

import pytest

from dsllm import storage
from dsllm.errors import UserError
from tests.conftest import run_cli
from tests.curation.test_stats_builders import write_curated

HOSTILE = [
    "../outside.parquet",
    "shards/../../outside.parquet",
    "..",
    "/etc/passwd",
    "C:/x",
    "shards\\..\\x",
    "part\x00.parquet",
    "a\nb",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_join_refuses_names_that_leave_the_base(name):
    for base in ("/tmp/run", "s3://bucket/run"):
        if name.startswith("/") and base.startswith("s3://"):
            assert storage.join(base, name) == "s3://bucket/run/etc/passwd"  # stripped: stays inside
            continue
        with pytest.raises(UserError, match="refused"):
            storage.join(base, name)
    assert storage.join("/tmp/run", "shards/part-00000.parquet") == "/tmp/run/shards/part-00000.parquet"


@pytest.mark.parametrize("entry", ["../outside/shards/part-00000.parquet", "/ABS/shards/part-00000.parquet"])
def test_stats_refuses_a_manifest_entry_outside_the_run(tmp_path, entry):
    run, outside = tmp_path / "run", tmp_path / "outside"
    write_curated(str(run))
    shutil.copytree(run, outside)  # a readable target exists: refusal, not a missing file
    entry = entry.replace("/ABS", str(outside))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["shards"][0]["path"] = entry
    (run / "manifest.json").write_text(json.dumps(manifest))
    proc = run_cli("stats", str(run), "--json")
    assert proc.returncode == 2, proc.stdout[-500:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsllm stats: error:") and "refused" in lines[0], lines
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("shard", ["../model.safetensors", "/etc/passwd", ".."])
def test_checkpoint_index_weight_map_outside_the_folder_is_refused(tiny_llama, tmp_path, shard):
    folder, _ = tiny_llama(shards=2)
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    name = next(iter(data["weight_map"]))
    data["weight_map"][name] = shard
    index.write_text(json.dumps(data))
    shutil.copy(next(folder.glob("*.safetensors")), folder.parent / "model.safetensors")
    proc = run_cli("checkpoint", "export", str(folder), "--output", str(tmp_path / "export"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
