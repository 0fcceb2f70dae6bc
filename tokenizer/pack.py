"""Tokenize curated shards and pack them into fixed-length rows: PACKED/ (SPEC.md "Packed output").

Every document becomes its tokens followed by EOS (BOS policy below); the documents of the whole
corpus form one stream that is cut into rows of `seq_len` tokens, so a row may hold the end of one
document and the start of the next, and nothing is padded except the very last row.

Unit of work, chosen so the output is the same bytes whatever the number of workers:
1. each source shard i is packed on its own (a Ray task): its stream is cut into row groups of
   `row_group_rows` full rows, written as `part-{i:05d}.parquet`; what is left over (fewer than
   `row_group_rows * seq_len` tokens, possibly the middle of a document) is saved as a *carry*;
2. the carries of all sources, concatenated in source order, are packed by one final step into
   `part-{n:05d}.parquet` (n = number of sources), whose last row is padded with EOS.
So every part but the last holds a multiple of `row_group_rows` rows and every row group is a
whole chunk of the loader's order (trainer/data.py). Packing depends only on the input order,
the tokenizer and the config.

Domains are kept apart (so `dsllm mix` can weight them at training time): every document's
`domain` (the curated column; `default_domain` when a shard has none) picks one of several token
streams, each cut and carried as above, so a row holds documents of one domain and carries it in
its `domain` column. A source's part holds the full row groups of its domains in the order they
fill; the last part holds, domain by domain, the packed carries (one padded row per domain at
most). The manifest lists rows, tokens and documents per domain.

Resuming: a source is done when `_work/source-NNNNN.json` exists (written after its part and
carry are published atomically); a rerun skips done sources. `manifest.json` is written last.

BOS policy ("eos"): DeepSeek LLM's samples are documents joined by EOS, so no BOS is added to the
packed stream (`<｜begin▁of▁sentence｜>` is what `add_bos_token` puts in front of a prompt at
inference; the model sees BOS only there). `bos="document"` adds BOS before every document.
Padding uses EOS (DeepSeek's pad token); `n_tokens` tells padding apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import logging
import os
import tempfile

import numpy as np

from dsllm import storage
from dsllm.errors import UserError

_log = logging.getLogger(__name__)  # the default `log` of callers without a console


BOS_POLICIES = {
    "eos": "documents joined by EOS (EOS after every document, no BOS), as DeepSeek LLM",
    "document": "BOS before and EOS after every document",
}


@dataclasses.dataclass(frozen=True)
class PackConfig:
    """Knobs of packing. `row_group_rows` rows form one Parquet row group and one shuffle chunk."""

    seq_len: int = 4096
    bos: str = "eos"
    row_group_rows: int = 16
    batch_docs: int = 512
    zstd_level: int = 3
    default_domain: str = "unlabelled"  # the domain of documents whose shard has no `domain` value

    def __post_init__(self):
        if self.seq_len < 2:
            raise ValueError(f"seq_len must be >= 2, got {self.seq_len}")
        if self.bos not in BOS_POLICIES:
            raise ValueError(f"bos must be one of {sorted(BOS_POLICIES)}, got {self.bos!r}")
        if self.row_group_rows < 1 or self.batch_docs < 1:
            raise ValueError("row_group_rows and batch_docs must be >= 1")
        if not self.default_domain:
            raise ValueError("default_domain must not be empty")


def schema(seq_len: int):
    import pyarrow as pa

    return pa.schema(
        [
            ("input_ids", pa.list_(pa.int32(), seq_len)),
            ("doc_offsets", pa.list_(pa.int32())),
            ("n_tokens", pa.int32()),
            ("domain", pa.string()),
        ]
    )


# ---------------------------------------------------------------- tokens of documents
def encode_documents(tok, texts: list[str], eos_id: int, bos_id: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Batch-encode documents → (tokens int32 with BOS?/EOS around each doc, doc start positions)."""
    ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lens.sum()))
    extra = 1 if bos_id is None else 2
    ends = np.cumsum(lens + extra)
    starts = ends - (lens + extra)
    out = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int32)
    body = np.ones(len(out), dtype=bool)
    body[ends - 1] = False
    out[ends - 1] = eos_id
    if bos_id is not None:
        body[starts] = False
        out[starts] = bos_id
    out[body] = flat
    return out, starts


