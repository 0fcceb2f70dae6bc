"""The stage contract: a stage takes an iterator of documents and yields what it keeps,
counting every document it sees, every drop under a stable reason, and every addition.

    counts = StageCounts("gopher_quality")
    kept = list(GopherQualityFilter(cfg)(iter(docs), counts))

Counts from many tasks merge with `+`; `stats.json` lists them in pipeline order with
`in + added == out + sum(dropped)` for every stage.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Iterable, Iterator


@dataclasses.dataclass
class StageCounts:
    name: str
    n_in: int = 0
    n_out: int = 0
    added: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)
    # things a stage did without dropping a document (masked e-mails, removed lines); informative,
    # outside the in/out balance; serialized as "events" only when non-empty
    events: Counter = dataclasses.field(default_factory=Counter)

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def __add__(self, other: "StageCounts") -> "StageCounts":
        assert self.name == other.name, (self.name, other.name)
        return StageCounts(self.name, self.n_in + other.n_in, self.n_out + other.n_out,
                           self.added + other.added, self.dropped + other.dropped, self.events + other.events)

    def balanced(self) -> bool:
        return self.n_in + self.added == self.n_out + sum(self.dropped.values())

    def to_json(self) -> dict:
        out = {"name": self.name, "in": self.n_in, "out": self.n_out,
               "dropped": dict(sorted(self.dropped.items())), "added": self.added}
        if self.events:
            out["events"] = dict(sorted(self.events.items()))
        return out

    @classmethod
    def from_json(cls, d: dict) -> "StageCounts":
        return cls(d["name"], d["in"], d["out"], d.get("added", 0), Counter(d.get("dropped", {})),
                   Counter(d.get("events", {})))


class Stage:
    """Base class: subclasses implement `keep(doc) -> reason | None` or override `__call__`."""

    name = "stage"

    def keep(self, doc) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, docs: Iterable, counts: StageCounts) -> Iterator:
        for doc in docs:
            counts.n_in += 1
            reason = self.keep(doc)
            if reason is None:
                counts.n_out += 1
                yield doc
            else:
                counts.drop(reason)


def batched(items: Iterable, n: int) -> Iterator[list]:
    """Consecutive lists of up to `n` items (stages that score documents in batches)."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def merge_counts(lists: Iterable[list[StageCounts]]) -> list[StageCounts]:
    """Merge per-task stage lists (same stages, same order) into one list."""
    merged: dict[str, StageCounts] = {}
    order: list[str] = []
    for counts in lists:
        for c in counts:
            if c.name not in merged:
                merged[c.name] = StageCounts(c.name)
                order.append(c.name)
            merged[c.name] = merged[c.name] + c
    return [merged[n] for n in order]
