"""Input listing: local files, directories and globs, `s3://` prefixes, `https://` URLs, and
Common Crawl crawls named `cc:CC-MAIN-YYYY-WW` (the WARCs listed in the crawl's `warc.paths.gz`
under `--cc-base`, default https://data.commoncrawl.org/, or `DSLLM_CC_BASE`).

`cc:CC-MAIN-YYYY-WW/wet` takes the crawl's WET files (`wet.paths.gz`) instead.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re

from dsllm import storage
from dsllm.errors import UserError

DEFAULT_CC_BASE = "https://data.commoncrawl.org/"
CRAWL_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}(?!\d)")
WARC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.zst", ".warc.lz4", ".arc.gz")


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input file and the crawl it belongs to ("" when only its warcinfo can tell)."""

    uri: str
    crawl: str = ""

    @property
    def key(self) -> str:
        """A stable name for this input's work files."""
        base = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(self.uri.rstrip("/")))[-60:]
        return f"{hashlib.sha1(self.uri.encode()).hexdigest()[:12]}-{base}"


def cc_base(explicit: str | None = None) -> str:
    base = explicit or os.environ.get("DSLLM_CC_BASE") or DEFAULT_CC_BASE
    return base if base.endswith("/") else base + "/"


def crawl_from_path(uri: str) -> str:
    m = CRAWL_RE.search(uri)
    return m.group(0) if m else ""


def _cc_inputs(spec: str, base: str, limit: int | None) -> list[InputSpec]:
    name = spec[len("cc:") :]
    crawl, _, kind = name.partition("/")
    if not re.fullmatch(r"CC-MAIN-\d{4}-\d{2}", crawl) or kind not in ("", "warc", "wet"):
        raise UserError(
            f"{spec}: not a Common Crawl crawl name (expected cc:CC-MAIN-YYYY-WW or cc:CC-MAIN-YYYY-WW/wet)"
        )
    listing = storage.join(base, "crawl-data", crawl, f"{kind or 'warc'}.paths.gz")
    try:
        raw = storage.read_bytes(listing)
    except UserError as exc:
        raise UserError(f"{spec}: cannot read the crawl's file list ({exc})") from None
    try:
        lines = gzip.decompress(raw).decode("utf-8").split()
    except (OSError, UnicodeDecodeError, EOFError):
        raise UserError(f"{listing}: not a gzip-compressed list of paths") from None
    if limit is not None:
        lines = lines[:limit]
    return [InputSpec(storage.join(base, line), crawl) for line in lines]


def _path_inputs(spec: str) -> list[InputSpec]:
    if storage.is_http(spec):
        return [InputSpec(spec, crawl_from_path(spec))]
    if not storage.is_s3(spec) and not any(c in spec for c in "*?["):
        spec = os.path.abspath(spec)
    files = storage.list_files(spec)
    explicit_file = len(files) == 1 and files[0].uri.rstrip("/") == spec.rstrip("/")
    if not explicit_file:  # a directory, prefix or glob: only WARC-like names
        files = [f for f in files if f.uri.endswith(WARC_SUFFIXES)]
    if not files:
        raise UserError(f"{spec}: no such file, or no WARC/WET files in it")
    return [InputSpec(f.uri, crawl_from_path(f.uri)) for f in files]


def resolve_inputs(specs: list[str], cc_base_url: str | None = None, limit: int | None = None) -> list[InputSpec]:
    """Expand the command line's inputs into files, in order, without duplicates; `limit` takes the
    first N files of each crawl, directory, prefix or glob."""
    if not specs:
        raise UserError("no inputs given (files, directories, globs, s3://, https:// or cc:CRAWL)")
    out: list[InputSpec] = []
    seen: set[str] = set()
    for spec in specs:
        found = _cc_inputs(spec, cc_base(cc_base_url), limit) if spec.startswith("cc:") else _path_inputs(spec)[:limit]
        for item in found:
            if item.uri not in seen:
                seen.add(item.uri)
                out.append(item)
    return out
