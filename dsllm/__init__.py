"""Shared plumbing for every dsllm package: storage URIs, config loading, user errors.

The pipeline itself lives in `curation` → `tokenizer` → `trainer`; `jobs` holds the CLI and Ray.
"""

__version__ = "0.1.0"
