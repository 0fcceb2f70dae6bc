"""The report as one self-contained HTML page: no network needed to view it.

The report dict is embedded as JSON; a small script (curation/report/html_assets.py) draws every
chart as inline SVG when the page loads: the stage funnel, language bars, domain bars (natural
shares; a mixture: natural vs target vs mixed), quality and length histograms, dedup rate vs number of dumps, rows per shard; for packed
output the fill and tokens/segments per sequence. Each chart is an `<svg data-chart=NAME>` whose
bars are `rect.bar` (points `circle.point`), one per item, so tests can count what was drawn.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json

from dsllm.curation.report.html_assets import CSS, SCRIPT


def _sha256_source(code: str) -> str:
    """A CSP hash source for an inline element's exact text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode() + "'"


def content_security_policy() -> str:
    """Nothing loads from anywhere; only this page's own script and style element run (by hash)."""
    return (
        f"default-src 'none'; script-src {_sha256_source(SCRIPT)}; style-src {_sha256_source(CSS)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )


def embedded_json(report: dict) -> str:
    """The report as JSON that is inert inside `<script type=application/json>`: every `<`, `>` and
    `&` is a \\u escape, so no `</script>`, `<!--` or entity in crawl data can end or alter it."""
    data = json.dumps(report, ensure_ascii=False, separators=(",", ":"))
    return data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html(report: dict) -> str:
    """The whole page as a string. Crawl data (URLs, hosts, text, reasons) reaches the page only as
    escaped text here or through `textContent`/`setAttribute` in the script, never as markup."""
    data = embedded_json(report)
    title = f"dsllm stats · {report['kind']} · {report['path']}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{html.escape(content_security_policy())}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
  <h1>dsllm stats <span class="kind">{html.escape(report["kind"])}</span></h1>
  <div class="path">{html.escape(str(report["path"]))}</div>
  <div class="created">manifest created {html.escape(str(report.get("manifest_created") or "—"))}
    · report schema {html.escape(report["schema"])}</div>
</header>
<main id="report">
  <noscript><p class="warn">The charts are drawn by JavaScript embedded in this page; enable it to see them.
  The numbers are in the JSON block of the page source.</p></noscript>
</main>
<script type="application/json" id="report-data">{data}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
