"""Gopher (MassiveText, Rae et al. 2021) quality and repetition rules, with character-based
equivalents for CJK text.

Every rule's measured value is stored in `doc.signals` before deciding, so kept documents carry
all their signals and users can refilter with stricter thresholds without recomputing.

gopher_quality reasons: too_few_words, too_many_words, mean_word_length, symbol_ratio,
  bullet_lines, ellipsis_lines, alpha_words, stop_words; CJK: too_few_chars, too_many_chars,
  stop_chars (symbol_ratio, bullet_lines and ellipsis_lines are shared).
gopher_repetition reasons: dup_lines, dup_paragraphs, dup_line_chars, dup_paragraph_chars,
  top_{n}gram, dup_{n}gram (word n-grams); CJK: top_{n}char, dup_{n}char (character n-grams).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator

from dsllm.curation.document import Document
from dsllm.curation.filters import text as T
from dsllm.curation.filters.ngrams import repetition_fractions
from dsllm.curation.stage import Stage

BULLETS = ("•", "●", "○", "▪", "◦", "·", "-", "*", "–", "►", "▶", "‣", "⁃")
ELLIPSES = ("...", "…")
_ALPHA_WORD = re.compile(r"\S*[^\W\d_]\S*")  # a whitespace word with at least one letter
# the characters that re.I equates to an ASCII letter although lower() does not map them to it
# (checked over every code point); İ is the third, and lower() lengthens it
_IGNORECASE_EXTRA = ("\u0131", "\u017f")


@dataclasses.dataclass(frozen=True)
class GopherQualityConfig:
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    stop_words: tuple[str, ...] = ("the", "be", "to", "of", "and", "that", "have", "with")
    # CJK equivalents, counted in content characters
    cjk_min_chars: int = 100
    cjk_max_chars: int = 200_000
    cjk_min_stop_chars: int = 2
    cjk_stop_chars: tuple[str, ...] = (
        "的",
        "了",
        "是",
        "在",
        "和",
        "有",
        "不",
        "这",
        "也",
        "就",
        "の",
        "に",
        "は",
        "を",
        "た",
        "が",
    )

    def __post_init__(self):
        if self.min_words > self.max_words or self.cjk_min_chars > self.cjk_max_chars:
            raise ValueError("gopher_quality: min must not exceed max")


def _line_stats(text: str) -> tuple[float, float]:
    lines = T.lines_of(text)
    if not lines:
        return 0.0, 0.0
    bullets = sum(ln.startswith(BULLETS) for ln in lines)
    ellipsis = sum(ln.endswith(ELLIPSES) for ln in lines)
    return bullets / len(lines), ellipsis / len(lines)


class GopherQualityFilter(Stage):
    name = "gopher_quality"
    # the other reasons are named like the signal that decided them (symbol_ratio, alpha_words, ...)
    reason_signals = {
        "too_few_words": "n_words",
        "too_many_words": "n_words",
        "too_few_chars": "n_words",
        "too_many_chars": "n_words",
        "stop_chars": "stop_words",
    }

    def __init__(self, cfg: GopherQualityConfig = GopherQualityConfig()):
        self.cfg = cfg
        pattern = r"\b(?:{})\b".format("|".join(map(re.escape, cfg.stop_words)))
        self.stop_re = re.compile(pattern, re.I)
        # on lowercased text the same count without re.I (several times faster); valid when lowering
        # keeps every position and no character re.I would also equate to an ASCII letter is present
        self.stop_lower_re = re.compile(pattern) if all(w.isascii() for w in cfg.stop_words) else None
        self.cjk_stop = tuple(cfg.cjk_stop_chars)

    def count_stop_words(self, text: str) -> int:
        """Occurrences of the stop words as whole words, case-insensitive (`stop_re`)."""
        if self.stop_lower_re is not None:
            lower = text.lower()
            if len(lower) == len(text) and not any(c in text for c in _IGNORECASE_EXTRA):
                return len(self.stop_lower_re.findall(lower))
        return len(self.stop_re.findall(text))

    def keep(self, doc: Document) -> str | None:
        cfg, text = self.cfg, doc.text
        cjk = T.is_cjk_doc(text, doc.lang)
        n_symbols = text.count("#") + text.count("...") + text.count("…")
        bullet, ellipsis = _line_stats(text)
        s = doc.signals
        if cjk:
            n = T.cjk_count(text)
        else:
            toks = T.words(text)
            n = len(toks)
            mean_len = sum(map(len, toks)) / n if n else 0.0
        s.update(
            cjk=cjk,
            n_words=n,
            symbol_ratio=round(n_symbols / max(1, n), 4),
            bullet_lines=round(bullet, 4),
            ellipsis_lines=round(ellipsis, 4),
        )
        if cjk:
            n_stop = sum(text.count(c) for c in self.cjk_stop)
            s.update(stop_words=n_stop)
            if n < cfg.cjk_min_chars:
                return "too_few_chars"
            if n > cfg.cjk_max_chars:
                return "too_many_chars"
        else:
            alpha = len(_ALPHA_WORD.findall(text)) / max(1, n)
            n_stop = self.count_stop_words(text)
            s.update(mean_word_length=round(mean_len, 3), alpha_words=round(alpha, 4), stop_words=n_stop)
            if n < cfg.min_words:
                return "too_few_words"
            if n > cfg.max_words:
                return "too_many_words"
            if not cfg.min_mean_word_length <= mean_len <= cfg.max_mean_word_length:
                return "mean_word_length"
        if s["symbol_ratio"] > cfg.max_symbol_ratio:
            return "symbol_ratio"
        if bullet > cfg.max_bullet_lines:
            return "bullet_lines"
        if ellipsis > cfg.max_ellipsis_lines:
            return "ellipsis_lines"
        if cjk:
            return "stop_chars" if n_stop < cfg.cjk_min_stop_chars else None
        if s["alpha_words"] < cfg.min_alpha_words:
            return "alpha_words"
        if n_stop < cfg.min_stop_words:
            return "stop_words"
        return None


def _default_top() -> dict:
    return {"2": 0.20, "3": 0.18, "4": 0.16}


def _default_dup() -> dict:
    return {"5": 0.15, "6": 0.14, "7": 0.13, "8": 0.12, "9": 0.11, "10": 0.10}


def _default_cjk_top() -> dict:
    return {"2": 0.20, "3": 0.18, "4": 0.16}


def _default_cjk_dup() -> dict:
    return {"5": 0.30, "6": 0.28, "7": 0.26, "8": 0.24, "9": 0.22, "10": 0.20}


@dataclasses.dataclass(frozen=True)
class GopherRepetitionConfig:
    max_dup_lines: float = 0.30
    max_dup_paragraphs: float = 0.30
    max_dup_line_chars: float = 0.20
    max_dup_paragraph_chars: float = 0.20
    top_ngrams: dict[str, float] = dataclasses.field(default_factory=_default_top)  # n → max fraction
    dup_ngrams: dict[str, float] = dataclasses.field(default_factory=_default_dup)
    cjk_top_ngrams: dict[str, float] = dataclasses.field(default_factory=_default_cjk_top)  # character n-grams
    cjk_dup_ngrams: dict[str, float] = dataclasses.field(default_factory=_default_cjk_dup)

    def __post_init__(self):
        for table in (self.top_ngrams, self.dup_ngrams, self.cjk_top_ngrams, self.cjk_dup_ngrams):
            for n, v in table.items():
                if not str(n).isdigit() or int(n) < 1 or not 0 <= float(v) <= 1:
                    raise ValueError(f"gopher_repetition: n-gram table entry {n!r}={v!r} must be n≥1 → fraction")


class GopherRepetitionFilter(Stage):
    """Measures documents in batches (one numpy pass over the n-grams of many documents)."""

    name = "gopher_repetition"

    def __init__(
        self,
        cfg: GopherRepetitionConfig = GopherRepetitionConfig(),
        batch_docs: int = 256,
        batch_chars: int = 4_000_000,
    ):
        self.cfg = cfg
        self.batch_docs, self.batch_chars = batch_docs, batch_chars

    def batches(self, docs: Iterable[Document]) -> Iterator[list[Document]]:
        """Up to `batch_docs` documents or `batch_chars` characters at a time."""
        batch: list[Document] = []
        chars = 0
        for doc in docs:
            batch.append(doc)
            chars += len(doc.text)
            if len(batch) >= self.batch_docs or chars >= self.batch_chars:
                yield batch
                batch, chars = [], 0
        if batch:
            yield batch

    def keep(self, doc: Document) -> str | None:
        return self.judge([doc])[0]

    def judge(self, docs: list[Document]) -> list[str | None]:
        """Store every document's signals and return its reason (None = kept)."""
        cfg = self.cfg
        cjk = [d.signals.get("cjk", T.is_cjk_doc(d.text, d.lang)) for d in docs]
        measured: list[list[tuple[str, float, float]]] = [[] for _ in docs]
        for flag in (False, True):  # word n-grams for the space-delimited, character n-grams for CJK
            idx = [i for i, c in enumerate(cjk) if c == flag]
            if not idx:
                continue
            tops, dups = (cfg.cjk_top_ngrams, cfg.cjk_dup_ngrams) if flag else (cfg.top_ngrams, cfg.dup_ngrams)
            views = [T.token_view(docs[i].text, flag) for i in idx]
            top, dup = repetition_fractions([v[0] for v in views], [v[1] for v in views], tops, dups)
            unit = "char" if flag else "gram"
            for j, i in enumerate(idx):
                m = measured[i]
                for n, limit in sorted(tops.items(), key=lambda kv: int(kv[0])):
                    m.append((f"top_{n}{unit}", float(top[int(n)][j]), limit))
                for n, limit in sorted(dups.items(), key=lambda kv: int(kv[0])):
                    m.append((f"dup_{n}{unit}", float(dup[int(n)][j]), limit))
        return [self._decide(doc, m) for doc, m in zip(docs, measured)]

    def _decide(self, doc: Document, measured: list[tuple[str, float, float]]) -> str | None:
        cfg, text, s = self.cfg, doc.text, doc.signals
        dup_lines, dup_line_chars = T.duplicate_fractions(T.lines_of(text))
        dup_paras, dup_para_chars = T.duplicate_fractions(T.paragraphs_of(text))
        s.update(
            dup_lines=round(dup_lines, 4),
            dup_line_chars=round(dup_line_chars, 4),
            dup_paragraphs=round(dup_paras, 4),
            dup_paragraph_chars=round(dup_para_chars, 4),
        )
        for key, value, _ in measured:
            s[key] = round(value, 4)
        # Gopher's line/paragraph rules (the same for every language)
        for key, value, limit in (
            ("dup_lines", dup_lines, cfg.max_dup_lines),
            ("dup_paragraphs", dup_paras, cfg.max_dup_paragraphs),
            ("dup_line_chars", dup_line_chars, cfg.max_dup_line_chars),
            ("dup_paragraph_chars", dup_para_chars, cfg.max_dup_paragraph_chars),
        ):
            if value > limit:
                return key
        for key, value, limit in measured:
            if value > limit:
                return key
        return None
