"""Model-based quality: a fastText classifier of "high quality" (`__label__hq`) against
"low quality" (`__label__lq`) text, trained by `dsllm quality train` and applied by curate's
`quality_model` stage, which writes `quality_score` = P(hq) and drops documents below
`threshold`. Without a model, `quality_score` is `heuristic_score` of the filter signals.

Training inputs (positive and negative): a Parquet file or directory (column `text`), a JSONL file
(field `text`), a directory of `.txt` files (each file one document) or a `.txt` file (one
document per line). CJK characters are separated by spaces before fastText sees them (fastText
splits words on whitespace only), so word n-grams become character n-grams there.

Reasons (stage `quality_model`): low_quality_score.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import tempfile

from dsllm.curation.document import Document
from dsllm.curation.filters.text import CJK_RE
from dsllm.curation.stage import Stage
from dsllm.errors import UserError

LABEL_HQ, LABEL_LQ = "__label__hq", "__label__lq"


@dataclasses.dataclass(frozen=True)
class QualityModelConfig:
    model: str = ""  # a fastText .bin/.ftz from `dsllm quality train` ("" = heuristic score)
    threshold: float = 0.0  # drop documents whose P(hq) is below this
    max_chars: int = 4000
    batch: int = 256

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"quality_model.threshold must be in [0, 1], got {self.threshold}")


@dataclasses.dataclass(frozen=True)
class QualityTrainConfig:
    epoch: int = 10
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 64
    bucket: int = 200_000  # hashed n-gram buckets: small keeps the model a few MB
    min_count: int = 1
    max_chars: int = 4000
    holdout: float = 0.1
    seed: int = 0
    threads: int = 2


def normalize(text: str, max_chars: int = 4000) -> str:
    """One lowercase line; CJK characters spaced out so fastText sees them as tokens."""
    text = text[:max_chars].lower()
    text = CJK_RE.sub(lambda m: f" {m.group(0)} ", text)
    return " ".join(re.findall(r"\w+|[^\w\s]", text))


def heuristic_score(signals: dict) -> float:
    """A [0, 1] score from the filter signals (higher is better), used when no model is configured:
    the mean of how prose-like the lines are, how little is repeated, and how long the text is."""
    parts = []
    if "line_punct_ratio" in signals:
        parts.append(min(1.0, signals["line_punct_ratio"] / 0.6))
    if "short_line_ratio" in signals:
        parts.append(1.0 - signals["short_line_ratio"])
    if "dup_line_chars" in signals:
        parts.append(1.0 - min(1.0, signals["dup_line_chars"] / 0.2))
    if "n_words" in signals:
        parts.append(min(1.0, signals["n_words"] / (600 if signals.get("cjk") else 300)))
    if "stop_words" in signals and "n_words" in signals:
        density = signals["stop_words"] / max(1, signals["n_words"])
        parts.append(min(1.0, density / (0.1 if signals.get("cjk") else 0.15)))
    return round(sum(parts) / len(parts), 4) if parts else 0.0


def local_model_path(uri: str) -> str:
    """A local path for a model URI (remote models are fetched once per process into a temp dir)."""
    from dsllm import storage

    if not storage.is_remote(uri):
        return uri
    dest = os.path.join(tempfile.gettempdir(), "dsllm-models", re.sub(r"[^A-Za-z0-9._-]", "_", uri))
    if not os.path.exists(dest):
        storage.download(uri, dest)
    return dest


class QualityScorer(Stage):
    """The `quality_model` stage: scores with the classifier and drops below the threshold."""

    name = "quality_model"

    def __init__(self, cfg: QualityModelConfig):
        from dsllm.fasttext_compat import cached_model

        if not cfg.model:
            raise ValueError("QualityScorer needs quality_model.model")
        self.cfg = cfg
        self.batch_size = cfg.batch
        self.model = cached_model(local_model_path(cfg.model))

    def scores(self, texts: list[str]) -> list[float]:
        labels, probs = self.model.predict([normalize(t, self.cfg.max_chars) for t in texts], k=2)
        out = []
        for labs, ps in zip(labels, probs):
            table = dict(zip(labs, map(float, ps)))
            out.append(min(1.0, table.get(LABEL_HQ, 1.0 - table.get(LABEL_LQ, 1.0))))
        return out

    def deciding(self, item: Document, reason: str) -> tuple[float | None, str | None]:
        return float(item.quality_score), None

    def judge(self, batch: list[Document]) -> list[str | None]:
        """Set every document's `quality_score`; drop those below the threshold."""
        reasons: list[str | None] = []
        for doc, score in zip(batch, self.scores([d.text for d in batch])):
            doc.quality_score = score
            reasons.append("low_quality_score" if score < self.cfg.threshold else None)
        return reasons


