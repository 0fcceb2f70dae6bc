"""Style sheet and chart script embedded in the HTML report (kept apart from html.py to keep
Python and the ~250 lines of browser code separate). The script reads the JSON block
`#report-data` and draws with SVG only; it never touches the network."""

CSS = r"""
:root { --ink:#1f2933; --muted:#66788a; --line:#e4e7eb; --bg:#f7f8fa; --card:#fff;
        --blue:#4c78a8; --teal:#2a9d8f; --orange:#f58518; --red:#e45756; --grey:#bac4ce; --pink:#b279a2; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Helvetica Neue",Arial,sans-serif;
       color:var(--ink); background:var(--bg); }
header { padding:22px 32px 14px; background:var(--card); border-bottom:1px solid var(--line); }
h1 { margin:0; font-size:22px; font-weight:650; }
h1 .kind { font-size:13px; font-weight:600; color:#fff; background:var(--blue); border-radius:10px;
           padding:2px 9px; vertical-align:middle; margin-left:6px; }
.path { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; margin-top:4px; word-break:break-all; }
.created { color:var(--muted); font-size:12px; }
main { max-width:1100px; margin:0 auto; padding:18px 24px 48px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(128px,1fr)); gap:12px; margin:8px 0 18px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
.card .v { font-size:19px; font-weight:650; white-space:nowrap; } .card .k { color:var(--muted); font-size:12px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 20px; margin:16px 0; }
section h2 { margin:0 0 4px; font-size:16px; } section .sub { color:var(--muted); font-size:12px; margin-bottom:8px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:16px; margin:16px 0; }
@media (max-width:900px) { .grid2 { grid-template-columns:1fr; } }
.grid2 section { margin:0; }
svg { display:block; max-width:100%; height:auto; }
svg text { font-size:11px; fill:var(--ink); } svg .axis { fill:var(--muted); } svg .grid { stroke:var(--line); }
svg rect.bar:hover, svg circle.point:hover { opacity:.75; }
.legend { font-size:12px; color:var(--muted); margin:2px 0 6px; }
.legend i { display:inline-block; width:10px; height:10px; border-radius:2px; margin:0 4px 0 10px; vertical-align:-1px; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { padding:4px 8px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { color:var(--muted); font-weight:600; position:sticky; top:0; background:var(--card); }
td:first-child, th:first-child, td.l { text-align:left; }
tr.err td { background:#fdecea; } tr.warn td { background:#fff6e0; }
.scroll { max-height:420px; overflow:auto; }
.ok { color:var(--teal); font-weight:600; } .bad { color:var(--red); font-weight:600; } .warn { color:#b7791f; }
ul.problems { margin:6px 0 0; padding-left:20px; }
.doc { border:1px solid var(--line); border-radius:8px; padding:10px 12px; margin:10px 0; }
.doc .meta { color:var(--muted); font-size:12px; } .doc pre { white-space:pre-wrap; margin:6px 0 0;
  font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; max-height:220px; overflow:auto; }
"""

