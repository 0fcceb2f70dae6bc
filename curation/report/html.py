"""The report as one self-contained HTML page: no network needed to view it.

The report dict is embedded as JSON; a small script (curation/report/html_assets.py) draws every
chart as inline SVG when the page loads: the stage funnel, language bars, domain bars (natural
shares; a mixture: natural vs target vs mixed), quality and length histograms, dedup rate vs number of dumps, rows per shard; for packed
output the fill and tokens/segments per sequence. Each chart is an `<svg data-chart=NAME>` whose
bars are `rect.bar` (points `circle.point`), one per item, so tests can count what was drawn.
"""

from __future__ import annotations

import html
import json

from dsllm.curation.report.html_assets import CSS, SCRIPT


def render_html(report: dict) -> str:
    """The whole page as a string."""
    data = json.dumps(report, ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c")  # valid JSON that can never close the script element
    title = f"dsllm stats · {report['kind']} · {report['path']}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<header>
  <h1>dsllm stats <span class="kind">{html.escape(report['kind'])}</span></h1>
  <div class="path">{html.escape(str(report['path']))}</div>
  <div class="created">manifest created {html.escape(str(report.get('manifest_created') or '—'))}
    · report schema {html.escape(report['schema'])}</div>
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
