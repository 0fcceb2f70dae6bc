"""The report as rich tables in the terminal (the default view of `dsllm stats`)."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

MAX_SHARD_ROWS = 25  # the JSON has every shard; the terminal shows flagged ones first
BAR_WIDTH = 24


def render(report: dict, console: Console | None = None) -> None:
    """Print every section of a report (from `summary.summarize`)."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped to a file or pager: don't squeeze tables to 80 columns
            console = Console(width=max(console.width, 120))
    parts = {"curated": curated_parts, "packed": packed_parts, "mixture": mixture_parts}[report["kind"]]
    for part in parts(report):
        if part is not None:
            console.print(part)
            console.print()
    tail = (checks(report),) if report["kind"] == "mixture" else (shard_table(report), checks(report), samples(report))
    for part in tail:
        if part is not None:
            console.print(part)
            console.print()


def num(x, digits: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and digits:
        return f"{x:,.{digits}f}"
    return f"{int(round(x)):,}"


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def size(n) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def bar(share: float | None, width: int = BAR_WIDTH, style: str = "cyan") -> Text:
    share = max(0.0, min(1.0, share or 0.0))
    full = int(share * width * 8)
    blocks = "█" * (full // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[full % 8]
    return Text(blocks.ljust(width), style=style)


def _table(title: str, *cols, **kw) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, **kw)
    for c in cols:
        name, _, just = c.partition(":")
        t.add_column(name, justify={"r": "right", "": "left"}[just] if just in ("r", "") else just)
    return t


def header(report: dict) -> Panel:
    t = report["totals"]
    if report["kind"] == "curated":
        line = (
            f"[bold]{num(t['documents'])}[/] documents · {num(t['chars'])} chars · "
            f"{size(t['text_bytes'])} text · {size(t['shard_bytes'])} in {num(t['shards'])} shards "
            f"({num(t['row_groups'])} row groups) · tokens {num(t['tokens'])}"
        )
    else:
        p = report["packed"]
        line = (
            f"[bold]{num(t['sequences'])}[/] sequences × {num(p['seq_len'])} · {num(t['tokens'])} tokens · "
            f"fill {'—' if p['fill'] is None else format(100 * p['fill'], '.2f') + '%'} · {num(t['documents'])} documents · "
            f"{size(t['shard_bytes'])} in {num(t['shards'])} shards"
        )
    return Panel(
        line,
        title=f"{report['kind']} output · {report['path']}",
        title_align="left",
        subtitle=f"created {report.get('manifest_created') or '—'}",
        subtitle_align="right",
    )


def curated_parts(r: dict):
    yield header(r)
    yield inputs(r["inputs"])
    yield funnel(r["funnel"])
    if r.get("skipped_stages"):
        yield Text(f"stages skipped in this run: {', '.join(r['skipped_stages'])}", style="yellow")
    kept = r.get("dropped_samples")
    if kept and kept.get("rows"):
        how = "every dropped document" if kept["mode"] == "all" else f"the first {kept['keep']} per stage and reason"
        yield Text(
            f"dropped documents kept: {sum(kept['rows'].values()):,} ({how}) in dropped/; "
            "see them with `dsllm stats OUT --dropped REASON`",
            style="dim",
        )
    yield languages(r["languages"])
    yield domains(r["domains"])
    yield distribution("Quality score", r["quality_score"], "{:.3f}")
    yield distribution("Document length (characters)", r["doc_chars"], "{:,.0f}")
    yield dedup(r["dedup"])
    yield timing(r.get("timing"))


def timing(t: dict | None):
    """Where the run's time went: its phases, then the per-input stages (CPU summed over workers)."""
    if not t:
        return None
    table = _table(
        "Time of the run (CPU summed over workers; per-input stages summed over inputs)",
        "phase / stage",
        "wall s:r",
        "CPU s:r",
        "share of CPU:r",
        "tasks:r",
        "workers:r",
    )
    for p in t["phases"]:
        table.add_row(
            Text(p["name"], style="bold"),
            f"{p['wall_s']:.2f}",
            f"{p['cpu_s']:.2f}",
            pct(p["share_cpu"]),
            num(p["tasks"]),
            num(p["workers"]),
        )
        if p["name"] == "inputs":
            for s in t["stages"]:
                table.add_row(
                    Text(f"  {s['name']}", style="dim"),
                    Text(f"{s['wall_s']:.2f}", style="dim"),
                    Text(f"{s['cpu_s']:.2f}", style="dim"),
                    Text(pct(s["share_cpu"]), style="dim"),
                    Text(num(s["tasks"]), style="dim"),
                    "",
                )
    table.add_row(Text("total", style="bold"), f"{t['total']['wall_s']:.2f}", f"{t['total']['cpu_s']:.2f}", "", "", "")
    return table


def packed_parts(r: dict):
    yield header(r)
    p, tok = r["packed"], r["packed"]["tokenizer"]
    t = _table("Packing", "", "", show_header=False)
    for k, v in (
        ("sequence length", num(p["seq_len"])),
        ("sequences", num(p["sequences"])),
        ("tokens (non-padding)", num(p["tokens"])),
        ("padding tokens", num(p["pad_tokens"])),
        ("fill", "—" if p["fill"] is None else f"{100 * p['fill']:.2f}%"),
        ("documents", num(p["documents"])),
        ("documents per sequence", num(p["documents_per_sequence"], 2)),
        ("BOS policy", p["bos_policy"] or "—"),
        ("source shards", num(p["source_shards"])),
        ("tokenizer sha256", (tok["sha256"] or "—")[:16]),
        ("vocab size", num(tok["vocab_size"])),
        ("EOS / BOS id", f"{num(tok['eos_id'])} / {num(tok['bos_id'])}"),
        ("tokenizer path", tok["path"] or "—"),
    ):
        t.add_row(k, v)
    yield t
    yield packed_domains(r.get("domains") or [])
    yield distribution("Tokens per sequence", r["tokens_per_sequence"], "{:,.0f}", "sequences")
    yield distribution("Document segments per sequence", r["segments_per_sequence"], "{:,.4g}", "sequences")
    yield distribution("Segment length (tokens)", r["segment_tokens"], "{:,.0f}", "segments")


def inputs(i: dict):
    if not i["total"]:
        return None
    line = f"inputs: {i['done']}/{i['total']} done, {i['failed']} failed, {num(i['records'])} records read"
    rows = [Text(line)] + [Text(f"  ✗ {f['uri']}: {f['error']}", style="red") for f in i["failed_list"][:10]]
    return Group(*rows)


def funnel(stages: list[dict]):
    if not stages:
        return None
    t = _table(
        "Stage funnel (drop reasons as share of the stage's in)",
        "stage / drop reason",
        "in:r",
        "dropped:r",
        "share:r",
        "added:r",
        "out:r",
        "kept of read:r",
        "",
    )
    for s in stages:
        t.add_row(
            Text(s["name"], style="bold"),
            num(s["in"]),
            num(s["dropped_total"]),
            pct(s["dropped_total"] / s["in"] if s["in"] else None),
            num(s["added"]),
            num(s["out"]),
            pct(s["kept_of_read"]),
            bar(s["kept_of_read"], 16),
        )
        for reason, n in s["dropped"].items():
            t.add_row(
                Text(f"  {reason}", style="dim"),
                "",
                Text(num(n), style="dim"),
                Text(pct(s["share_of_in"][reason]), style="dim"),
                "",
                "",
                "",
                "",
            )
    return t


def languages(langs: list[dict]):
    if not langs:
        return None
    t = _table("Languages", "lang", "documents:r", "share:r", "", "chars:r", "share of chars:r")
    for row in langs[:20]:
        t.add_row(
            row["lang"],
            num(row["documents"]),
            pct(row["share_documents"]),
            bar(row["share_documents"]),
            num(row["chars"]),
            pct(row["share_chars"]),
        )
    return t


def domains(doms: list[dict]):
    """Curated: the natural domain mix (documents, characters)."""
    if not doms:
        return None
    t = _table(
        "Domains (natural; mixtures are set at training time by dsllm mix)",
        "domain",
        "documents:r",
        "share:r",
        "",
        "chars:r",
        "share of chars:r",
    )
    for d in doms[:25]:
        t.add_row(
            d["domain"],
            num(d["documents"]),
            pct(d["share_documents"]),
            bar(d["share_documents"], 16, "grey62"),
            num(d["chars"]),
            pct(d["share_chars"]),
        )
    return t


def mixture_parts(r: dict):
    """Natural vs target vs mixed token shares per domain, then the inputs."""
    t, m = r["totals"], r["mixture"]
    yield Panel(
        f"[bold]{num(t['sequences'])}[/] sequences × {num(m['seq_len'])} · {num(t['tokens'])} tokens "
        f"(asked {num(t['requested_tokens'])}) · {num(t['domains'])} domains from {num(t['sources'])} input(s)",
        title=f"mixture · {r['path']}",
        title_align="left",
    )
    d = _table(
        "Domains: natural vs target vs mixed (share of tokens)",
        "domain",
        "natural:r",
        "",
        "target:r",
        "mixed:r",
        "",
        "tokens:r",
        "repeat:r",
        "shortfall:r",
    )
    for x in r["domains"][:40]:
        d.add_row(
            x["domain"],
            pct(x["natural_share"]),
            bar(x["natural_share"], 14, "grey62"),
            pct(x["target_share"]),
            pct(x["mixed_share"]),
            bar(x["mixed_share"], 14, "magenta"),
            num(x["planned_tokens"]),
            f"×{x['repeat']:.2f}",
            num(x["shortfall_tokens"]),
        )
    if m["absent_targets"]:
        d.caption = f"targets for domains not in the data: {', '.join(m['absent_targets'])}"
    yield d
    s = _table("Inputs", "source", "uri", "sequences:r", "tokens:r", "reachable")
    for i, x in enumerate(m["sources"]):
        s.add_row(str(i), x["uri"], num(x["rows"]), num(x["tokens"]), "yes" if x["reachable"] else "NO")
    yield s


def packed_domains(doms: list[dict]):
    """Packed: rows, tokens and documents per domain, natural token shares."""
    if not doms:
        return None
    t = _table(
        "Domains (natural token shares; dsllm mix sets the training mixture)",
        "domain",
        "sequences:r",
        "tokens:r",
        "share:r",
        "",
        "documents:r",
    )
    for d in doms[:25]:
        t.add_row(
            d["domain"],
            num(d["rows"]),
            num(d["tokens"]),
            pct(d["share_tokens"]),
            bar(d["share_tokens"], 16, "grey62"),
            num(d["documents"]),
        )
    return t


def distribution(title: str, d: dict, fmt: str, unit: str = "documents"):
    """A histogram as a table of bins with bars (empty bins at both ends left out)."""
    if not d["count"]:
        return None
    counts, edges = d["histogram"]["counts"], d["histogram"]["edges"]
    nz = [i for i, c in enumerate(counts) if c]
    lo, hi = nz[0], nz[-1] + 1
    peak = max(counts) or 1
    head = Text(title, style="bold")
    head.append(
        f"   n {num(d['count'])} · mean {fmt.format(d['mean'])} · p10 {fmt.format(d['p10'])} · "
        f"p50 {fmt.format(d['p50'])} · p90 {fmt.format(d['p90'])} · max {fmt.format(d['max'])}",
        style="dim",
    )
    t = Table(box=box.SIMPLE_HEAD)
    t.add_column("bin", no_wrap=True)
    t.add_column(unit, justify="right")
    t.add_column("")
    for c, a, b in zip(counts[lo:hi], edges[lo:hi], edges[lo + 1 : hi + 1]):
        t.add_row(f"{fmt.format(a)} – {fmt.format(b)}", num(c), bar(c / peak, 30, "green"))
    if d["missing"]:
        t.caption = f"{num(d['missing'])} missing / not a number"
    return Group(head, t)


def dedup(dd: dict):
    if not dd["dumps"]:
        return None
    t = _table(
        "Deduplication per dump (removed share; cumulative across dumps in order)",
        "dump",
        "docs in:r",
        "within:r",
        "vs index:r",
        "total:r",
        "cumulative:r",
        "dumps in index:r",
        "index docs:r",
    )
    for d in dd["dumps"]:
        t.add_row(
            d.get("crawl", "?"),
            num(d.get("documents_in")),
            pct(d.get("rate_within_dump")),
            pct(d.get("rate_against_index")),
            pct(d.get("rate_total")),
            pct(d.get("cumulative_rate")),
            num(d.get("dumps_in_index")),
            num(d.get("index_documents_after")),
        )
    t.columns[0].no_wrap = True
    return t


def shard_table(r: dict):
    rows, s = r["shards"], r["shard_summary"]
    flagged = [x for x in rows if x["flags"]]
    shown = flagged[:MAX_SHARD_ROWS] if len(rows) > MAX_SHARD_ROWS else rows
    title = (
        f"Shards — {s['count']}, rows min/median/max {num(s['rows_min'])}/{num(s['rows_median'])}/"
        f"{num(s['rows_max'])}, bytes {size(s['bytes_min'])}/{size(s['bytes_median'])}/{size(s['bytes_max'])}, "
        f"{s['flagged']} flagged"
    )
    extra = ("tokens:r",) if r["kind"] == "packed" else ("quality:r", "chars:r")
    t = _table(title, "shard", "rows:r", "manifest:r", "bytes:r", "groups:r", *extra, "sha256", "flags")
    for c in t.columns[:-1]:
        c.no_wrap = True
    for x in shown:
        more = (
            (num(x["tokens"]),)
            if r["kind"] == "packed"
            else (
                _range(x["quality_min"], x["quality_max"], "{:.2f}"),
                _range(x["n_chars_min"], x["n_chars_max"], "{:,}"),
            )
        )
        style = (
            "red" if any(f not in ("empty", "tiny", "huge") for f in x["flags"]) else ("yellow" if x["flags"] else None)
        )
        t.add_row(
            x["path"].rsplit("/", 1)[-1],
            num(x["rows"]),
            num(x["manifest_rows"]),
            size(x["bytes"]),
            num(x["row_groups"]),
            *more,
            x["sha256"] or "—",
            ", ".join(x["flags"]) or "ok",
            style=style,
        )
    if len(rows) > len(shown):
        t.caption = f"{len(rows) - len(shown)} more shards not shown (all of them are in --json)"
    return t


def _range(lo, hi, fmt):
    return "—" if lo is None else f"{fmt.format(lo)}–{fmt.format(hi)}"


def checks(r: dict):
    c = r["checks"]
    head = Text("checks: ", style="bold")
    head.append("ok" if c["ok"] else "FAILED", style="green" if c["ok"] else "bold red")
    head.append("  (sha256 verified)" if c["verified"] else "  (sha256 not verified; use --verify)", style="dim")
    lines = [head] + [
        Text(
            f"  {'✗' if p['level'] == 'error' else '!'} {p['message']}",
            style="red" if p["level"] == "error" else "yellow",
        )
        for p in c["problems"][:30]
    ]
    if len(c["problems"]) > 30:
        lines.append(Text(f"  … {len(c['problems']) - 30} more (see --json)"))
    return Group(*lines)


def samples(r: dict):
    from dsllm.console import printable

    if not r.get("sample"):
        return None
    panels = []
    for d in r["sample"]:
        if r["kind"] == "curated":
            meta = (
                f"{d.get('lang')} ({d.get('lang_score')}) · quality {d.get('quality_score')} · {d.get('domain')} · "
                f"{num(d.get('n_chars'))} chars · {d.get('crawl')}\n{d.get('url')}"
            )
            body = (d.get("text") or "")[:600]
            title = f"{d['shard']}#{d['row']} · {d.get('id')}"
        else:
            meta = f"{d['n_tokens']} tokens · {d['documents']} segments at {d['doc_offsets'][:12]}"
            body = (d["text"] or "")[:600] if d["text"] is not None else f"ids: {d['input_ids_head']} …"
            title = f"{d['shard']}#{d['row']}"
        panels.append(
            Panel(
                Group(Text(printable(meta), style="dim"), Text(printable(body))),
                title=Text(printable(title)),
                title_align="left",
            )
        )
    return Group(Text(f"Sample of {len(panels)}", style="bold"), *panels)


def render_dropped(report: dict, console: Console | None = None) -> None:
    """`dsllm stats OUT --dropped SELECTOR`: one panel per kept dropped document. Text from the
    crawl (page text, URLs, details) goes through `dsllm.console.printable`: no control character
    or escape sequence of the data reaches the terminal."""
    from dsllm.console import printable

    if console is None:
        console = Console(markup=False, highlight=False, emoji=False)
        if not console.is_terminal:
            console = Console(width=max(console.width, 120), markup=False, highlight=False, emoji=False)
    counts = ", ".join(f"{k}: {v['dropped']} dropped, {v['kept']} kept" for k, v in report["reasons"].items())
    mode = "every dropped document" if report["mode"] == "all" else f"the first {report['keep']} per stage and reason"
    console.print(Text(f"Dropped documents: {report['selector']} ({counts}; kept: {mode})", style="bold"))
    console.print(Text(f"showing {len(report['rows'])} of {report['rows_kept']}", style="dim"))
    for d in report["rows"]:
        title = f"{d['stage']}:{d['reason']}"
        if d.get("value") is not None:
            title += f" · value {d['value']:.6g}"
        if d.get("detail"):
            title += f" · {d['detail']}"
        meta = [
            f"id {d.get('id') or '—'} · {d.get('lang') or '—'} · {num(d.get('n_chars'))} chars · {d.get('crawl') or '—'}"
        ]
        if d.get("duplicate_of"):
            meta.append(f"duplicate of {d['duplicate_of']}")
        meta.append(d.get("url") or "(no url)")
        meta.append(d.get("warc_file") or "")
        body = (d.get("text") or "")[:600] if d.get("text") is not None else "(no text: dropped before extraction)"
        console.print(
            Panel(
                Group(Text(printable("\n".join(meta)), style="dim"), Text(printable(body))),
                title=Text(printable(title)),
                title_align="left",
            )
        )