def rows_table(
    tokens: np.ndarray, starts: np.ndarray, seq_len: int, n_tokens: np.ndarray | None = None, domain: str = "unlabelled"
):
    """Arrow table of rows of one domain cut from `tokens` (a multiple of seq_len long); `starts`
    are the doc starts inside it. doc_offsets of a row: 0 then every doc start after position 0."""
    import pyarrow as pa

    n_rows = len(tokens) // seq_len
    row_of, off = np.divmod(np.asarray(starts, dtype=np.int64), seq_len)
    keep = off != 0
    rows = np.concatenate([np.arange(n_rows), row_of[keep]])
    offs = np.concatenate([np.zeros(n_rows, dtype=np.int64), off[keep]])
    order = np.lexsort((offs, rows))
    counts = np.bincount(rows, minlength=n_rows)
    list_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    if n_tokens is None:
        n_tokens = np.full(n_rows, seq_len, dtype=np.int32)
    return pa.Table.from_arrays(
        [
            pa.FixedSizeListArray.from_arrays(pa.array(tokens, pa.int32()), seq_len),
            pa.ListArray.from_arrays(pa.array(list_offsets), pa.array(offs[order].astype(np.int32))),
            pa.array(n_tokens, pa.int32()),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_rows, dtype=np.int32)), pa.array([domain])).cast(
                pa.string()
            ),
        ],
        schema=schema(seq_len),
    )


class RowWriter:
    """Writes rows to a local temporary Parquet file; `publish` uploads it atomically."""

    def __init__(self, cfg: PackConfig):
        import pyarrow.parquet as pq

        self.cfg, self.rows, self.tokens = cfg, 0, 0
        self.domains: dict[str, dict] = {}  # domain -> {"rows", "tokens"}
        fd, self.tmp = tempfile.mkstemp(prefix="dsllm-pack-", suffix=".parquet")
        os.close(fd)
        self.writer = pq.ParquetWriter(
            self.tmp, schema(cfg.seq_len), compression="zstd", compression_level=cfg.zstd_level, write_statistics=False
        )

    def write(self, table, domain: str) -> None:
        """Rows of one domain (each call starts new row groups, so a row group has one domain)."""
        self.writer.write_table(table, row_group_size=self.cfg.row_group_rows)
        tokens = int(np.asarray(table.column("n_tokens")).sum())
        self.rows += table.num_rows
        self.tokens += tokens
        count = self.domains.setdefault(domain, {"rows": 0, "tokens": 0})
        count["rows"] += table.num_rows
        count["tokens"] += tokens

    def publish(self, uri: str) -> dict | None:
        """Upload to `uri` (nothing if no rows) → the manifest's shard entry (without path)."""
        self.writer.close()
        try:
            if not self.rows:
                return None
            with open(self.tmp, "rb") as f:
                sha = hashlib.file_digest(f, "sha256").hexdigest()
            size = os.path.getsize(self.tmp)
            storage.upload_file(self.tmp, uri)
            return {
                "rows": self.rows,
                "bytes": size,
                "sha256": sha,
                "tokens": self.tokens,
                "domains": dict(sorted(self.domains.items())),
            }
        finally:
            os.remove(self.tmp)


