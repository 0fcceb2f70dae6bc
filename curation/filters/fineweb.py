"""FineWeb's document rules (Penedo et al. 2024), with CJK equivalents.

Reasons: line_punct_ratio (too few lines end in terminal punctuation), short_line_ratio (too many
short lines), char_dup_ratio (characters in repeated lines), list_ratio (too many newlines per word,
i.e. a list or menu rather than prose).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dsllm.curation.document import Document
from dsllm.curation.filters import text as T
from dsllm.curation.stage import Stage


@dataclasses.dataclass(frozen=True)
class FineWebConfig:
    min_line_punct_ratio: float = 0.12
    short_line_length: int = 30
    max_short_line_ratio: float = 0.67
    max_char_dup_ratio: float = 0.01
    max_newline_per_word: float = 0.3
    cjk_short_line_length: int = 10  # characters; CJK carries ~2-3× more per character
    cjk_max_newline_per_char: float = 0.15

    def __post_init__(self):
        for name in ("min_line_punct_ratio", "max_short_line_ratio", "max_char_dup_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"fineweb.{name} must be in [0, 1]")


class FineWebFilter(Stage):
    name = "fineweb"
    reason_signals = {"list_ratio": "newline_ratio"}

    def __init__(self, cfg: FineWebConfig = FineWebConfig()):
        self.cfg = cfg

    def keep(self, doc: Document) -> str | None:
        cfg, text, s = self.cfg, doc.text, doc.signals
        lines = T.lines_of(text)
        if not lines:
            return "line_punct_ratio"
        cjk = s.get("cjk", T.is_cjk_doc(text, doc.lang))
        ends = T.CJK_TERMINAL_PUNCT if cjk else T.TERMINAL_PUNCT
        punct = sum(ln.endswith(ends) for ln in lines) / len(lines)
        short_len = cfg.cjk_short_line_length if cjk else cfg.short_line_length
        lens = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
        short = float((lens <= short_len).mean())
        _, dup_chars = T.duplicate_fractions(lines)
        n_units = T.cjk_count(text) if cjk else len(text.split())  # after C4 removed lines
        newline = text.count("\n") / max(1, n_units)
        s.update(
            line_punct_ratio=round(punct, 4),
            short_line_ratio=round(short, 4),
            char_dup_ratio=round(dup_chars, 4),
            newline_ratio=round(newline, 4),
        )
        if punct < cfg.min_line_punct_ratio:
            return "line_punct_ratio"
        if short > cfg.max_short_line_ratio:
            return "short_line_ratio"
        if dup_chars > cfg.max_char_dup_ratio:
            return "char_dup_ratio"
        if newline > (cfg.cjk_max_newline_per_char if cjk else cfg.max_newline_per_word):
            return "list_ratio"
        return None
