"""Dropped documents kept for inspection: `OUT/dropped/` (datatrove's exclusion writers' role).

Every stage counts its drops under a stable reason (`StageCounts`); this module keeps the dropped
documents themselves, each with its stage, its reason and the value that decided (`Stage.deciding`:
the Gopher ratio, the language score, the blocked URL entry, the duplicated kept document):

- per input, `DropRecorder` keeps the first `dropped.keep` drops of each (stage, reason) in input
  order (or every drop with `dropped.all`), written to `OUT/_work/inputs/<key>/dropped.parquet`
  with the input's other outputs, before its completion marker: a rerun after a crash writes the
  same rows once;
- after dedup, `publish_dropped` adds the exact and near duplicates (read back from the per-input
  documents by row) and publishes `OUT/dropped/`: in sample mode one file `samples.parquet`
  holding, per (stage, reason), the first `keep` rows in input order over all inputs (inputs in
  the order of the command line, drops in record order; dedup drops in the order of the kept
  per-input rows); in `all` mode one `part-NNNNN.parquet` per input with all of its drops, so the
  rows per (stage, reason) equal the counts in `stats.json`.

Columns (`DROPPED_SCHEMA`): stage, reason, value (float, null when the reason has no measured
value), detail (the language, the blocked entry, the input's status line...), duplicate_of (the
id of the kept document a duplicate matched, when known), id, url, crawl, lang, warc_file,
n_chars (of the full text; null when the drop happened before there was text), text (the document
as the dropping stage judged it, after earlier stages' edits such as C4's line removal; at most
`dropped.text_chars` characters in sample mode, whole in `all` mode).
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from dsllm import storage
from dsllm.curation.document import Document, document_id

DROPPED_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("value", pa.float64()),
        ("detail", pa.string()),
        ("duplicate_of", pa.string()),
        ("id", pa.string()),
        ("url", pa.string()),
        ("crawl", pa.string()),
        ("lang", pa.string()),
        ("warc_file", pa.string()),
        ("n_chars", pa.int64()),
        ("text", pa.large_string()),
    ]
)
SAMPLES_FILE = "samples.parquet"


@dataclasses.dataclass(frozen=True)
class DroppedConfig:
    keep: int = 5  # dropped documents kept per stage and reason (first in input order); 0 = none
    all: bool = False  # keep every dropped document (audits); `--keep-dropped all`
    text_chars: int = 2_000  # text kept per sample (whole text in `all` mode)

    def __post_init__(self):
        if self.keep < 0 or self.text_chars < 0:
            raise ValueError("dropped.keep and dropped.text_chars must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.all or self.keep > 0

    @property
    def cap(self) -> int | None:
        """Rows kept per (stage, reason); None = all."""
        return None if self.all else self.keep

    @property
    def chars(self) -> int | None:
        return None if self.all else self.text_chars


def parse_keep_dropped(value: str) -> list[str]:
    """`--keep-dropped N|all` as config overrides."""
    from dsllm.errors import UserError

    v = value.strip().lower()
    if v == "all":
        return ["dropped.all=true"]
    if not v.isdigit():
        raise UserError(f"--keep-dropped {value}: expected a number (per stage and reason) or 'all'")
    return [f"dropped.keep={int(v)}", "dropped.all=false"]


@dataclasses.dataclass
class DroppedItem:
    """What a stage knows about a dropped item that is not a Document (a WARC record, a page)."""

    record_id: str = ""
    url: str = ""
    text: str | None = None


class DropRecorder:
    """Collects one input's dropped documents (the first `cap` per stage and reason, or all) and
    writes them as Parquet, `batch_rows` at a time (only the rows it keeps are materialised)."""

    def __init__(self, cfg: DroppedConfig, warc_file: str, id_base: str, crawl=lambda: ""):
        self.cap, self.chars = cfg.cap, cfg.chars
        self.warc_file, self.id_base, self.crawl = warc_file, id_base, crawl
        self.seen: Counter = Counter()
        self.rows: list[dict] = []
        self.writer = None

    def wants(self, stage: str, reason: str) -> bool:
        """Whether the next drop of (stage, reason) is kept (counts it when so)."""
        key = (stage, reason)
        if self.cap is not None and self.seen[key] >= self.cap:
            return False
        self.seen[key] += 1
        return True

    def add(self, stage, item, reason: str) -> None:
        value, detail = stage.deciding(item, reason)
        if isinstance(item, Document):
            doc_id, url, text, lang, crawl = item.id, item.url, item.text, item.lang, item.crawl
        else:
            info = stage.describe(item) if item is not None else DroppedItem()
            doc_id = document_id(self.id_base, info.record_id) if info.record_id else ""
            url, text, lang, crawl = info.url, info.text, "", ""
        self.rows.append(
            {
                "stage": stage.name,
                "reason": reason,
                "value": None if value is None else float(value),
                "detail": detail,
                "duplicate_of": None,
                "id": doc_id,
                "url": url,
                "crawl": crawl or self.crawl(),
                "lang": lang,
                "warc_file": self.warc_file,
                "n_chars": None if text is None else len(text),
                "text": text if text is None or self.chars is None else text[: self.chars],
            }
        )
        if self.writer is not None and len(self.rows) >= self.writer.batch_rows:
            self.flush()

    def flush(self) -> None:
        if self.rows and self.writer is not None:
            self.writer.write_batch(pa.Table.from_pylist(self.rows, schema=DROPPED_SCHEMA))
            self.rows = []

    def counts(self) -> dict[str, int]:
        """Rows kept per `stage:reason`."""
        return {f"{s}:{r}": n for (s, r), n in sorted(self.seen.items())}


def dropped_uri(wdir: str) -> str:
    return storage.join(wdir, "dropped.parquet")


def _read(uri: str) -> pa.Table:
    from dsllm.curation.dedup.signatures import read_parquet

    if not storage.exists(uri):
        return DROPPED_SCHEMA.empty_table()
    return read_parquet(uri).cast(DROPPED_SCHEMA)


def dedup_rows(docs_uri: str, removed: pa.Table, chars: int | None) -> pa.Table:
    """The dedup drops of one per-input file as dropped rows: `removed` has row, reason (stage
    name:reason), duplicate_of; the documents are read back by row."""
    from dsllm.curation.dedup.signatures import read_parquet

    if removed.num_rows == 0:
        return DROPPED_SCHEMA.empty_table()
    removed = removed.sort_by("row")
    docs = read_parquet(docs_uri, columns=["id", "text", "url", "crawl", "lang", "warc_file"]).take(
        removed.column("row")
    )
    text = docs.column("text")
    stage_reason = removed.column("reason").to_pylist()
    return pa.table(
        {
            "stage": pa.array([sr.split(":", 1)[0] for sr in stage_reason], pa.string()),
            "reason": pa.array([sr.split(":", 1)[1] for sr in stage_reason], pa.string()),
            "value": pa.nulls(removed.num_rows, pa.float64()),
            "detail": pa.nulls(removed.num_rows, pa.string()),
            "duplicate_of": removed.column("duplicate_of").cast(pa.string()),
            "id": docs.column("id").cast(pa.string()),
            "url": docs.column("url").cast(pa.string()),
            "crawl": docs.column("crawl").cast(pa.string()),
            "lang": docs.column("lang").cast(pa.string()),
            "warc_file": docs.column("warc_file").cast(pa.string()),
            "n_chars": pc.utf8_length(text).cast(pa.int64()),
            "text": (text if chars is None else pc.utf8_slice_codeunits(text, 0, chars)).cast(pa.large_string()),
        },
        schema=DROPPED_SCHEMA,
    )


def _cap(table: pa.Table, cap: int, taken: Counter) -> pa.Table:
    """The rows of `table` (in order) whose (stage, reason) has not reached `cap` yet in `taken`."""
    if table.num_rows == 0:
        return table
    keep = []
    for i, key in enumerate(zip(table.column("stage").to_pylist(), table.column("reason").to_pylist())):
        if taken[key] < cap:
            taken[key] += 1
            keep.append(i)
    return table.take(pa.array(keep, pa.int64()))


def _removed(uri: str | None) -> pa.Table:
    """One input's dedup removals (row, reason as `stage:reason`, duplicate_of); empty without dedup."""
    from dsllm.curation.dedup.signatures import read_parquet

    if uri is None:
        return pa.table(
            {
                "row": pa.array([], pa.int64()),
                "reason": pa.array([], pa.string()),
                "duplicate_of": pa.array([], pa.string()),
            }
        )
    return read_parquet(uri, columns=["row", "reason", "duplicate_of"])


