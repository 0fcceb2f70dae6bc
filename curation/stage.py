"""The stage contract: a stage takes an iterator of documents and yields what it keeps,
counting every document it sees, every drop under a stable reason, and every addition.

    counts = StageCounts("gopher_quality")
    kept = list(GopherQualityFilter(cfg)(iter(docs), counts))

Every per-input stage (read, extract, langid, the filters, quality_model, pii) is a `Stage`
subclass. Adding one means writing one class (a `name`, and `keep`, `judge` or `outcomes`) with
its config dataclass, then registering it: a section in `CurateConfig` (and configs/curate.toml),
its name at its place in curation.config.PER_INPUT_STAGES (the stats.json order, `--skip` name),
and one factory line in curation.pipeline.build_stages.

Counts from many tasks merge with `+`; `stats.json` lists them in pipeline order with
`in + added == out + sum(dropped)` for every stage.

A drop also carries the value that decided it (`Stage.deciding(item, reason)`: by default the
document's signal named like the reason, or named in `reason_signals`), asked for only when a
`DropRecorder` (curation.dropped) keeps that drop as a sample: the kept stream never pays for it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator


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

    def __add__(self, other: StageCounts) -> StageCounts:
        assert self.name == other.name, (self.name, other.name)
        return StageCounts(
            self.name,
            self.n_in + other.n_in,
            self.n_out + other.n_out,
            self.added + other.added,
            self.dropped + other.dropped,
            self.events + other.events,
        )

    def balanced(self) -> bool:
        return self.n_in + self.added == self.n_out + sum(self.dropped.values())

    def to_json(self) -> dict:
        out = {
            "name": self.name,
            "in": self.n_in,
            "out": self.n_out,
            "dropped": dict(sorted(self.dropped.items())),
            "added": self.added,
        }
        if self.events:
            out["events"] = dict(sorted(self.events.items()))
        return out

    @classmethod
    def from_json(cls, d: dict) -> StageCounts:
        return cls(
            d["name"], d["in"], d["out"], d.get("added", 0), Counter(d.get("dropped", {})), Counter(d.get("events", {}))
        )


class Stage:
    """The one stage contract (datatrove's shape): a generator over items that counts every item it
    sees, every drop under a stable reason and every event. A stage is one class that implements
    the narrowest of these and inherits the rest:

    - `keep(item) -> reason | None`: judge one item (filters such as C4, FineWeb, URL);
    - `judge(batch) -> [reason | None, ...]`: judge a batch at once (fastText, numpy n-grams);
      `batch_size` (or `batches()`) says how items are grouped;
    - `outcomes(items) -> (item_out, reason | None), ...`: anything else (a reader turning a byte
      stream into records, an extractor turning pages into documents).

    Events (`self.events`: masked e-mails, removed lines, dropped languages) are informative and
    outside the in/out balance; those of one call are added to its counts when the stream ends.

    A drop's deciding value comes from `deciding(item, reason)` (default: the signal named like the
    reason, or as `reason_signals` maps it); `describe(item)` says what a non-Document item is.
    Both run only for drops a `DropRecorder` keeps.
    """

    name = "stage"
    batch_size = 1
    # reason → the key of `doc.signals` holding the value that decided it (when not the reason itself)
    reason_signals: dict[str, str] = {}

    def keep(self, item) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def judge(self, batch: list) -> list[str | None]:
        """The reason to drop each item of `batch`, None to keep it (may update the items)."""
        return [self.keep(item) for item in batch]

    def batches(self, items: Iterable) -> Iterator[list]:
        """How `judge` sees the items: consecutive lists of up to `batch_size`."""
        return batched(items, self.batch_size)

    def outcomes(self, items) -> Iterator[tuple]:
        """(item out, None) for each item passed on, (anything, reason) for each item dropped."""
        for batch in self.batches(items):
            yield from zip(batch, self.judge(batch))

    def deciding(self, item, reason: str) -> tuple[float | None, str | None]:
        """(value, detail) that decided the drop of `item` under `reason`: a number (a ratio, a
        score, a count) or None, and a short text (a language, a list entry) or None. Called right
        after the drop, before the stream goes on, and only for drops kept as samples."""
        signals = getattr(item, "signals", None)
        if isinstance(signals, dict):
            value = signals.get(self.reason_signals.get(reason, reason))
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value), None
        return None, None

    def describe(self, item):
        """A dropped item that is not a Document as a `curation.dropped.DroppedItem` (record id,
        url, text if any); stages whose items are records or pages override it."""
        from dsllm.curation.dropped import DroppedItem

        return DroppedItem(getattr(item, "record_id", "") or "", getattr(item, "url", "") or "")

    def __call__(self, items, counts: StageCounts, dropped=None) -> Iterator:
        """Yield the kept items, counting into `counts`; drops that `dropped` (a DropRecorder)
        wants are recorded with their deciding value."""
        if not hasattr(self, "events"):
            self.events = Counter()
        before = Counter(self.events)
        for item, reason in self.outcomes(items):
            counts.n_in += 1
            if reason is None:
                counts.n_out += 1
                yield item
            else:
                counts.drop(reason)
                if dropped is not None and dropped.wants(self.name, reason):
                    dropped.add(self, item, reason)
        counts.events.update(self.events - before)


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
