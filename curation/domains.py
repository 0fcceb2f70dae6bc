"""Domain labels: every document gets a domain from URL rules (configs/domains.toml, plus an
optional user file). Curation only labels; it never drops or repeats a document for a mixture:
mixtures are planned at training time over packed data (`dsllm mix`, trainer/mixture.py).

    classifier = DomainClassifier.from_config(DomainsConfig())    # rules: configs/domains.toml (+ user file)
    doc.domain = classifier.domain(doc.url)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from dsllm.errors import UserError

OTHER = "other_web"


@dataclasses.dataclass(frozen=True)
class DomainsConfig:
    """The URL rules that label documents ([domains] in a curate config)."""

    rules: str = "domains.toml"  # shipped rules (a name under configs/ or a path)
    extra_rules: str = ""  # optional user rules file of the same shape


class DomainClassifier:
    """URL → domain by host suffix (longest wins), then host patterns, then path patterns."""

    def __init__(self, rules: dict):
        self.order: list[str] = list(rules.get("order", []))
        domains = rules.get("domains", {})
        for name in domains:
            if name not in self.order:
                self.order.append(name)
        self.hosts: dict[str, str] = {}
        self.host_patterns: list[tuple[str, re.Pattern]] = []
        self.path_patterns: list[tuple[str, re.Pattern]] = []
        for name in self.order:
            spec = domains.get(name, {})
            for host in spec.get("hosts", []):
                self.hosts[host.lower().strip(".")] = name
            self.host_patterns += _compile(name, spec.get("host_patterns", []))
            self.path_patterns += _compile(name, spec.get("path_patterns", []))

    @classmethod
    def from_config(cls, cfg: DomainsConfig) -> DomainClassifier:
        from dsllm.config import load_toml

        rules = load_toml(cfg.rules)
        if cfg.extra_rules:
            rules = merge_rules(rules, load_toml(cfg.extra_rules))
        return cls(rules)

    @property
    def domains(self) -> list[str]:
        return self.order + [OTHER]

    def domain(self, url: str) -> str:
        try:
            parts = urlsplit(url or "")
            host = (parts.hostname or "").rstrip(".")
        except ValueError:  # malformed URL (bad port, brackets): classify by nothing
            return OTHER
        labels = host.split(".") if host else []
        for i in range(len(labels)):  # longest suffix first
            name = self.hosts.get(".".join(labels[i:]))
            if name is not None:
                return name
        for name, pattern in self.host_patterns:
            if pattern.search(host):
                return name
        path = parts.path or "/"
        for name, pattern in self.path_patterns:
            if pattern.search(path):
                return name
        return OTHER


def _compile(name: str, patterns: Iterable[str]) -> list[tuple[str, re.Pattern]]:
    out = []
    for p in patterns:
        try:
            out.append((name, re.compile(p)))
        except re.error as exc:
            raise UserError(f"domain rules: {name}: bad pattern {p!r}: {exc}") from None
    return out


def merge_rules(base: dict, extra: dict) -> dict:
    """User rules on top of the shipped ones: hosts added (user wins), patterns tried first."""
    merged = {
        "order": list(extra.get("order", [])) + [d for d in base.get("order", []) if d not in extra.get("order", [])],
        "domains": {},
    }
    names = list(base.get("domains", {})) + [d for d in extra.get("domains", {}) if d not in base.get("domains", {})]
    for name in names:
        b = base.get("domains", {}).get(name, {})
        e = extra.get("domains", {}).get(name, {})
        merged["domains"][name] = {
            "hosts": list(b.get("hosts", [])) + list(e.get("hosts", [])),
            "host_patterns": list(e.get("host_patterns", [])) + list(b.get("host_patterns", [])),
            "path_patterns": list(e.get("path_patterns", [])) + list(b.get("path_patterns", [])),
        }
    # a host listed by the user under another domain must win: drop it from the others
    user_hosts = {h: n for n, spec in extra.get("domains", {}).items() for h in spec.get("hosts", [])}
    for name, spec in merged["domains"].items():
        spec["hosts"] = [h for h in spec["hosts"] if user_hosts.get(h, name) == name]
    return merged
