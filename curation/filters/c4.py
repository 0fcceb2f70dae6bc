"""C4's line and document rules (Raffel et al. 2020, as implemented by datatrove and used by
FineWeb), with character-based equivalents for CJK lines.

Line rules (lines are removed, the document is kept): a word longer than `max_word_length`,
fewer than `min_words_per_line` words (CJK: `cjk_min_chars_per_line` characters), "javascript",
cookie/privacy-policy boilerplate, Wikipedia-style citation markers (stripped), and optionally
lines without terminal punctuation (off by default, as in FineWeb).
Document rules (reasons): lorem_ipsum, curly_bracket, too_few_sentences.
The number of removed lines is counted in the stage's `events` (lines_removed) and per document
in the `c4_lines_removed` signal.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

from dsllm.curation.document import Document
from dsllm.curation.filters import text as T
from dsllm.curation.stage import Stage

_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]", re.I)
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


@dataclasses.dataclass(frozen=True)
class C4Config:
    filter_no_terminal_punct: bool = False
    min_words_per_line: int = 3
    max_word_length: int = 1000
    min_sentences: int = 5
    filter_lorem_ipsum: bool = True
    filter_curly_bracket: bool = True
    filter_javascript: bool = True
    filter_policy: bool = True
    remove_citations: bool = True
    cjk_min_chars_per_line: int = 4
    cjk_min_sentences: int = 3

    def __post_init__(self):
        if self.min_words_per_line < 0 or self.min_sentences < 0 or self.max_word_length < 1:
            raise ValueError("c4: thresholds must be non-negative")


class C4Filter(Stage):
    name = "c4"
    reason_signals = {"too_few_sentences": "sentences"}  # lorem_ipsum, curly_bracket: no value

    def __init__(self, cfg: C4Config = C4Config()):
        self.cfg = cfg
        self.events: Counter = Counter()  # added to the stage's counts when its stream ends

    def keep(self, doc: Document) -> str | None:
        cfg = self.cfg
        lower = doc.text.lower()
        if cfg.filter_lorem_ipsum and "lorem ipsum" in lower:
            return "lorem_ipsum"
        if cfg.filter_curly_bracket and "{" in doc.text:
            return "curly_bracket"
        cjk = doc.signals.get("cjk", T.is_cjk_doc(doc.text, doc.lang))
        # whole-text checks first: most documents contain none of the phrases, so no line needs them
        phrases = tuple(
            p
            for p in (
                (("javascript",) if cfg.filter_javascript else ()) + (POLICY_PHRASES if cfg.filter_policy else ())
            )
            if p in lower
        )
        cite = cfg.remove_citations and "[" in doc.text
        kept, removed = [], 0
        for line in doc.text.split("\n"):  # a loop over lines, each judged by C-level string ops
            stripped = line.strip()
            if not stripped:
                kept.append(line)
                continue
            if self._keep_line(stripped, cjk, phrases):
                kept.append(_CITATION.sub("", line) if cite and "[" in line else line)
            else:
                removed += 1
        doc.text = "\n".join(kept).strip()
        doc.signals["c4_lines_removed"] = removed
        self.events["lines_removed"] += removed
        sentences = len(T.CJK_SENTENCE_RE.findall(doc.text)) if cjk else _latin_sentences(doc.text)
        doc.signals["sentences"] = sentences
        if sentences < (cfg.cjk_min_sentences if cjk else cfg.min_sentences):
            return "too_few_sentences"
        return None

    def _keep_line(self, stripped: str, cjk: bool, phrases: tuple[str, ...]) -> bool:
        cfg = self.cfg
        if phrases:
            low = stripped.lower()
            if any(p in low for p in phrases):
                return False
        if cfg.filter_no_terminal_punct and not stripped.endswith(T.CJK_TERMINAL_PUNCT if cjk else T.TERMINAL_PUNCT):
            return False
        if cjk:
            return T.cjk_count(stripped) >= cfg.cjk_min_chars_per_line
        parts = stripped.split()
        if len(parts) < cfg.min_words_per_line:
            return False
        return max(map(len, parts)) <= cfg.max_word_length


# The sentence count of `[^.!?\s][^.!?]*[.!?]+(?=[\s"')\]]|$)` (runs of text ending in . ! or ?),
# written so that the regex engine tries each stretch between punctuation once instead of from every
# character of it (the original pattern is quadratic in the length of a stretch with no sentence end):
# a match may only start at the text's start or right after . ! ?, and never gives back characters.
LATIN_SENTENCE_COUNT_RE = re.compile(r"(?:^|(?<=[.!?]))[^.!?]*?[^.!?\s][^.!?]*+[.!?]++(?=[\s\"')\]]|$)")


def _latin_sentences(text: str) -> int:
    """Sentences ≈ runs of text ending in . ! or ? (a regex stand-in for a sentence splitter)."""
    return len(LATIN_SENTENCE_COUNT_RE.findall(text))