def publish_task(task: dict) -> dict:
    """`all` mode: OUT/dropped/part-NNNNN.parquet for one input (its stage drops, then its dedup
    drops); returns the path and the rows per `stage:reason`."""
    from dsllm.curation.shards import ParquetShardWriter

    rel = f"dropped/part-{task['index']:05d}.parquet"
    rows: Counter = Counter()
    with ParquetShardWriter(
        storage.join(task["out"], rel), task["batch_rows"], task["level"], schema=DROPPED_SCHEMA
    ) as w:
        for table in (_read(task["dropped"]), dedup_rows(task["docs"], _removed(task["removed"]), None)):
            w.write_batch(table)
            rows.update(_keys(table))
    return {"path": rel, "rows": dict(rows)}


def _first_per_reason(removed: pa.Table, keep: int, taken: Counter) -> pa.Table:
    """The first rows (by row) of each dedup reason that still lacks samples (updates `taken`)."""
    import pyarrow.compute as pc

    removed = removed.sort_by("row")
    parts = []
    for sr in pc.unique(removed.column("reason")).to_pylist():
        key = tuple(sr.split(":", 1))
        need = keep - taken[key]
        if need > 0:
            part = removed.filter(pc.equal(removed.column("reason"), sr)).slice(0, need)
            taken[key] += part.num_rows
            parts.append(part)
    return pa.concat_tables(parts).sort_by("row") if parts else removed.slice(0, 0)


