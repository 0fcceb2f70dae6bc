"""dsllm: DeepSeek LLM's pretraining recipe as software.

The pipeline lives in `dsllm.curation` → `dsllm.tokenizer` → `dsllm.trainer`; `dsllm.jobs` holds the
CLI and the Ray layer; this package's own modules are the shared plumbing (storage URIs, config
loading, user errors). In the repository the subpackages are the top-level folders `curation/`,
`tokenizer/`, `trainer/`, `jobs/` (pyproject's `package-dir`); an installed wheel nests them here.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

# Run from a source tree without an install of this very tree (a Ray job's working_dir, a git
# worktree, `python -m dsllm.jobs.cli` in a checkout): the subpackages are the sibling folders.
_here = _Path(__file__).resolve().parent
if not (_here / "trainer").is_dir() and (_here.parent / "trainer" / "__init__.py").is_file():
    __path__.append(str(_here.parent))  # type: ignore[name-defined]  # noqa: F821