SCRIPT = r"""
(function () {
'use strict';
const R = JSON.parse(document.getElementById('report-data').textContent);
const NS = 'http://www.w3.org/2000/svg';
const C = {blue:'#4c78a8', teal:'#2a9d8f', orange:'#f58518', red:'#e45756', grey:'#bac4ce', pink:'#b279a2'};
const main = document.getElementById('report');
const fmt = v => v == null ? '—' : Number(v).toLocaleString('en-US', {maximumFractionDigits: 3});
const pct = v => v == null ? '—' : (100 * v).toFixed(1) + '%';
const size = n => { if (n == null) return '—'; const u = ['B','KiB','MiB','GiB','TiB']; let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; } return (i ? n.toFixed(1) : n) + ' ' + u[i]; };
const short = v => { const a = Math.abs(v); if (a >= 1e9) return (v/1e9).toFixed(1)+'G'; if (a >= 1e6) return (v/1e6).toFixed(1)+'M';
  if (a >= 1e4) return (v/1e3).toFixed(0)+'k'; if (a >= 1e3) return (v/1e3).toFixed(1)+'k';
  return Number.isInteger(v) ? String(v) : v.toPrecision(3); };

function h(tag, attrs, parent, text) {
  const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function s(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
// Round axis ticks: 0, step, 2*step, ... up to the first multiple of step >= max (about 4 ticks).
function ticks(max) {
  const raw = Math.max(max, 1e-12) / 4, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(x => x >= raw);
  const out = []; for (let v = 0; v < max + step * 0.999; v += step) out.push(+v.toPrecision(12));
  return out;
}
function tip(e, text) { s('title', {}, e, text); return e; }
function section(title, sub, parent) {
  const sec = h('section', {}, parent || main); h('h2', {}, sec, title);
  if (sub) h('div', {class: 'sub'}, sec, sub);
  return sec;
}
function legend(parent, series) {
  const d = h('div', {class: 'legend'}, parent);
  series.forEach(x => { const i = h('i', {}, d); i.style.background = x.color; d.appendChild(document.createTextNode(x.name)); });
}
function svgRoot(parent, name, w, hgt) {
  return s('svg', {viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, 'data-chart': name, role: 'img'}, parent);
}

// Horizontal bars: rows [{label, values: [...], tips: [...]}], one series per value.
function hbars(parent, name, rows, series, opts) {
  opts = opts || {};
  const W = opts.width || 1000, L = opts.labelWidth || 170, barH = 14, gap = 8;
  const rowH = series.length * barH + gap, H = rows.length * rowH + 6;
  const max = opts.max || Math.max(1e-12, ...rows.flatMap(r => r.values));
  const plotW = W - L - 70;
  if (series.length > 1) legend(parent, series);
  const svg = svgRoot(parent, name, W, H);
  rows.forEach((r, i) => {
    const y0 = i * rowH + 3;
    s('text', {x: L - 8, y: y0 + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle'}, svg, r.label);
    r.values.forEach((v, j) => {
      const w = Math.max(v > 0 ? 1.5 : 0, plotW * v / max), y = y0 + j * barH;
      tip(s('rect', {class: 'bar', x: L, y: y, width: w, height: barH - 2, rx: 2, fill: series[j].color,
                     'data-series': series[j].name}, svg), r.tips ? r.tips[j] : `${r.label}: ${fmt(v)}`);
      s('text', {x: L + w + 5, y: y + barH / 2, 'dominant-baseline': 'middle', class: 'axis'}, svg,
        opts.valueText ? opts.valueText(r, j) : fmt(v));
    });
  });
  return svg;
}

// The funnel: per stage a centred bar for what went in and a darker one for what came out.
function funnel(parent, stages) {
  const W = 1000, L = 170, rowH = 26, H = stages.length * rowH + 8, plotW = W - L - 280;
  const read = Math.max(1, ...stages.map(x => Math.max(x.in, x.out)));
  const svg = svgRoot(parent, 'funnel', W, H), cx = L + plotW / 2;
  stages.forEach((st, i) => {
    const y = i * rowH + 4, wi = plotW * st.in / read, wo = plotW * st.out / read;
    const reasons = Object.entries(st.dropped).map(([k, v]) => `  ${k}: ${fmt(v)} (${pct(st.share_of_in[k])})`).join('\n');
    const t = `${st.name}\nin ${fmt(st.in)} → out ${fmt(st.out)} (added ${fmt(st.added)})` + (reasons ? '\ndropped:\n' + reasons : '');
    s('text', {x: L - 8, y: y + rowH / 2, 'text-anchor': 'end', 'dominant-baseline': 'middle'}, svg, st.name);
    tip(s('rect', {class: 'in', x: cx - wi / 2, y: y, width: wi, height: rowH - 6, rx: 3, fill: C.grey, opacity: .55}, svg), t);
    tip(s('rect', {class: 'bar', x: cx - wo / 2, y: y, width: Math.max(1.5, wo), height: rowH - 6, rx: 3, fill: C.blue}, svg), t);
    let top = Object.entries(st.dropped).slice(0, 2).map(([k, v]) => `${k} ${pct(st.share_of_in[k])}`).join(', ');
    if (top.length > 40) top = top.slice(0, 39) + '…';
    s('text', {x: L + plotW + 10, y: y + rowH / 2 - 1, 'dominant-baseline': 'middle'}, svg,
      `${fmt(st.out)} · ${pct(st.kept_of_read)} of read`);
    if (top) s('text', {x: L + plotW + 10, y: y + rowH / 2 + 10, 'dominant-baseline': 'middle', class: 'axis'}, svg, '− ' + top);
  });
}

// Vertical histogram with a y axis; bins of equal drawn width (log bins are labelled by their edges).
function histogram(parent, name, d, color, xfmt) {
  const W = 520, H = 230, L = 46, B = 34, T = 10, Rm = 20, counts = d.histogram.counts, edges = d.histogram.edges;
  const svg = svgRoot(parent, name, W, H), pw = W - L - Rm, ph = H - T - B;
  const tk = ticks(Math.max(1, ...counts)), max = tk[tk.length - 1], bw = pw / Math.max(1, counts.length);
  tk.forEach(v => {
    const y = T + ph - ph * v / max;
    s('line', {x1: L, x2: W - Rm, y1: y, y2: y, class: 'grid'}, svg);
    s('text', {x: L - 5, y: y, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'axis'}, svg, short(v));
  });
  counts.forEach((c, i) => {
    const bh = ph * c / max;
    tip(s('rect', {class: 'bar', x: L + i * bw + 1, y: T + ph - bh, width: Math.max(1, bw - 2), height: bh, fill: color, rx: 1.5}, svg),
        `${xfmt(edges[i])} – ${xfmt(edges[i + 1])}: ${fmt(c)}`);
  });
  const every = Math.ceil(counts.length / 8);
  edges.forEach((e, i) => { if (i % every === 0 || i === edges.length - 1)
    s('text', {x: L + i * bw, y: H - B + 16, 'text-anchor': 'middle', class: 'axis'}, svg, xfmt(e)); });
  const q = h('div', {class: 'sub'}, parent,
    `n ${fmt(d.count)} · mean ${xfmt(d.mean)} · p10 ${xfmt(d.p10)} · p50 ${xfmt(d.p50)} · p90 ${xfmt(d.p90)} · min ${xfmt(d.min)} · max ${xfmt(d.max)}` +
    (d.missing ? ` · ${fmt(d.missing)} missing` : ''));
  return svg;
}

// Dedup: removed share per dump and cumulative, against the number of dumps in the index.
function dedupChart(parent, dumps) {
  const W = 1000, H = 260, L = 50, B = 46, T = 12, Rm = 20, pad = 60, pw = W - L - Rm - 2 * pad, ph = H - T - B;
  const series = [{key: 'rate_within_dump', name: 'within dump', color: C.orange},
                  {key: 'rate_against_index', name: 'against earlier dumps', color: C.pink},
                  {key: 'rate_total', name: 'total', color: C.red},
                  {key: 'cumulative_rate', name: 'cumulative', color: C.blue}];
  legend(parent, series);
  const svg = svgRoot(parent, 'dedup', W, H);
  const tk = ticks(Math.max(0.01, ...dumps.flatMap(d => series.map(x => d[x.key] || 0)))), max = tk[tk.length - 1];
  const xs = i => L + pad + (dumps.length === 1 ? pw / 2 : pw * i / (dumps.length - 1));
  const ys = v => T + ph - ph * v / max;
  tk.forEach(v => {
    const y = ys(v);
    s('line', {x1: L, x2: W - Rm, y1: y, y2: y, class: 'grid'}, svg);
    s('text', {x: L - 5, y: y, 'text-anchor': 'end', 'dominant-baseline': 'middle', class: 'axis'}, svg, pct(v));
  });
  series.forEach(x => {
    const pts = dumps.map((d, i) => `${xs(i)},${ys(d[x.key] || 0)}`).join(' ');
    s('polyline', {points: pts, fill: 'none', stroke: x.color, 'stroke-width': 2}, svg);
    dumps.forEach((d, i) => tip(s('circle', {class: 'point', cx: xs(i), cy: ys(d[x.key] || 0), r: 4, fill: x.color,
                                            'data-series': x.name}, svg), `${d.crawl} · ${x.name}: ${pct(d[x.key])}`));
  });
  dumps.forEach((d, i) => {
    s('text', {x: xs(i), y: H - B + 16, 'text-anchor': 'middle', class: 'axis'}, svg, `${d.dumps_in_index || i + 1} dump${(d.dumps_in_index || i + 1) > 1 ? 's' : ''}`);
    s('text', {x: xs(i), y: H - B + 30, 'text-anchor': 'middle', class: 'axis'}, svg, d.crawl);
  });
}

function cards(items) {
  const d = h('div', {class: 'cards'}, main);
  items.forEach(([k, v]) => { const c = h('div', {class: 'card'}, d); h('div', {class: 'v'}, c, v); h('div', {class: 'k'}, c, k); });
}
function table(parent, head, rows, cls) {
  const wrap = h('div', {class: 'scroll'}, parent), t = h('table', {}, wrap), tr = h('tr', {}, h('thead', {}, t));
  head.forEach(x => h('th', {}, tr, x));
  const tb = h('tbody', {}, t);
  rows.forEach((r, i) => { const row = h('tr', cls ? {class: cls(i)} : {}, tb); r.forEach(x => h('td', {}, row, x)); });
  return t;
}

const WARN = ['empty', 'tiny', 'huge'];
function shards() {
  const ss = R.shard_summary, sec = section('Shards', `${fmt(ss.count)} shards · rows min/median/max ${fmt(ss.rows_min)} / ` +
    `${fmt(ss.rows_median)} / ${fmt(ss.rows_max)} · bytes ${size(ss.bytes_min)} / ${size(ss.bytes_median)} / ${size(ss.bytes_max)} · ` +
    `${fmt(ss.flagged)} flagged`);
  const W = 1000, H = 120, L = 46, ph = 96, rows = R.shards, max = Math.max(1, ...rows.map(r => r.rows || 0));
  const svg = svgRoot(sec, 'shard_rows', W, H), bw = (W - L) / Math.max(1, rows.length);
  if (bw < 3) svg.setAttribute('shape-rendering', 'crispEdges');  // thousands of shards: no hairline gaps
  s('text', {x: L - 5, y: 8, 'text-anchor': 'end', class: 'axis'}, svg, short(max));
  s('text', {x: L - 5, y: ph + 4, 'text-anchor': 'end', class: 'axis'}, svg, '0');
  rows.forEach((r, i) => {
    const bh = ph * (r.rows || 0) / max, bad = r.flags.some(f => !WARN.includes(f)), warn = r.flags.length > 0;
    tip(s('rect', {class: 'bar', x: L + i * bw, y: 4 + ph - bh, width: bw > 3 ? bw - 1 : bw + 0.3, height: Math.max(bh, bad ? 3 : 0),
                   fill: bad ? C.red : (warn ? C.orange : C.teal)}, svg),
        `${r.path}: ${fmt(r.rows)} rows, ${size(r.bytes)}${r.flags.length ? ' — ' + r.flags.join(', ') : ''}`);
  });
  h('div', {class: 'sub'}, sec, 'rows per shard in manifest order (red: error, orange: empty/tiny/huge)');
  const packed = R.kind === 'packed';
  const head = ['shard', 'rows', 'manifest rows', 'bytes', 'row groups'].concat(packed ? ['tokens'] : ['quality min–max', 'chars min–max'], ['sha256', 'flags']);
  const order = rows.map((r, i) => i).sort((a, b) => (rows[b].flags.length > 0) - (rows[a].flags.length > 0) || a - b);
  table(sec, head, order.map(i => { const r = rows[i];
    return [r.path, fmt(r.rows), fmt(r.manifest_rows), size(r.bytes), fmt(r.row_groups)].concat(
      packed ? [fmt(r.tokens)] : [r.quality_min == null ? '—' : `${r.quality_min.toFixed(3)} – ${r.quality_max.toFixed(3)}`,
                                   r.n_chars_min == null ? '—' : `${fmt(r.n_chars_min)} – ${fmt(r.n_chars_max)}`],
      [r.sha256 || '—', r.flags.join(', ') || 'ok']); }),
    k => { const r = rows[order[k]]; return r.flags.some(f => !WARN.includes(f)) ? 'err' : (r.flags.length ? 'warn' : ''); });
}

function checks() {
  const c = R.checks, sec = section('Checks', c.verified ? 'sha256 of every shard re-read and compared with the manifest'
                                                          : 'sha256 not verified (run with --verify)');
  h('div', {class: c.ok ? 'ok' : 'bad'}, sec, c.ok ? 'all checks passed' : 'checks failed');
  if (c.problems.length) { const ul = h('ul', {class: 'problems'}, sec);
    c.problems.forEach(p => h('li', {class: p.level === 'error' ? 'bad' : 'warn'}, ul, p.message)); }
}

function samples() {
  if (!R.sample || !R.sample.length) return;
  const sec = section(`Sample of ${R.sample.length}`, 'random documents drawn uniformly over all shards');
  R.sample.forEach(d => { const box = h('div', {class: 'doc'}, sec);
    const meta = R.kind === 'curated'
      ? `${d.shard}#${d.row} · ${d.id} · ${d.lang} (${d.lang_score}) · quality ${d.quality_score} · ${d.domain} · ${fmt(d.n_chars)} chars · ${d.crawl} · ${d.url}`
      : `${d.shard}#${d.row} · ${fmt(d.n_tokens)} tokens · ${d.documents} segments at ${JSON.stringify(d.doc_offsets.slice(0, 16))}`;
    h('div', {class: 'meta'}, box, meta);
    h('pre', {}, box, R.kind === 'curated' ? (d.text || '').slice(0, 3000) : (d.text != null ? d.text.slice(0, 3000) : 'ids: ' + JSON.stringify(d.input_ids_head) + ' …'));
  });
}

function droppedExamples() {
  const xs = R.dropped_examples || [];
  if (!xs.length) return;
  const sec = section(`Dropped documents: ${xs.length} examples`, 'the first kept documents of every stage and reason; ' +
    'all kept ones: dsllm stats OUT --dropped STAGE:REASON');
  xs.forEach(d => { const box = h('div', {class: 'doc', 'data-dropped': `${d.stage}:${d.reason}`}, sec);
    const meta = [`${d.stage}: ${d.reason}`];
    if (d.value != null) meta.push(`value ${fmt(d.value)}`);
    if (d.detail) meta.push(d.detail);
    if (d.duplicate_of) meta.push(`duplicate of ${d.duplicate_of}`);
    meta.push(d.lang || '—', d.n_chars == null ? '— chars' : `${fmt(d.n_chars)} chars`, d.url || '');
    h('div', {class: 'meta'}, box, meta.join(' · '));
    h('pre', {}, box, d.text || '');
  });
}

function curated() {
  const t = R.totals;
  cards([['documents', fmt(t.documents)], ['characters', fmt(t.chars)], ['text bytes', size(t.text_bytes)],
         ['shard bytes', size(t.shard_bytes)], ['shards', fmt(t.shards)], [t.tokens == null ? 'tokens (not tokenized)' : 'tokens', fmt(t.tokens)],
         ['inputs done / failed', `${fmt(R.inputs.done)} / ${fmt(R.inputs.failed)}`]]);
  if (R.funnel.length) funnel(section('Stage funnel', 'grey: documents in, blue: documents out, as a share of records read; hover for drop reasons' +
    (R.skipped_stages.length ? ` · skipped: ${R.skipped_stages.join(', ')}` : '')), R.funnel);
  const g = h('div', {class: 'grid2'}, main);
  if (R.languages.length) hbars(section('Languages', 'documents; share of characters in the label', g), 'languages',
    R.languages.map(l => ({label: `${l.lang} (${pct(l.share_chars)} chars)`, values: [l.share_documents],
                           tips: [`${l.lang}: ${fmt(l.documents)} documents, ${fmt(l.chars)} chars`]})),
    [{name: 'documents', color: C.teal}], {width: 520, labelWidth: 150, valueText: r => pct(r.values[0])});
  if (R.domains.length) hbars(section('Domains', 'natural shares of documents and characters (mixtures: dsllm mix)', g), 'domains',
    R.domains.map(d => ({label: d.domain, values: [d.share_documents, d.share_chars],
                         tips: [`${d.domain}: ${fmt(d.documents)} docs`, `${d.domain}: ${fmt(d.chars)} chars`]})),
    [{name: 'documents', color: C.grey}, {name: 'chars', color: C.blue}], {width: 520, labelWidth: 110, valueText: (r, j) => pct(r.values[j])});
  const g2 = h('div', {class: 'grid2'}, main);
  if (R.quality_score.count) histogram(section('Quality score', 'documents per score bin (higher is better)', g2), 'quality', R.quality_score, C.blue, v => v == null ? '—' : v.toFixed(2));
  if (R.doc_chars.count) histogram(section('Document length', 'documents per length bin, characters (one bin per doubling)', g2), 'length', R.doc_chars, C.teal, v => v == null ? '—' : short(Math.round(v)));
  if (R.dedup.dumps.length) dedupChart(section('Deduplication across dumps', `share of each dump's documents removed, and cumulative; total ${pct(R.dedup.total_rate)}`), R.dedup.dumps);
  if (R.inputs.failed) { const sec = section('Failed inputs', `${R.inputs.failed} of ${R.inputs.total}`);
    table(sec, ['input', 'error'], R.inputs.failed_list.map(f => [f.uri, f.error || ''])); }
  droppedExamples();
}

function packed() {
  const t = R.totals, p = R.packed, tk = p.tokenizer;
  cards([['sequences', fmt(t.sequences)], ['sequence length', fmt(p.seq_len)], ['tokens', fmt(t.tokens)], ['fill', p.fill == null ? '—' : (100 * p.fill).toFixed(2) + '%'],
         ['documents', fmt(p.documents)], ['documents / sequence', fmt(p.documents_per_sequence)], ['shard bytes', size(t.shard_bytes)]]);
  const sec = section('Tokenizer and fill', `sha256 ${tk.sha256 || '—'} · vocab ${fmt(tk.vocab_size)} · EOS ${fmt(tk.eos_id)} · BOS ${fmt(tk.bos_id)} · ${tk.path || ''} · BOS policy ${p.bos_policy || '—'}`);
  hbars(sec, 'fill', [{label: 'tokens', values: [p.fill || 0], tips: [`non-padding: ${fmt(p.tokens)}`]},
                      {label: 'padding', values: [p.fill == null ? 0 : 1 - p.fill], tips: [`padding: ${fmt(p.pad_tokens)}`]}],
        [{name: 'share', color: C.blue}], {max: 1, valueText: r => pct(r.values[0])});
  if (R.domains && R.domains.length) hbars(section('Domains', 'natural share of tokens per domain (dsllm mix sets the training mixture)'), 'domains',
    R.domains.map(d => ({label: d.domain, values: [d.share_tokens], tips: [`${d.domain}: ${fmt(d.rows)} sequences, ${fmt(d.tokens)} tokens`]})),
    [{name: 'natural', color: C.grey}], {valueText: (r, j) => pct(r.values[j])});
  const g = h('div', {class: 'grid2'}, main);
  if (R.tokens_per_sequence.count) histogram(section('Tokens per sequence', 'non-padding tokens', g), 'tokens_per_sequence', R.tokens_per_sequence, C.blue, v => v == null ? '—' : short(Math.round(v)));
  if (R.segments_per_sequence.count) histogram(section('Document segments per sequence', 'from doc_offsets', g), 'segments_per_sequence', R.segments_per_sequence, C.teal, v => v == null ? '—' : short(v));
  if (R.segment_tokens.count) histogram(section('Segment length', 'tokens per document segment (one bin per doubling)'), 'segment_tokens', R.segment_tokens, C.orange, v => v == null ? '—' : short(Math.round(v)));
}

function mixture() {
  const t = R.totals, m = R.mixture;
  cards([['sequences', fmt(t.sequences)], ['sequence length', fmt(m.seq_len)], ['tokens', fmt(t.tokens)],
         ['asked tokens', fmt(t.requested_tokens)], ['domains', fmt(t.domains)], ['inputs', fmt(t.sources)]]);
  hbars(section('Domains', 'share of tokens: natural, target, mixed' + (m.absent_targets.length ? ` · targets not in the data: ${m.absent_targets.join(', ')}` : '')), 'domains',
    R.domains.map(d => ({label: d.domain, values: [d.natural_share, d.target_share, d.mixed_share],
                         tips: [`${d.domain} natural: ${fmt(d.natural_tokens)} tokens`, `${d.domain} target: ${pct(d.target_share)}`,
                                `${d.domain} mixed: ${fmt(d.planned_tokens)} tokens (×${d.repeat.toFixed(2)}, shortfall ${fmt(d.shortfall_tokens)})`]})),
    [{name: 'natural', color: C.grey}, {name: 'target', color: C.orange}, {name: 'mixed', color: C.pink}], {valueText: (r, j) => pct(r.values[j])});
  table(section('Inputs', 'packed datasets the order reads from'), ['source', 'uri', 'sequences', 'tokens', 'reachable'],
        m.sources.map((s, i) => [String(i), s.uri, fmt(s.rows), fmt(s.tokens), s.reachable ? 'yes' : 'no']));
}

({curated: curated, packed: packed, mixture: mixture})[R.kind]();
if (R.kind !== 'mixture') shards();
checks();
samples();
document.body.setAttribute('data-rendered', 'true');
})();
"""
