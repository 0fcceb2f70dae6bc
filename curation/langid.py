"""Language identification with fastText lid.176 (shipped inside dsllm: curation/models/lid.176.ftz,
CC BY-SA 3.0), keeping the configured languages above a threshold. Sets `lang` and `lang_score`.

Reasons (stage `langid`): other_language, low_confidence (a kept language below the threshold).
The dropped documents' languages are counted in the stage's events as `lang:xx`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Iterable, Iterator

from dsllm.curation.document import Document
from dsllm.curation.stage import StageCounts, batched


@dataclasses.dataclass(frozen=True)
class LangidConfig:
    languages: tuple[str, ...] = ("en", "zh")
    threshold: float = 0.65
    model: str = ""          # a fastText language-ID model; "" = the lid.176.ftz shipped with dsllm
    max_chars: int = 500     # the prefix the model reads; lid.176 costs ~0.3 µs per character, and on
                             # 568 en/zh web and prose documents 500 gave the same keep decisions as 1000
    batch: int = 256

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"langid.threshold must be in [0, 1], got {self.threshold}")
        if not self.languages:
            raise ValueError("langid.languages must not be empty")


def one_line(text: str, max_chars: int) -> str:
    """fastText reads one line: newlines become spaces."""
    return " ".join(text[:max_chars].split())


class LanguageIdentifier:
    """Predicts in batches (fastText's multi-line predict) and filters."""

    name = "langid"

    def __init__(self, cfg: LangidConfig = LangidConfig()):
        from dsllm.fasttext_compat import cached_model, lid176_path

        self.cfg = cfg
        self.model = cached_model(cfg.model or lid176_path())
        self.keep_langs = frozenset(cfg.languages)
        self.events: Counter = Counter()

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        labels, probs = self.model.predict([one_line(t, self.cfg.max_chars) for t in texts], k=1)
        return [(lab[0].replace("__label__", "") if lab else "", float(p[0]) if len(p) else 0.0)
                for lab, p in zip(labels, probs)]

    def __call__(self, docs: Iterable[Document], counts: StageCounts) -> Iterator[Document]:
        for batch in batched(docs, self.cfg.batch):
            yield from self._flush(batch, counts)

    def _flush(self, batch: list[Document], counts: StageCounts) -> Iterator[Document]:
        for doc, (lang, score) in zip(batch, self.predict([d.text for d in batch])):
            counts.n_in += 1
            doc.lang, doc.lang_score = lang, min(1.0, score)
            if lang not in self.keep_langs:
                counts.drop("other_language")
                counts.events[f"lang:{lang}"] += 1
            elif score < self.cfg.threshold:
                counts.drop("low_confidence")
                counts.events[f"lang:{lang}"] += 1
            else:
                counts.n_out += 1
                yield doc
