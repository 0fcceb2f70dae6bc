"""The one record type of curation, and its Arrow schema in the shards.

Columns fixed by SPEC.md: id, text, url, crawl, lang, lang_score, quality_score, domain, n_chars.
Per-document quality signals are kept in `signals` (a JSON string column in the shards) so users
can refilter without recomputing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pyarrow as pa


@dataclasses.dataclass
class Document:
    id: str
    text: str
    url: str = ""
    crawl: str = ""
    warc_file: str = ""
    lang: str = ""
    lang_score: float = 0.0
    quality_score: float = 0.0
    domain: str = ""
    signals: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_chars(self) -> int:
        return len(self.text)


def document_id(warc_file: str, record_id: str) -> str:
    """A stable id: the same WARC record always gets the same id, across reruns and machines."""
    return hashlib.sha1(f"{warc_file}\x00{record_id}".encode()).hexdigest()[:24]


SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.large_string()),
        ("url", pa.string()),
        ("crawl", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("quality_score", pa.float32()),
        ("domain", pa.string()),
        ("n_chars", pa.int32()),
        ("warc_file", pa.string()),
        ("signals", pa.string()),
    ]
)
