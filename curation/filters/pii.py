"""Masking of e-mail addresses and public IP addresses. Drops nothing; the masks are counted in the
stage's events (`email`, `ip`) and per document in the `masked_emails` / `masked_ips` signals.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import Counter

from dsllm.curation.document import Document
from dsllm.curation.stage import Stage

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
IPV4_RE = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])"
)
IPV6_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}(?![0-9A-Fa-f:])")
# cheap necessary conditions: every IPv4 match contains digit.digit, every IPv6 match hex:hex
# (the full patterns' leading look-behinds make them several times slower to scan a text with)
_IPV4_HINT = re.compile(r"\d\.\d")
_IPV6_HINT = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f]")


@dataclasses.dataclass(frozen=True)
class PiiConfig:
    emails: bool = True
    ips: bool = True
    email_replacement: str = "email@example.com"
    ip_replacement: str = "0.0.0.0"


class PiiMasker(Stage):
    """Masks e-mail addresses and public IP addresses; never drops a document."""

    name = "pii"

    def __init__(self, cfg: PiiConfig = PiiConfig()):
        self.cfg = cfg
        self.events: Counter = Counter()

    def mask(self, text: str) -> tuple[str, int, int]:
        n_email = n_ip = 0
        if self.cfg.emails and "@" in text:
            text, n_email = EMAIL_RE.subn(self.cfg.email_replacement, text)
        if self.cfg.ips:

            def _ip(m: re.Match) -> str:
                nonlocal n_ip
                try:
                    addr = ipaddress.ip_address(m.group(0))
                except ValueError:
                    return m.group(0)
                if addr.is_global:  # private, loopback and documentation ranges are not PII
                    n_ip += 1
                    return self.cfg.ip_replacement
                return m.group(0)

            if _IPV4_HINT.search(text):
                text = IPV4_RE.sub(_ip, text)
            if ":" in text and _IPV6_HINT.search(text):
                text = IPV6_RE.sub(_ip, text)
        return text, n_email, n_ip

    def keep(self, doc: Document) -> None:
        doc.text, n_email, n_ip = self.mask(doc.text)
        if n_email or n_ip:
            doc.signals.update(masked_emails=n_email, masked_ips=n_ip)
            self.events["email"] += n_email
            self.events["ip"] += n_ip
        return None
