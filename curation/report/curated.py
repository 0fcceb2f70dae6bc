"""Sections of the report that only curated output has: inputs, funnel, languages, domains,
quality and length distributions, dedup per dump, and sampled documents."""

from __future__ import annotations

import numpy as np

from dsllm.curation.report import scan


def distributions(footers: list[scan.ShardFooter], threads: int, tick):
    """Quality-score and document-length distributions from the two small numeric columns.

    Bin edges for quality come from the footers' min/max statistics (read them from the column
    when a writer left statistics out), so every shard reduces to a small histogram in its thread.
    """
    lo = [ft.stats["quality_score"][0] for ft in footers if "quality_score" in ft.stats]
    hi = [ft.stats["quality_score"][1] for ft in footers if "quality_score" in ft.stats]
    if len(lo) < len(footers):  # statistics missing somewhere: one extra pass over that column
        mm = scan.parallel_map(lambda ft: _min_max(scan.read_columns(ft, ["quality_score"])), footers, threads)
        lo = [m[0] for m in mm if m[0] is not None]
        hi = [m[1] for m in mm if m[1] is not None]
    q_lo = float(np.nanmin(lo)) if lo else 0.0
    q_hi = float(np.nanmax(hi)) if hi else 1.0

    def reduce(ft):
        t = scan.read_columns(ft, ["quality_score", "n_chars"])
        q, n = scan.LinearHistogram(q_lo, q_hi), scan.Log2Histogram()
        q.add(scan.numeric(t.column("quality_score")))
        n.add(scan.numeric(t.column("n_chars")))
        return q, n

    quality, length = scan.LinearHistogram(q_lo, q_hi), scan.Log2Histogram()
    for q, n in scan.parallel_map(reduce, footers, threads, tick("columns", len(footers))):
        quality.merge(q)
        length.merge(n)
    return quality, length


def _min_max(table):
    import pyarrow.compute as pc

    mm = pc.min_max(table.column("quality_score"))
    return mm["min"].as_py(), mm["max"].as_py()


def sections(manifest: dict, stats: dict | None, rows: list[dict], quality, length, problems: list) -> dict:
    stats = stats or {}
    documents = sum(r["rows"] or 0 for r in rows if "unlisted" not in r["flags"])
    totals = stats.get("totals") or {}
    out = {
        "totals": {
            "documents": documents,
            "chars": int(_total_chars(length, totals)),
            "text_bytes": totals.get("bytes"),
            "shard_bytes": sum(r["bytes"] or 0 for r in rows),
            "tokens": totals.get("tokens"),
            "shards": len(rows),
            "row_groups": sum(r["row_groups"] for r in rows),
        },
        "inputs": _inputs(manifest.get("inputs") or []),
        "funnel": _funnel(stats.get("stages") or [], documents, problems),
        "skipped_stages": list(stats.get("skipped") or []),
        "dropped_samples": stats.get("dropped_samples"),
        "languages": _languages(stats.get("languages") or {}),
        "domains": _domains(stats.get("domains") or {}),
        "quality_score": quality.to_json(),
        "doc_chars": length.to_json(),
        "dedup": _dedup((stats.get("dedup") or {}).get("dumps") or []),
        "timing": _timing(stats.get("timing")),
    }
    m_rows = sum(e.get("rows") or 0 for e in manifest["shards"])
    if m_rows != documents and not any(r["error"] for r in rows):
        problems.append({"level": "error", "message": f"shards hold {documents} rows, the manifest says {m_rows}"})
    if totals.get("documents") is not None and totals["documents"] != documents:
        problems.append(
            {
                "level": "error",
                "message": f"stats.json totals.documents = {totals['documents']} but the shards hold {documents}",
            }
        )
    if totals.get("chars") is not None and length.n == documents and int(length.total) != totals["chars"]:
        problems.append(
            {
                "level": "error",
                "message": f"stats.json totals.chars = {totals['chars']} but n_chars sums to {int(length.total)}",
            }
        )
    return out


def _total_chars(length, totals: dict) -> float:
    """Characters: the sum of the n_chars column when it was read, else stats.json's total."""
    return length.total if length.n else (totals.get("chars") or 0)


def _timing(timing: dict | None) -> dict | None:
    """stats.json's `timing` (phases and per-input stages, wall and CPU seconds), shares of CPU added;
    None for a run written before timings were recorded."""
    if not timing:
        return None
    phases = [dict(p) for p in timing.get("phases") or []]
    stages = [dict(s) for s in timing.get("stages") or []]
    total_cpu = sum(p["cpu_s"] for p in phases)
    stage_cpu = sum(s["cpu_s"] for s in stages)
    for p in phases:
        p["share_cpu"] = round(p["cpu_s"] / total_cpu, 6) if total_cpu else None
    for s in stages:
        s["share_cpu"] = round(s["cpu_s"] / stage_cpu, 6) if stage_cpu else None
    total = timing.get("total") or {
        "wall_s": round(sum(p["wall_s"] for p in phases), 4),
        "cpu_s": round(total_cpu, 4),
    }
    return {"phases": phases, "stages": stages, "total": total}


