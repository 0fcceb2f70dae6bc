"""Domain remixing: label every document with a domain from URL rules, then re-weight the corpus
toward a target mixture by deterministic up-sampling (repeats) and down-sampling (hash-based).

    classifier = DomainClassifier.from_config(cfg)          # rules: configs/domains.toml (+ user file)
    doc.domain = classifier.domain(doc.url)
    plan = DomainRemixer(cfg).plan(natural)                 # natural: {domain: {"documents", "chars"}}
    k = plan.repeats(doc.id, doc.domain)                    # 0 drop, 1 keep, k > 1: k - 1 extra copies

A document's fate depends only on (seed, id, domain factor): any worker, any rerun, same answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from typing import Iterable
from urllib.parse import urlsplit

from dsllm.errors import UserError

OTHER = "other_web"
DEFAULT_TARGET = {"encyclopedia": 0.08, "academic": 0.08, "books": 0.06, "tech": 0.08,
                  "forum_qa": 0.08, "news": 0.12, "government": 0.04, "commerce": 0.04,
                  OTHER: 0.42}


@dataclasses.dataclass(frozen=True)
class RemixConfig:
    """Target mixture (shares by `by`; unlisted domains keep their natural share) and the rules."""

    rules: str = "domains.toml"           # shipped rules (a name under configs/ or a path)
    extra_rules: str = ""                 # optional user rules file of the same shape
    target: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_TARGET))
    by: str = "chars"                     # chars | documents
    seed: int = 0
    max_repeat: int = 4                   # cap of the up-sampling factor

    def __post_init__(self):
        if self.by not in ("chars", "documents"):
            raise ValueError(f"by must be 'chars' or 'documents', got {self.by!r}")
        if self.max_repeat < 1:
            raise ValueError(f"max_repeat must be >= 1, got {self.max_repeat}")
        for dom, w in self.target.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or w < 0:
                raise ValueError(f"target.{dom} must be a number >= 0, got {w!r}")
        if self.target and sum(self.target.values()) <= 0:
            raise ValueError("target weights sum to 0")


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
    def from_config(cls, cfg: RemixConfig) -> "DomainClassifier":
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
    merged = {"order": list(extra.get("order", [])) + [d for d in base.get("order", [])
                                                       if d not in extra.get("order", [])],
              "domains": {}}
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


@dataclasses.dataclass(frozen=True)
class RemixPlan:
    """Per-domain sampling factors: < 1 down-samples, > 1 repeats (expected copies = factor)."""

    factors: dict
    seed: int = 0
    by: str = "chars"

    def repeats(self, doc_id: str, domain: str) -> int:
        """How many copies of this document the remixed corpus holds (0 = dropped)."""
        f = self.factors.get(domain, 1.0)
        whole = math.floor(f)
        return whole + (1 if _uniform(self.seed, doc_id) < f - whole else 0)

    def expected(self, natural: dict) -> dict:
        """Expected remixed distribution {domain: {"documents", "chars"}} of a natural one."""
        return {d: {k: round(v * self.factors.get(d, 1.0)) for k, v in c.items()}
                for d, c in natural.items()}

    def to_json(self) -> dict:
        return {"factors": dict(sorted(self.factors.items())), "seed": self.seed, "by": self.by}


def _uniform(seed: int, doc_id: str) -> float:
    """A uniform number in [0, 1) that depends only on (seed, id)."""
    digest = hashlib.blake2b(f"{seed}\x00{doc_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


class DomainRemixer:
    """Turns a natural distribution and the target mixture into a RemixPlan."""

    def __init__(self, cfg: RemixConfig):
        self.cfg = cfg

    def plan(self, natural: dict) -> RemixPlan:
        """Factors that move `natural` ({domain: {"documents", "chars"}}) toward the target while
        keeping the corpus size (by `cfg.by`): target weights of absent domains are dropped,
        unlisted domains keep their natural share, factors are capped at `max_repeat`."""
        by = self.cfg.by
        size = {d: float(c.get(by, 0)) for d, c in natural.items() if c.get(by, 0) > 0}
        total = sum(size.values())
        if total <= 0:
            return RemixPlan({}, self.cfg.seed, by)
        share = {d: s / total for d, s in size.items()}
        listed = {d: float(self.cfg.target[d]) for d in share if d in self.cfg.target}
        free = 1.0 - sum(s for d, s in share.items() if d not in listed)   # unlisted keep their share
        norm = sum(listed.values())
        if listed and norm <= 0:
            raise UserError("remix: the target gives weight 0 to every listed domain present in the data")
        weight = {d: (listed[d] / norm * free if d in listed else share[d]) for d in share}
        factors = {d: min(float(self.cfg.max_repeat), weight[d] / share[d]) for d in share}
        return RemixPlan(factors, self.cfg.seed, by)
