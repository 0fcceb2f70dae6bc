"""The fast paths of the heuristic filters give exactly what their plain definitions give:
batched n-gram repetition, the linear sentence count, the lowercase stop-word count, the CJK
content-character views, the PII pre-checks, and batched against one-by-one stage runs."""

from __future__ import annotations

import copy
import ipaddress
import re
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsllm.curation.document import Document
from dsllm.curation.filters import text as T
from dsllm.curation.filters.c4 import _latin_sentences
from dsllm.curation.filters.gopher import GopherQualityConfig, GopherQualityFilter, GopherRepetitionFilter
from dsllm.curation.filters.ngrams import repetition_fractions
from dsllm.curation.filters.pii import IPV4_RE, IPV6_RE, PiiMasker
from dsllm.curation.stage import StageCounts
from tests.curation.test_filters import _reference_dup_fraction, chinese, english


def _reference_top_fraction(tokens: list[str], n: int) -> float:
    """Gopher's top n-gram character fraction, the slow and obvious way (ties: the longest)."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    total = sum(map(len, tokens))
    if not grams or not total:
        return 0.0
    counts = {g: grams.count(g) for g in grams}
    best = max(counts.values())
    if best < 2:
        return 0.0
    return max(c * sum(map(len, g)) for g, c in counts.items() if c == best) / total


_docs = st.lists(st.lists(st.sampled_from(["a", "bb", "ccc", "the", "xy"]), max_size=30), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(_docs, st.sets(st.integers(1, 7), min_size=1, max_size=3), st.sets(st.integers(1, 7), max_size=3))
def test_batched_repetition_matches_the_definition_per_document(docs, top_ns, dup_ns):
    hashes = [T.token_hashes(d) for d in docs]
    lens = [np.fromiter(map(len, d), dtype=np.int64, count=len(d)) for d in docs]
    top, dup = repetition_fractions(hashes, lens, top_ns, dup_ns)
    for j, tokens in enumerate(docs):  # equal n-grams in other documents of the batch never count
        for n in top_ns:
            assert top[n][j] == pytest.approx(_reference_top_fraction(tokens, n)), (tokens, n)
        for n in dup_ns:
            assert dup[n][j] == pytest.approx(_reference_dup_fraction(tokens, n)), (tokens, n)


def test_repetition_of_characters_for_cjk_counts_code_points():
    text = "最新优惠活动，最新优惠活动！" * 3 + "𠀀𠀀"
    h, lens = T.token_view(text, cjk=True)
    assert list(lens) == [1] * len(T.cjk_tokens(text))
    assert T.dup_ngram_char_fraction(h, lens, 5) == pytest.approx(_reference_dup_fraction(T.cjk_tokens(text), 5))


def _plain_cjk_tokens(text: str) -> list[str]:
    return [c for c in text if not (ord(c) < 0x10000 and (unicodedata.category(c)[0] in "PS" or c.isspace()))]


@given(st.text(alphabet=st.sampled_from(list("中文，。 \n\t-[]^\\a1！（）…𠀀\u3000€$")), max_size=40))
def test_cjk_views_agree_with_the_definition(text):
    expected = _plain_cjk_tokens(text)
    assert T.cjk_tokens(text) == expected
    assert T.cjk_count(text) == len(expected)
    assert T.cjk_codepoints(text).tolist() == [ord(c) for c in expected]


@given(st.lists(st.sampled_from(["a", "b", "ab", "", "中文"]), max_size=12))
def test_duplicate_fractions_match_the_definition(items):
    seen, dup, dup_chars = set(), 0, 0
    for it in items:
        if it in seen:
            dup, dup_chars = dup + 1, dup_chars + len(it)
        seen.add(it)
    total = sum(map(len, items))
    frac, chars = T.duplicate_fractions(items)
    assert frac == pytest.approx(dup / len(items) if items else 0.0)
    assert chars == pytest.approx(dup_chars / total if total else 0.0)


_ORIGINAL_SENTENCE_RE = re.compile(r"[^.!?\s][^.!?]*[.!?]+(?=[\s\"')\]]|$)")


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\"')]\n")), max_size=60))
def test_linear_sentence_count_equals_the_original_pattern(text):
    assert _latin_sentences(text) == len(_ORIGINAL_SENTENCE_RE.findall(text))


@settings(max_examples=300)
@given(
    st.text(alphabet=st.sampled_from(list("theTHE beoafndvwi.-_1") + ["İ", "ı", "ſ", "K", "ß", "Σ"]), max_size=40),
    st.sampled_from([GopherQualityConfig().stop_words, ("is", "this"), ("straße",)]),
)
def test_lowercase_stop_word_count_equals_the_ignorecase_regex(text, words):
    stage = GopherQualityFilter(GopherQualityConfig(stop_words=words))
    assert stage.count_stop_words(text) == len(stage.stop_re.findall(text))


def _reference_mask_ips(text: str) -> str:
    """IP masking without the pre-checks: both full patterns over the whole text."""

    def repl(m: re.Match) -> str:
        try:
            return "0.0.0.0" if ipaddress.ip_address(m.group(0)).is_global else m.group(0)
        except ValueError:
            return m.group(0)

    return IPV6_RE.sub(repl, IPV4_RE.sub(repl, text))


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["8", "1", "93", "255", "2001", "db8", "a", ".", ":", " ", "٣", "x"]), max_size=30))
def test_pii_prechecks_never_skip_an_address(parts):
    text = "".join(parts)
    assert PiiMasker().mask(text)[0] == _reference_mask_ips(text)


def test_batched_stage_equals_one_document_at_a_time():
    texts = [
        english(),
        chinese(),
        "\n".join(["Buy cheap watches online today with free shipping"] * 8),
        " ".join(["best price for the cheap watches"] * 12 + [english()[:400]]),
        "短",
        "",
    ]
    docs = [Document(str(i), t, lang="zh" if i in (1, 4) else "en") for i, t in enumerate(texts)]
    one_by_one, kept_single = [], []
    for d in copy.deepcopy(docs):
        counts = StageCounts("gopher_repetition")
        kept_single += [x.id for x in GopherRepetitionFilter()(iter([d]), counts)]
        one_by_one.append(d.signals)
    batched = copy.deepcopy(docs)
    counts = StageCounts("gopher_repetition")
    kept = [x.id for x in GopherRepetitionFilter(batch_docs=4)(iter(batched), counts)]
    assert kept == kept_single and counts.balanced() and counts.n_in == len(docs)
    assert [d.signals for d in batched] == one_by_one
    assert kept == ["0", "1", "4", "5"]  # the two spam texts go (too short or empty is not this stage's rule)