def read_texts(uri: str) -> list[str]:
    """Documents from a Parquet file/dir, a JSONL file, a .txt file or a directory of .txt files."""
    from dsllm import storage

    files = storage.list_files(uri)
    if not files:
        raise UserError(f"{uri}: no such file or directory")
    texts: list[str] = []
    is_dir = len(files) > 1 or files[0].uri.rstrip("/") != str(uri).rstrip("/")
    for f in files:
        if f.uri.endswith(".parquet"):
            import pyarrow.parquet as pq

            with storage.open_random(f.uri, f.size) as fh:
                texts.extend(t for t in pq.ParquetFile(fh).read(columns=["text"]).column("text").to_pylist() if t)
        elif f.uri.endswith((".jsonl", ".json")):
            for line in storage.read_text(f.uri).splitlines():
                if line.strip():
                    texts.append(json.loads(line)["text"])
        elif is_dir:
            texts.append(storage.read_bytes(f.uri).decode("utf-8", "replace"))
        else:
            texts.extend(ln for ln in storage.read_text(f.uri).splitlines() if ln.strip())
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserError(f"{uri}: no documents found")
    return texts


def train_quality_model(
    positive: list[str], negative: list[str], output: str, cfg: QualityTrainConfig = QualityTrainConfig()
) -> dict:
    """Train and save the classifier; returns holdout metrics and sizes."""
    from dsllm import storage
    from dsllm.fasttext_compat import load_model

    rows = [(LABEL_HQ, t) for t in positive] + [(LABEL_LQ, t) for t in negative]
    random.Random(cfg.seed).shuffle(rows)
    n_test = int(len(rows) * cfg.holdout) if len(rows) >= 20 else 0
    test, train = rows[:n_test], rows[n_test:]
    with tempfile.TemporaryDirectory(prefix="dsllm-quality-") as tmp:
        train_path = os.path.join(tmp, "train.txt")
        with open(train_path, "w", encoding="utf-8") as f:
            for label, text in train:
                f.write(f"{label} {normalize(text, cfg.max_chars)}\n")
        out_local = os.path.join(tmp, "model.bin")
        _train_isolated(train_path, out_local, cfg)
        model = load_model(out_local)
        storage.upload_file(out_local, output)
        size = os.path.getsize(out_local)
    metrics = {
        "train_docs": len(train),
        "holdout_docs": len(test),
        "bytes": size,
        "positive": len(positive),
        "negative": len(negative),
    }
    if test:
        labels, _ = model.predict([normalize(t, cfg.max_chars) for _, t in test], k=1)
        correct = sum(lab[0] == gold for lab, (gold, _) in zip(labels, test))
        metrics["holdout_accuracy"] = round(correct / len(test), 4)
    return metrics


def _train_in_child(train_path: str, out_path: str, kwargs: dict) -> None:
    from dsllm.fasttext_compat import train_supervised

    train_supervised(input=train_path, **kwargs).save_model(out_path)


def _train_isolated(train_path: str, out_path: str, cfg: QualityTrainConfig) -> None:
    """Train in a fresh (spawned) process. fastText 0.9.2 sometimes reports "Encountered NaN" when
    trained inside a long-lived process that has done other work (seen under pytest), never in a
    fresh one; a child process also keeps a crash of the C++ trainer from taking the run down.
    If training really diverges (NaN), the learning rate is halved, as fastText's authors advise."""
    import concurrent.futures
    import multiprocessing

    from dsllm.fasttext_compat import can_train, train_supervised

    if not can_train():
        train_supervised()  # raises the one-line UserError with the fix
    lr = cfg.lr
    ctx = multiprocessing.get_context("spawn")
    for attempt in range(4):
        kwargs = dict(
            epoch=cfg.epoch,
            lr=lr,
            wordNgrams=cfg.word_ngrams,
            dim=cfg.dim,
            bucket=cfg.bucket,
            minCount=cfg.min_count,
            thread=cfg.threads,
            seed=cfg.seed,
            verbose=0,
        )
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
            try:
                pool.submit(_train_in_child, train_path, out_path, kwargs).result()
                return
            except RuntimeError as exc:
                if "NaN" not in str(exc) or attempt == 3:
                    raise
        lr /= 2