def publish_dropped(out: str, done: list[dict], removed: list[str | None], totals: dict, cfg, executor) -> dict:
    """Publish OUT/dropped/ from the finished inputs (`done`, in input order) and their dedup
    removals (`removed[i]`: the uri of `done[i]`'s removed rows, None without dedup); `totals`
    are the run's drops per (stage, reason), so sample mode stops reading once every reason has
    its `keep` rows. Stale files of an earlier run are removed. Returns stats.json's
    `dropped_samples` entry."""
    from dsllm.curation.shards import ParquetShardWriter

    dcfg: DroppedConfig = cfg.dropped
    paths: list[str] = []
    rows: Counter = Counter()
    if dcfg.all:
        tasks = [
            {
                "out": out,
                "index": i,
                "dropped": dropped_uri(storage.join(out, "_work", "inputs", r["key"])),
                "docs": r["docs"],
                "removed": removed[i],
                "batch_rows": cfg.output.batch_rows,
                "level": cfg.output.compression_level,
            }
            for i, r in enumerate(done)
        ]
        for res in executor.map(publish_task, tasks, label="curate/dropped"):
            paths.append(res["path"])
            rows.update(res["rows"])
    elif dcfg.keep > 0:
        want = {k: min(dcfg.keep, n) for k, n in totals.items()}
        taken: Counter = Counter()
        stage_parts, dedup_parts = [], []

        def missing(keys) -> bool:
            return any(taken[k] < want.get(k, 0) for k in keys)

        for i, r in enumerate(done):
            if not missing(want):
                break
            own = [tuple(k.split(":", 1)) for k in r.get("dropped_rows", {})]
            if missing(own):  # an input whose reasons all have their rows already is not read
                stage_parts.append(
                    _cap(_read(dropped_uri(storage.join(out, "_work", "inputs", r["key"]))), dcfg.keep, taken)
                )
            if removed[i] is not None and missing(k for k in want if k[0] in ("exact_dedup", "minhash_dedup")):
                t = _first_per_reason(_removed(removed[i]), dcfg.keep, taken)
                if t.num_rows:
                    dedup_parts.append(dedup_rows(r["docs"], t, dcfg.text_chars))
        table = pa.concat_tables([DROPPED_SCHEMA.empty_table()] + stage_parts + dedup_parts)
        with ParquetShardWriter(
            storage.join(out, "dropped", SAMPLES_FILE),
            cfg.output.batch_rows,
            cfg.output.compression_level,
            schema=DROPPED_SCHEMA,
        ) as w:
            w.write_batch(table)
        paths.append(f"dropped/{SAMPLES_FILE}")
        rows.update(_keys(table))
    keep_set = set(paths)
    for f in storage.list_files(storage.join(out, "dropped")):
        rel = "dropped/" + f.uri.replace("\\", "/").rsplit("/", 1)[-1]
        if rel not in keep_set and rel.endswith(".parquet"):
            storage.remove(f.uri)
    return {
        "mode": "all" if dcfg.all else "sample",
        "keep": None if dcfg.all else dcfg.keep,
        "files": paths,
        "rows": dict(sorted(rows.items())),
    }


def _keys(table: pa.Table) -> list[str]:
    """`stage:reason` of every row."""
    return [f"{s}:{r}" for s, r in zip(table.column("stage").to_pylist(), table.column("reason").to_pylist())]


def read_dropped(out: str, files: list[str] | None = None) -> pa.Table:
    """Every published dropped row of a curated OUT (in file order)."""
    from dsllm.curation.dedup.signatures import read_parquet

    uris = (
        [storage.join(out, p) for p in files]
        if files is not None
        else sorted(f.uri for f in storage.list_files(storage.join(out, "dropped")) if f.uri.endswith(".parquet"))
    )
    tables = [read_parquet(u).cast(DROPPED_SCHEMA) for u in uris]
    return pa.concat_tables([DROPPED_SCHEMA.empty_table()] + tables)
