"""fastText: both wheels' module works for training and lid.176 prediction; language filtering."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from dsllm import fasttext_compat
from dsllm.curation.document import Document
from dsllm.curation.langid import LangidConfig, LanguageIdentifier
from dsllm.curation.stage import StageCounts
from dsllm.errors import UserError
from tests.curation.test_filters import chinese, english


def test_installed_fasttext_trains_and_predicts_lid176(tmp_path):
    """After the README's one install, the fastText module trains and the shipped lid.176 predicts."""
    assert fasttext_compat.can_train(), f"the installed fasttext cannot train; fix: {fasttext_compat.FIX}"
    train = tmp_path / "train.txt"
    train.write_text(
        "".join(
            f"__label__a apples pears fruit {i} grow on trees\n__label__b engines wheels cars {i} drive on roads\n"
            for i in range(100)
        )
    )
    # trained in a fresh process, as `dsllm quality train` does (fastText 0.9.2 can report NaN when
    # trained inside a process that already did other work; see curation.quality._train_isolated)
    code = (
        "import sys; from dsllm import fasttext_compat as f; "
        "f.train_supervised(input=sys.argv[1], epoch=10, lr=0.2, wordNgrams=2, bucket=10_000, dim=32, "
        "minCount=1, thread=2, seed=0, verbose=0).save_model(sys.argv[2])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(train), str(tmp_path / "m.bin")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    model = fasttext_compat.load_model(str(tmp_path / "m.bin"))
    assert model.predict("apples and pears")[0][0] == "__label__a"
    assert model.predict("wheels and engines")[0][0] == "__label__b"
    lid = fasttext_compat.load_model(fasttext_compat.lid176_path())
    assert lid.predict(" ".join(english()[:500].split()))[0][0] == "__label__en"
    assert lid.predict("".join(chinese()[:300].split()))[0][0] == "__label__zh"


def test_predict_only_module_gives_the_one_line_fix(monkeypatch):
    predict_only = types.ModuleType("fasttext")
    predict_only.load_model = lambda path: None
    monkeypatch.setitem(sys.modules, "fasttext", predict_only)
    assert not fasttext_compat.can_train()
    with pytest.raises(UserError, match="pip install --no-deps --force-reinstall fasttext-numpy2-wheel"):
        fasttext_compat.train_supervised(input="x")


def test_missing_model_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        fasttext_compat.load_model(str(tmp_path / "nope.bin"))


def test_language_filter_keeps_configured_languages():
    docs = [
        Document("en", english()),
        Document("zh", chinese()),
        Document("fr", "Le petit chat dort sur le canapé pendant que la pluie tombe doucement sur la ville."),
        Document("de", "Der kleine Hund schläft im Garten, während die Sonne langsam hinter den Bergen untergeht."),
    ]
    counts = StageCounts("langid")
    kept = list(LanguageIdentifier(LangidConfig(batch=3))(iter(docs), counts))
    assert [d.id for d in kept] == ["en", "zh"]
    assert [d.lang for d in kept] == ["en", "zh"] and all(d.lang_score > 0.9 for d in kept)
    assert counts.dropped == {"other_language": 2} and counts.events == {"lang:fr": 1, "lang:de": 1}
    counts = StageCounts("langid")
    kept = list(LanguageIdentifier(LangidConfig(languages=("fr",), threshold=0.999999))(iter(docs[2:3]), counts))
    assert kept == [] and counts.dropped == {"low_confidence": 1}