class Packer:
    """Cuts one domain's token stream into full row groups as it grows; the remainder is the carry."""

    def __init__(self, cfg: PackConfig, writer: RowWriter, domain: str):
        self.cfg, self.writer, self.domain = cfg, writer, domain
        self.group_tokens = cfg.row_group_rows * cfg.seq_len
        self.tokens = np.empty(0, dtype=np.int32)
        self.starts = np.empty(0, dtype=np.int64)

    def add(self, tokens: np.ndarray, starts: np.ndarray) -> None:
        self.starts = np.concatenate([self.starts, starts + len(self.tokens)])
        self.tokens = np.concatenate([self.tokens, tokens])
        cut = len(self.tokens) // self.group_tokens * self.group_tokens
        if cut:
            n_starts = int(np.searchsorted(self.starts, cut))
            self.writer.write(
                rows_table(self.tokens[:cut], self.starts[:n_starts], self.cfg.seq_len, domain=self.domain), self.domain
            )
            self.tokens, self.starts = self.tokens[cut:], self.starts[n_starts:] - cut

    def finish_padded(self, pad_id: int) -> int:
        """Write everything left, padding the last row with `pad_id`; returns the pad tokens."""
        seq_len = self.cfg.seq_len
        n = len(self.tokens)
        if not n:
            return 0
        n_rows = -(-n // seq_len)
        pad = n_rows * seq_len - n
        n_tokens = np.full(n_rows, seq_len, dtype=np.int32)
        n_tokens[-1] = seq_len - pad
        tokens = np.concatenate([self.tokens, np.full(pad, pad_id, dtype=np.int32)])
        self.writer.write(rows_table(tokens, self.starts, seq_len, n_tokens, self.domain), self.domain)
        self.tokens, self.starts = self.tokens[:0], self.starts[:0]
        return pad


# ---------------------------------------------------------------- one source shard
_TOKENIZERS: dict[str, tuple] = {}


def cached_tokenizer(path: str):
    """(Tokenizer, TokenizerInfo), loaded once per process."""
    if path not in _TOKENIZERS:
        from dsllm.tokenizer.io import load_tokenizer

        _TOKENIZERS[path] = load_tokenizer(path)
    return _TOKENIZERS[path]


def _texts(uri: str, batch_docs: int, default_domain: str):
    """Batches of (domain, texts) of a curated shard, plus the count of null/empty texts per batch.

    The domain is the shard's `domain` column (null or empty: `default_domain`), or `default_domain`
    for every document of a shard without one."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(storage.open_random(uri))
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise UserError(f"{uri}: not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    if "text" not in names:
        raise UserError(f"{uri}: no `text` column (columns: {', '.join(names)})")
    columns = ["text"] + (["domain"] if "domain" in names else [])
    for batch in pf.iter_batches(batch_size=batch_docs, columns=columns):
        texts = batch.column(0).to_pylist()
        domains = batch.column(1).to_pylist() if len(columns) > 1 else [None] * len(texts)
        groups: dict[str, list[str]] = {}
        for text, domain in zip(texts, domains):  # per document, not per token
            if text:
                groups.setdefault(str(domain or default_domain), []).append(text)
        yield sorted(groups.items()), len(texts) - sum(len(g) for g in groups.values())


def work_uri(output: str, name: str) -> str:
    return storage.join(output, "_work", name)


def pack_source(task: dict) -> dict:
    """Pack source shard `task["index"]` → its part and carry; returns (and records) its summary."""
    out, i = task["output"], task["index"]
    marker = work_uri(out, f"source-{i:05d}.json")
    if storage.exists(marker):
        return storage.read_json(marker)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one task per core
    cfg = PackConfig(**task["config"])
    tok, info = cached_tokenizer(task["tokenizer"])
    bos_id = info.bos_id if cfg.bos == "document" else None
    writer = RowWriter(cfg)
    packers: dict[str, Packer] = {}
    documents: dict[str, int] = {}
    skipped = 0
    for groups, n_empty in _texts(task["uri"], cfg.batch_docs, cfg.default_domain):
        skipped += n_empty
        for domain, texts in groups:
            packer = packers.setdefault(domain, Packer(cfg, writer, domain))
            packer.add(*encode_documents(tok, texts, info.eos_id, bos_id))
            documents[domain] = documents.get(domain, 0) + len(texts)
    part = f"part-{i:05d}.parquet"
    shard = writer.publish(storage.join(out, part))
    carry = work_uri(out, f"carry-{i:05d}.npz")
    domains = sorted(packers)
    buf = io.BytesIO()  # arrays by position in `domains` (domain names never become keys)
    np.savez(buf, **{f"{k}_{n}": getattr(packers[d], k) for n, d in enumerate(domains) for k in ("tokens", "starts")})
    storage.write_bytes(carry, buf.getvalue())
    summary = {
        "index": i,
        "uri": task["uri"],
        "documents": sum(documents.values()),
        "skipped_empty": skipped,
        "tokens": (shard or {}).get("tokens", 0) + sum(len(p.tokens) for p in packers.values()),
        "domains": {d: {"documents": documents[d]} for d in domains},
        "shard": dict(shard, path=part) if shard else None,
        "carry": carry,
    }
    storage.write_json(marker, summary)
    return summary


def pack_carries(output: str, summaries: list[dict], cfg: PackConfig, pad_id: int) -> tuple[dict | None, int]:
    """The final part: per domain (sorted), that domain's carries in source order, its last row
    padded → (shard entry or None, pad tokens)."""
    writer = RowWriter(cfg)
    packers: dict[str, Packer] = {}
    for s in summaries:
        with np.load(io.BytesIO(storage.read_bytes(s["carry"]))) as z:
            for n, domain in enumerate(sorted(s["domains"])):
                tokens, starts = z[f"tokens_{n}"], z[f"starts_{n}"]
                if len(tokens):
                    packer = packers.setdefault(domain, Packer(cfg, writer, domain))
                    # a carry may begin inside a document: that fragment is a segment of its own
                    packer.add(tokens, np.union1d([0], starts))
    pad = 0
    for domain in sorted(packers):
        pad += packers[domain].finish_padded(pad_id)
    part = f"part-{len(summaries):05d}.parquet"
    shard = writer.publish(storage.join(output, part))
    return (dict(shard, path=part) if shard else None), pad


# ---------------------------------------------------------------- the whole job
def resolve_sources(inputs: list[str]) -> list[str]:
    """Curated shard URIs, in order: a curated OUT (its manifest's shards), a directory, prefix,
    glob or file of Parquet shards (files under `_`/`.`-prefixed folders are not shards)."""
    out: list[str] = []
    for item in inputs:
        item = str(item).rstrip("/")
        manifest = storage.join(item, "manifest.json")
        if not item.endswith(".parquet") and storage.exists(manifest):
            m = storage.read_json(manifest)
            if isinstance(m, dict) and m.get("kind") == "curated":
                out += [storage.join(item, s["path"]) for s in m.get("shards", [])]
                continue
            if isinstance(m, dict) and m.get("kind") == "packed":
                raise UserError(f"{item}: is packed output, not curated shards")
        found = [
            f.uri
            for f in storage.list_files(item)
            if f.uri.endswith(".parquet")
            and not any(p.startswith(("_", ".")) for p in f.uri[len(item) :].split("/")[:-1])
        ]
        if not found:
            raise UserError(f"{item}: no Parquet shards found")
        out += found
    return out


def _job(sources: list[str], info, cfg: PackConfig) -> dict:
    return {"sources": sources, "tokenizer_sha256": info.sha256, "config": dataclasses.asdict(cfg)}


def _check_job(output: str, job: dict) -> None:
    """Refuse to mix a different job into an existing output; record the job otherwise."""
    uri = work_uri(output, "job.json")
    if storage.exists(uri):
        old = storage.read_json(uri)
        if old != job:
            what = [k for k in job if old.get(k) != job[k]]
            raise UserError(
                f"{output}: holds a packing of different {', '.join(what) or 'inputs'}; "
                "use a new --output (or remove it)"
            )
        return
    if storage.exists(storage.join(output, "manifest.json")):
        raise UserError(f"{output}: already holds packed data from another job; use a new --output")
    storage.write_json(uri, job)


def pack(inputs: list[str], tokenizer: str, output: str, cfg: PackConfig, executor, log=_log.info) -> dict:
    """Tokenize and pack curated shards into `output`; returns the manifest. Resumes a killed run."""
    output = str(output).rstrip("/")
    if storage.is_http(output):
        raise UserError(f"{output}: cannot write to an HTTP URL; use a local path or s3://")
    sources = resolve_sources(inputs)
    tok, info = cached_tokenizer(tokenizer)
    if info.eos_id is None:
        raise UserError(f"{tokenizer}: tokenizer has no EOS token (needed to join documents)")
    if cfg.bos == "document" and info.bos_id is None:
        raise UserError(f"{tokenizer}: tokenizer has no BOS token (needed by bos='document')")
    job = _job(sources, info, cfg)
    _check_job(output, job)
    manifest_uri = storage.join(output, "manifest.json")
    if storage.exists(manifest_uri):
        log(f"{output}: already packed")
        return storage.read_json(manifest_uri)
    tasks = [
        {"index": i, "uri": uri, "output": output, "tokenizer": tokenizer, "config": dataclasses.asdict(cfg)}
        for i, uri in enumerate(sources)
    ]
    log(f"packing {len(sources)} shard(s) into {cfg.seq_len}-token rows")
    summaries = executor.map(pack_source, tasks)
    last, pad = pack_carries(output, summaries, cfg, info.eos_id)
    shards = [s["shard"] for s in summaries if s["shard"]] + ([last] if last else [])
    rows = sum(s["rows"] for s in shards)
    tokens = sum(s["tokens"] for s in shards)
    manifest = {
        "kind": "packed",
        "created": _now_iso(),
        "seq_len": cfg.seq_len,
        "rows": rows,
        "tokens": tokens,
        "pad_tokens": pad,
        "documents": sum(s["documents"] for s in summaries),
        "skipped_empty_documents": sum(s["skipped_empty"] for s in summaries),
        "row_group_rows": cfg.row_group_rows,
        "tokenizer": dict(info.to_dict(), path=_absolute(str(tokenizer))),
        "bos_policy": f"{cfg.bos}: {BOS_POLICIES[cfg.bos]}; padding: EOS, counted by n_tokens",
        "shards": shards,
        "domains": _domain_totals(shards, summaries),
        "source_shards": [
            {"uri": s["uri"], "documents": s["documents"], "tokens": s["tokens"], "skipped_empty": s["skipped_empty"]}
            for s in summaries
        ],
        "config": dataclasses.asdict(cfg),
        "versions": _versions(),
    }
    assert rows * cfg.seq_len == tokens + pad, "packing lost tokens"
    storage.write_json(manifest_uri, manifest)
    log(f"{output}: {rows} rows, {tokens} tokens ({pad} padding), {manifest['documents']} documents")
    return manifest


def _domain_totals(shards: list[dict], summaries: list[dict]) -> dict:
    """{domain: {"rows", "tokens", "documents"}} over all parts and sources."""
    out: dict[str, dict] = {}
    for shard in shards:
        for domain, c in shard["domains"].items():
            d = out.setdefault(domain, {"rows": 0, "tokens": 0, "documents": 0})
            d["rows"] += c["rows"]
            d["tokens"] += c["tokens"]
    for s in summaries:
        for domain, c in s["domains"].items():
            out.setdefault(domain, {"rows": 0, "tokens": 0, "documents": 0})["documents"] += c["documents"]
    return dict(sorted(out.items()))


def _versions() -> dict:
    import pyarrow
    import tokenizers

    return {"tokenizers": tokenizers.__version__, "pyarrow": pyarrow.__version__}


def _now_iso() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _absolute(uri: str) -> str:
    """A local tokenizer path made absolute, so the manifest names it from any working directory."""
    from pathlib import Path

    return uri if storage.is_remote(uri) else str(Path(uri).resolve())
