"""Training on a mixture (MIX/ from `dsllm mix`) as on packed data, and tokens seen per domain.

    ds = open_dataset("mix")          # MixtureDataset for MIX/, PackedDataset for PACKED/
    ds.read(positions)                # rows at positions of MIX/order.parquet, from their packed inputs
    counter = DomainTokens.of(ds, loader.order)
    counter.update(sequences_consumed)   # {domain: tokens seen so far}

A mixture's order is already the training order (`ordered = True`: the loader reads position p
of the run at order position p mod rows, no shuffle on top), so the prefix property of the mix
holds for the run, and the data position stays one number: resume works at any worker count.
"""

from __future__ import annotations

import numpy as np

from dsllm import storage
from dsllm.errors import UserError
from dsllm.trainer.data import PackedDataset, Rows


def open_dataset(uri: str):
    """A MixtureDataset when `uri` holds mixture.json, else a PackedDataset."""
    uri = str(uri).rstrip("/")
    if storage.exists(storage.join(uri, "mixture.json")):
        return MixtureDataset(uri)
    return PackedDataset(uri)


class MixtureDataset:
    """The positions of MIX/order.parquet as rows: position i is row `row[i]` of input `source[i]`."""

    ordered = True
    chunk_rows = 1

    def __init__(self, uri: str):
        import pyarrow.parquet as pq

        self.uri = str(uri).rstrip("/")
        meta_uri = storage.join(self.uri, "mixture.json")
        self.manifest = storage.read_json(meta_uri)
        if not isinstance(self.manifest, dict) or self.manifest.get("kind") != "mixture":
            raise UserError(f"{meta_uri}: not a mixture (kind != 'mixture')")
        try:
            self.sources = [PackedDataset(s["uri"]) for s in self.manifest["sources"]]
            entry = self.manifest["order"]
            self.seq_len = int(self.manifest["seq_len"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{meta_uri}: malformed mixture manifest ({exc})") from None
        with storage.open_random(storage.join(self.uri, entry["path"])) as f:
            table = pq.ParquetFile(f).read()
        if table.num_rows != int(entry["rows"]):
            raise UserError(f"{self.uri}: order.parquet has {table.num_rows} rows, mixture.json says {entry['rows']}")
        self.source = table.column("source").to_numpy()
        self.row = table.column("row").to_numpy()
        domain = table.column("domain").combine_chunks()
        self.domain_names = [str(d) for d in domain.dictionary.to_pylist()]
        self.domain_codes = domain.indices.to_numpy()
        self.rows = len(self.row)
        for i, ds in enumerate(self.sources):
            if ds.seq_len != self.seq_len:
                raise UserError(f"{ds.uri}: sequence length {ds.seq_len}, the mixture's is {self.seq_len}")
            used = self.row[self.source == i]
            if used.size and used.max() >= ds.rows:
                raise UserError(f"{ds.uri}: has {ds.rows} rows, the mixture reads row {int(used.max())}")

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        return self.read(indices).input_ids

    def read(self, indices: np.ndarray, segments: bool = False) -> Rows:
        """Rows at order positions (any order, repeats allowed), read from their packed inputs."""
        idx = np.asarray(indices, dtype=np.int64)
        out = Rows(
            np.empty((len(idx), self.seq_len), dtype=np.int32),
            [None] * len(idx) if segments else None,
            np.empty(len(idx), dtype=np.int32) if segments else None,
        )
        src = self.source[idx]
        for s in np.unique(src):
            sel = np.nonzero(src == s)[0]
            got = self.sources[int(s)].read(self.row[idx[sel]], segments=segments)
            out.input_ids[sel] = got.input_ids
            if segments:
                out.n_tokens[sel] = got.n_tokens
                for i, offs in zip(sel.tolist(), got.doc_offsets):  # one entry per row
                    out.doc_offsets[i] = offs
        return out

    def row_domains(self) -> tuple[np.ndarray, list[str]]:
        """(domain code per position, domain names)."""
        return self.domain_codes, self.domain_names


def row_domains(dataset) -> tuple[np.ndarray, list[str]] | None:
    """(domain code per row, names) of a mixture, packed data with a `domain` column, or a row
    range of either (`base`, `start`, `rows`); None when the data has no domains."""
    base, start = getattr(dataset, "base", dataset), getattr(dataset, "start", 0)
    if isinstance(base, MixtureDataset):
        codes, names = base.row_domains()
    elif isinstance(base, PackedDataset):
        got = _packed_domains(base)
        if got is None:
            return None
        codes, names = got
    else:
        return None
    return codes[start : start + dataset.rows], names


def _packed_domains(ds: PackedDataset) -> tuple[np.ndarray, list[str]] | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = []
    for shard in ds.shards:
        with storage.open_random(shard.uri, size=shard.bytes) as f:
            pf = pq.ParquetFile(f)
            if "domain" not in pf.schema_arrow.names:
                return None
            parts.append(pf.read(columns=["domain"]).column("domain"))
    if not parts:
        return None
    encoded = pa.chunked_array([c for p in parts for c in p.chunks], pa.string()).combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy(), [str(d) for d in encoded.dictionary.to_pylist()]


class DomainTokens:
    """Tokens seen per domain after `sequences` consumed: counted from the order, not the batches,
    so every rank and every resume agrees without communication (seq_len tokens per sequence,
    as the run's `tokens`)."""

    CHUNK = 1 << 22

    def __init__(self, codes: np.ndarray, names: list[str], order, seq_len: int):
        self.codes, self.names, self.order, self.seq_len = codes, names, order, seq_len
        self.position = 0
        self.counts = np.zeros(len(names), dtype=np.int64)

    @classmethod
    def of(cls, dataset, order) -> DomainTokens | None:
        got = row_domains(dataset)
        return None if got is None else cls(got[0], got[1], order, dataset.seq_len)

    def update(self, sequences: int) -> dict[str, int]:
        """{domain: tokens} over run positions [0, sequences) (incremental)."""
        if sequences < self.position:
            self.position, self.counts[:] = 0, 0
        while self.position < sequences:
            stop = min(sequences, self.position + self.CHUNK)
            rows = self.order.indices(self.position, stop)
            self.counts += np.bincount(self.codes[rows], minlength=len(self.names))
            self.position = stop
        return {d: int(c) * self.seq_len for d, c in zip(self.names, self.counts) if c}
