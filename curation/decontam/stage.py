"""The `decontaminate` curation stage: drop documents that contain benchmark test data.

Runs right after `extract`, on batches of documents (one vectorised lookup per batch). A drop is
counted as `benchmark:<name>` in stats.json. With no `decontaminate.index`, the default index over
every bundled benchmark is built on first use (8.6 s, 0.6 GB peak on the 2-core dev box) and
cached under `$DSLLM_CACHE_DIR/decontam/` (default `~/.cache/dsllm`), keyed by the installed data.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

from dsllm.curation.decontam.index import DecontamIndex
from dsllm.curation.stage import Stage


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
    index: str = ""  # a `dsllm decontam index` output (local or s3://); "" = the bundled default
    n: int = 10  # n-gram length (words; characters for Chinese) of the default index
    batch_docs: int = 256  # documents per vectorised lookup

    def __post_init__(self):
        if self.n < 2 or self.batch_docs < 1:
            raise ValueError("decontaminate.n must be >= 2 and decontaminate.batch_docs >= 1")


def cache_dir() -> Path:
    """Where built default indexes live."""
    return Path(os.environ.get("DSLLM_CACHE_DIR") or Path.home() / ".cache" / "dsllm") / "decontam"


def build_index(items: list[str], n: int = 10) -> DecontamIndex:
    """An index over installed tasks (names) and local test-set files (paths)."""
    from dsllm.curation.decontam.sources import benchmark_name, task_strings

    return DecontamIndex.build({benchmark_name(it): task_strings(it) for it in items}, n=n)


def default_index_path(n: int = 10) -> Path:
    """The cached default index, built (atomically, once per machine) when missing."""
    from dsllm.curation.decontam.sources import cache_key, default_tasks

    tasks = default_tasks()
    path = cache_dir() / f"default-{cache_key(tasks, n)}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        build_index(tasks, n).save(str(tmp))
        os.replace(tmp, path)
    return path


@functools.lru_cache(maxsize=2)
def load_index(uri: str, n: int) -> DecontamIndex:
    """The index a config names (cached per process: Ray workers load it once)."""
    return DecontamIndex.load(uri or str(default_index_path(n)))


class Decontaminator(Stage):
    """Drops documents holding benchmark test data (one `benchmark:<task>` reason per benchmark),
    judged a batch at a time by the vectorised n-gram index."""

    name = "decontaminate"

    def __init__(self, cfg: DecontamConfig = DecontamConfig(), index: DecontamIndex | None = None):
        self.cfg = cfg
        self.batch_size = cfg.batch_docs
        self.index = index or load_index(cfg.index, cfg.n)

    def judge(self, batch: list) -> list[str | None]:
        return [None if hit is None else f"benchmark:{hit}" for hit in self.index.match([d.text for d in batch])]
