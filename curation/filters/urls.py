"""URL blocklist: domains (a host or any of its parent domains) and words in the URL.

Lists are plain text, one entry per line, `#` comments. The defaults ship in configs/
(blocklist-domains.txt, blocklist-words.txt); users add their own files (local, s3:// or https://).
Reasons (stage `url_filter`): blocked_domain, blocked_word, bad_url.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from dsllm.curation.document import Document
from dsllm.curation.stage import Stage


@dataclasses.dataclass(frozen=True)
class UrlFilterConfig:
    domain_lists: tuple[str, ...] = ("blocklist-domains.txt",)  # names under configs/ or paths/URIs
    word_lists: tuple[str, ...] = ("blocklist-words.txt",)
    domains: tuple[str, ...] = ()  # extra entries inline
    words: tuple[str, ...] = ()
    drop_unparseable: bool = True


def read_list(name: str) -> list[str]:
    """Entries of a list file: a name under configs/, a local path, or a remote URI."""
    from dsllm import storage
    from dsllm.config import CONFIG_DIR

    path = str(CONFIG_DIR / name) if (CONFIG_DIR / name).exists() else name
    text = storage.read_text(path)
    return [ln.split("#", 1)[0].strip().lower() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]


def host_of(url: str) -> str:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.rstrip(".").lower()


class UrlFilter(Stage):
    name = "url_filter"

    def __init__(self, cfg: UrlFilterConfig = UrlFilterConfig()):
        self.cfg = cfg
        self.domains = set(cfg.domains)
        for name in cfg.domain_lists:
            self.domains.update(read_list(name))
        words = set(w.lower() for w in cfg.words)
        for name in cfg.word_lists:
            words.update(read_list(name))
        self.words = frozenset(words)
        self._split = re.compile(r"[^0-9a-z]+")

    def blocked_domain(self, host: str) -> bool:
        return self.blocking_domain(host) is not None

    def blocking_domain(self, host: str) -> str | None:
        """The block-list entry that blocks `host` (the host or its nearest listed parent), or None."""
        parts = host.split(".")
        return next((d for d in (".".join(parts[i:]) for i in range(len(parts))) if d in self.domains), None)

    def deciding(self, item: Document, reason: str) -> tuple[float | None, str | None]:
        """The block-list entry that matched (a domain, or the words, comma-separated)."""
        if reason == "blocked_domain":
            return None, self.blocking_domain(host_of(item.url))
        if reason == "blocked_word":
            return None, ",".join(sorted(set(self._split.split(item.url.lower())) & self.words))
        return None, None

    def keep(self, doc: Document) -> str | None:
        host = host_of(doc.url)
        if not host:
            return "bad_url" if self.cfg.drop_unparseable and doc.url else None
        if self.blocked_domain(host):
            return "blocked_domain"
        tokens = set(self._split.split(doc.url.lower()))
        if self.words and not tokens.isdisjoint(self.words):
            return "blocked_word"
        return None
