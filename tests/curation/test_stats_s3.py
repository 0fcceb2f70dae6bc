"""`dsllm stats` on s3:// output (moto's S3 server over HTTP): same numbers as local, footers and
columns read with ranged GETs only, bytes re-read only with --verify."""

from __future__ import annotations

import json
import os

from dsllm import storage
from dsllm.curation.report import summarize
from tests.conftest import run_cli
from tests.curation.test_stats_builders import write_curated, write_packed


def _upload(local: str, uri: str) -> None:
    for f in storage.list_files(local):
        storage.upload_file(f.uri, storage.join(uri, os.path.relpath(f.uri, local)))


def _without_paths(rep: dict) -> dict:
    rep = json.loads(json.dumps(rep))
    rep.pop("path")
    return rep


def _record_gets(client, log: list) -> None:
    def before_send(request, **_):
        if request.method == "GET" and "list-type" not in request.url:
            rng = request.headers.get("Range")
            log.append(rng.decode() if isinstance(rng, bytes) else rng)

    client.meta.events.register("before-send.s3.GetObject", before_send)


def test_s3_curated_matches_local_with_ranged_reads(tmp_path, s3_bucket):
    write_curated(str(tmp_path / "cur"), shard_rows=(30, 30, 30, 9))
    _upload(str(tmp_path / "cur"), f"s3://{s3_bucket}/runs/cur")
    local = summarize(str(tmp_path / "cur"), sample=3, verify=True)
    gets: list = []
    for client in {id(c): c for c in (storage.s3_client(), storage.shared_s3_client())}.values():
        _record_gets(client, gets)  # manifest/stats via this thread's client, shards via the shared one
    remote = summarize(f"s3://{s3_bucket}/runs/cur", threads=1)
    assert remote["path"] == f"s3://{s3_bucket}/runs/cur"
    # manifest.json + stats.json are whole reads; every shard read is ranged (footer + column chunks)
    assert len([g for g in gets if g is None]) == 2, gets
    assert len([g for g in gets if g]) >= 8 and all(g.startswith("bytes=") for g in gets if g)
    local_plain = summarize(str(tmp_path / "cur"))
    assert _without_paths(remote) == _without_paths(local_plain)

    remote = summarize(f"s3://{s3_bucket}/runs/cur", sample=3, verify=True)
    assert _without_paths(remote) == _without_paths(local)
    assert [r["sha256"] for r in remote["shards"]] == ["ok"] * 4

    storage.remove(f"s3://{s3_bucket}/runs/cur/shards/part-00001.parquet")
    proc = run_cli("stats", f"s3://{s3_bucket}/runs/cur", "--json")
    assert proc.returncode == 1, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["shards"][1]["flags"] == ["missing"]


def test_s3_packed_and_errors(tmp_path, s3_bucket):
    write_packed(str(tmp_path / "p"))
    _upload(str(tmp_path / "p"), f"s3://{s3_bucket}/packed")
    rep = summarize(f"s3://{s3_bucket}/packed", verify=True)
    assert _without_paths(rep) == _without_paths(summarize(str(tmp_path / "p"), verify=True))
    proc = run_cli("stats", f"s3://{s3_bucket}/nothing-here")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"dsllm stats: error: s3://{s3_bucket}/nothing-here: neither curated nor packed output nor a mixture (no manifest.json / mixture.json)"
    )
