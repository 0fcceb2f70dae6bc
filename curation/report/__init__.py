"""`dsllm stats`: statistics of curated or packed output, as one dict (summary), rich tables
(terminal) or a self-contained HTML page with charts (html)."""

from dsllm.curation.report.summary import locate, summarize

__all__ = ["locate", "summarize"]
