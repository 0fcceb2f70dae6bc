"""Parquet output: the shard writer (zstd, Arrow batches, atomic publish with size and sha256),
the final shards (dedup removals applied; every surviving document once), `manifest.json` and `stats.json`.

Final shards are planned from the per-input files in input order: consecutive inputs fill a shard
until it holds `shard_rows` rows (an input is never split), so the plan, and with it every shard's
content, depends only on the inputs and the config; any number of tasks can write them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dsllm import storage
from dsllm.curation.document import SCHEMA, Document
from dsllm.curation.stage import StageCounts


class ParquetShardWriter:
    """Writes Documents or Arrow batches of `SCHEMA` (or `schema`: batches only) to one zstd Parquet file, `batch_rows` rows per
    row group, and publishes it at `uri` only when the block completes (`rows`, `bytes`, `sha256`)."""

    def __init__(self, uri: str, batch_rows: int = 2000, compression_level: int = 3, schema: pa.Schema = SCHEMA):
        self.uri, self.batch_rows, self.level, self.schema = uri, batch_rows, compression_level, schema
        self.rows = self.bytes = 0
        self.sha256 = ""
        self._buf: list[Document] = []

    def __enter__(self) -> ParquetShardWriter:
        tmp_dir = None if storage.is_remote(self.uri) else os.path.dirname(os.path.abspath(self.uri))
        if tmp_dir:
            os.makedirs(tmp_dir, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=".shard-", suffix=".parquet.tmp", dir=tmp_dir)
        os.close(fd)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd", compression_level=self.level)
        return self

    def add(self, doc: Document) -> None:
        self._buf.append(doc)
        if len(self._buf) >= self.batch_rows:
            self._flush()

    def write_batch(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows:
            self._writer.write(batch, row_group_size=self.batch_rows)
            self.rows += batch.num_rows

    def _flush(self) -> None:
        if self._buf:
            self.write_batch(documents_to_batch(self._buf))
            self._buf = []

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._flush()
            self._writer.close()
            if exc_type is None:
                self.bytes, self.sha256 = os.path.getsize(self._tmp), _sha256(self._tmp)
                if storage.is_remote(self.uri):
                    storage.upload_file(self._tmp, self.uri)
                else:
                    os.replace(self._tmp, self.uri)
        finally:
            if os.path.exists(self._tmp):
                os.remove(self._tmp)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def documents_to_batch(docs: list[Document]) -> pa.RecordBatch:
    cols = {
        "id": [d.id for d in docs],
        "text": [d.text for d in docs],
        "url": [d.url for d in docs],
        "crawl": [d.crawl for d in docs],
        "lang": [d.lang for d in docs],
        "lang_score": [d.lang_score for d in docs],
        "quality_score": [d.quality_score for d in docs],
        "domain": [d.domain for d in docs],
        "n_chars": [len(d.text) for d in docs],
        "warc_file": [d.warc_file for d in docs],
        "signals": [json.dumps(d.signals, ensure_ascii=False, sort_keys=True) for d in docs],
    }
    return pa.RecordBatch.from_pydict(cols, schema=SCHEMA)


def plan_shards(rows: list[int], target: int) -> list[list[int]]:
    """Group consecutive source indices into shards of about `target` rows (sources not split)."""
    groups: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for i, n in enumerate(rows):
        current.append(i)
        filled += n
        if filled >= target:
            groups.append(current)
            current, filled = [], 0
    if current and filled:
        groups.append(current)
    elif current and groups:
        groups[-1].extend(current)
    return groups


def _filtered_batches(docs_uri: str, removed: list[str], batch_rows: int) -> Iterable[pa.RecordBatch]:
    drop = pa.array(removed, type=pa.string()) if removed else None
    with storage.open_random(docs_uri) as f:  # Parquet needs seeks: ranged reads on S3
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
            if drop is not None:
                batch = batch.filter(pc.invert(pc.is_in(batch.column("id"), value_set=drop)))
            yield batch


def group_sums(batch: pa.RecordBatch | pa.Table, key: str, into: dict) -> None:
    """Add {key value: {"documents", "chars"}} of a batch into `into`."""
    if not batch.num_rows:
        return
    t = pa.table({"k": batch.column(key), "c": batch.column("n_chars").cast(pa.int64())})
    for row in t.group_by("k").aggregate([("c", "count"), ("c", "sum")]).to_pylist():
        slot = into.setdefault(row["k"], {"documents": 0, "chars": 0})
        slot["documents"] += row["c_count"]
        slot["chars"] += row["c_sum"]


def write_final_shard(task: dict) -> dict:
    """Write OUT/shards/part-NNNNN.parquet from its sources; returns its manifest entry and counts."""
    rel = f"shards/part-{task['index']:05d}.parquet"
    langs: dict = {}
    domains: dict = {}
    text_bytes = 0
    with ParquetShardWriter(storage.join(task["out"], rel), task["batch_rows"], task["level"]) as w:
        for docs_uri, removed in task["sources"]:
            for batch in _filtered_batches(docs_uri, removed, task["batch_rows"]):
                w.write_batch(batch)
                group_sums(batch, "lang", langs)
                group_sums(batch, "domain", domains)
                text_bytes += int(pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0)
    return {
        "path": rel,
        "rows": w.rows,
        "bytes": w.bytes,
        "sha256": w.sha256,
        "languages": langs,
        "domains": domains,
        "text_bytes": text_bytes,
    }


def merge_sums(items: Iterable[dict]) -> dict:
    out: dict = {}
    for item in items:
        for k, v in item.items():
            slot = out.setdefault(k, {"documents": 0, "chars": 0})
            slot["documents"] += v["documents"]
            slot["chars"] += v["chars"]
    return dict(sorted(out.items(), key=lambda kv: (-kv[1]["chars"], kv[0])))


def versions() -> dict:
    from importlib import metadata

    out = {}
    for pkg in (
        "dsllm",
        "fastwarc",
        "resiliparse",
        "pyarrow",
        "ray",
        "fasttext-numpy2-wheel",
        "datasketch",
        "trafilatura",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def check_funnel(stages: list[StageCounts], final_rows: int) -> None:
    """SPEC invariants: each stage balances, each `in` is the previous `out`, the last `out` is the
    rows in shards/. Broken invariants are bugs: fail loudly."""
    prev = None
    for c in stages:
        if not c.balanced():
            raise AssertionError(f"stats: stage {c.name} does not balance: {c.to_json()}")
        if prev is not None and c.n_in != prev.n_out:
            raise AssertionError(f"stats: stage {c.name} in={c.n_in} != {prev.name} out={prev.n_out}")
        prev = c
    if prev is not None and prev.n_out != final_rows:
        raise AssertionError(f"stats: last stage out={prev.n_out} != rows in shards {final_rows}")