def _inputs(inputs: list[dict]) -> dict:
    failed = [i for i in inputs if i.get("status") != "done"]
    return {
        "total": len(inputs),
        "done": len(inputs) - len(failed),
        "failed": len(failed),
        "records": sum(int(i.get("records") or 0) for i in inputs),
        "failed_list": [{"uri": i.get("uri"), "error": i.get("error")} for i in failed[:50]],
    }


def _funnel(stages: list[dict], documents: int, problems: list) -> list[dict]:
    out = []
    read = stages[0]["in"] if stages else 0
    prev_out = None
    for s in stages:
        dropped = {k: int(v) for k, v in sorted((s.get("dropped") or {}).items(), key=lambda kv: -kv[1])}
        n_in, n_out, added = int(s["in"]), int(s["out"]), int(s.get("added") or 0)
        out.append(
            {
                "name": s["name"],
                "in": n_in,
                "out": n_out,
                "added": added,
                "dropped": dropped,
                "dropped_total": sum(dropped.values()),
                "share_of_in": {k: round(v / n_in, 6) if n_in else 0.0 for k, v in dropped.items()},
                "kept_of_read": round(n_out / read, 6) if read else None,
            }
        )
        if n_in + added != n_out + sum(dropped.values()):
            problems.append(
                {
                    "level": "error",
                    "message": f"stage {s['name']}: in + added != out + dropped "
                    f"({n_in} + {added} != {n_out} + {sum(dropped.values())})",
                }
            )
        if prev_out is not None and prev_out != n_in:
            problems.append(
                {
                    "level": "error",
                    "message": f"stage {s['name']}: in = {n_in} but the previous stage's out = {prev_out}",
                }
            )
        prev_out = n_out
    if stages and prev_out != documents:
        problems.append(
            {"level": "error", "message": f"last stage out = {prev_out} but the shards hold {documents} rows"}
        )
    return out


def _languages(langs: dict) -> list[dict]:
    docs = sum(v.get("documents", 0) for v in langs.values()) or 1
    chars = sum(v.get("chars", 0) for v in langs.values()) or 1
    rows = [
        {
            "lang": k,
            "documents": v.get("documents", 0),
            "chars": v.get("chars", 0),
            "share_documents": round(v.get("documents", 0) / docs, 6),
            "share_chars": round(v.get("chars", 0) / chars, 6),
        }
        for k, v in langs.items()
    ]
    return sorted(rows, key=lambda r: (-r["documents"], r["lang"]))


def _domains(domains: dict) -> list[dict]:
    """The natural domain mix of the shards (curation keeps every document once; mixtures are
    planned at training time by `dsllm mix`)."""
    nat = domains.get("natural") or {}
    docs = sum(v.get("documents", 0) for v in nat.values()) or 1
    chars = sum(v.get("chars", 0) for v in nat.values()) or 1
    rows = [
        {
            "domain": d,
            "documents": v.get("documents", 0),
            "chars": v.get("chars", 0),
            "share_documents": round(v.get("documents", 0) / docs, 6),
            "share_chars": round(v.get("chars", 0) / chars, 6),
        }
        for d, v in nat.items()
    ]
    return sorted(rows, key=lambda r: (-r["documents"], r["domain"]))


def _dedup(dumps: list[dict]) -> dict:
    out, cum_in, cum_removed = [], 0, 0
    for d in dumps:
        cum_in += int(d.get("documents_in") or 0)
        cum_removed += int(d.get("removed_within_dump") or 0) + int(d.get("removed_against_index") or 0)
        out.append(
            dict(
                d,
                cumulative_documents_in=cum_in,
                cumulative_removed=cum_removed,
                cumulative_rate=round(cum_removed / cum_in, 6) if cum_in else None,
            )
        )
    return {"dumps": out, "total_rate": round(cum_removed / cum_in, 6) if cum_in else None}


SAMPLE_COLUMNS = ["id", "url", "crawl", "lang", "lang_score", "quality_score", "domain", "n_chars", "text"]


def sample_documents(root: str, footers: list[scan.ShardFooter], n: int, seed: int) -> list[dict]:
    """`n` documents drawn uniformly without replacement (reproducible for a seed), reading only
    the row groups that hold them."""
    prefix = root.rstrip("/") + "/"
    out = []
    for s, rows in scan.pick_rows(footers, n, seed):
        ft = footers[s]
        cols = [c for c in SAMPLE_COLUMNS if c in ft.columns]
        out.extend(
            {"shard": ft.uri[len(prefix) :], "row": row, **_round_floats(rec)}
            for row, rec in scan.take_rows(ft, rows, cols)
        )
    return [out[i] for i in np.random.default_rng(seed + 1).permutation(len(out))]


def _round_floats(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
