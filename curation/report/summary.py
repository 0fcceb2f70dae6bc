"""One stable dict of numbers describing curated or packed output (`dsllm stats --json`).

Reads `manifest.json`, `stats.json` and the shards' Parquet footers (row counts, sizes, row-group
min/max statistics), plus a few small numeric columns for distributions (curated:
`quality_score`, `n_chars`; packed: `n_tokens`, `doc_offsets`). Document text is read only for
`sample=N`, shard bytes only for `verify=True`. Footers and columns are read in parallel threads.

Keys (schema "dsllm.stats/1"; every key is always present for its kind, `null` when unknown):

Both kinds
  schema, kind ("curated" | "packed"), path, manifest_created, versions
  totals      curated: documents, chars, text_bytes (stats.json), shard_bytes, tokens (null: not
              tokenized), shards, row_groups; packed: sequences, tokens, pad_tokens, documents,
              shard_bytes, shards, row_groups
  shards      one per manifest shard (+ unlisted files): path, rows, manifest_rows, bytes,
              manifest_bytes, row_groups, sha256 ("ok" | "mismatch" | null when not verified),
              flags [..]; curated adds quality_min/max, n_chars_min/max (row-group statistics);
              packed adds tokens, manifest_tokens
  shard_summary  count, rows_min/median/max, bytes_min/median/max, flagged, flags {flag: count}
  checks      verified (bool), ok (bool: no error-level problem), problems
              [{level: "error"|"warning", message}]
  sample      [] unless sample=N: curated {shard, row, id, url, crawl, lang, lang_score,
              quality_score, domain, n_chars, text}; packed {shard, row, n_tokens, documents,
              input_ids_head, text (decoded when the tokenizer is reachable, else null)}
Distributions share one shape: {count, missing, min, max, mean, p10, p50, p90,
  histogram: {edges, counts}} (len(edges) == len(counts) + 1; quantiles within one fine bin).

Curated only
  inputs      {total, done, failed, records, failed_list: [{uri, error}]}
  funnel      [{name, in, out, added, dropped: {reason: n}, dropped_total,
                share_of_in: {reason: share of this stage's in}, kept_of_read}]
  skipped_stages  stage names the run skipped (`dsllm curate --skip`), from stats.json "skipped"
  dropped_examples  [{stage, reason, value, detail, duplicate_of, id, url, lang, n_chars, text (at
                most 600 characters)}]: the first 2 kept dropped documents of every stage:reason,
                funnel order ([] when the run kept none; all of them: `dsllm stats --dropped`)
  languages   [{lang, documents, chars, share_documents, share_chars}] (most documents first)
  domains     [{domain, documents, chars, share_documents, share_chars}] (natural: every surviving
                document once; mixtures are planned at training time by `dsllm mix`)
  quality_score, doc_chars   distributions (quality: 20 equal bins; length: one bin per doubling)
  dedup       {dumps: [stats.json entry + cumulative_documents_in, cumulative_removed,
                cumulative_rate], total_rate}
  timing      null for runs without timings, else {phases: [{name (startup, inputs, dedup, shards,
                stats, publish), wall_s, cpu_s (driver + tasks in other processes, summed over
                workers), tasks, workers, share_cpu}], stages: [{name (per-input stages + write),
                cpu_s, wall_s (summed over the inputs processed in this run), tasks, share_cpu}],
                total {wall_s, cpu_s}}

Mixture only (MIX/ of `dsllm mix`; shards [] and no distributions)
  totals      sequences, tokens, requested_tokens, domains, sources
  mixture     {seq_len, period, absent_targets, config, sources [{uri, rows, tokens, reachable}]}
  domains     [{domain, natural_tokens, natural_rows, natural_share, target_share, planned_tokens,
                planned_rows, mixed_share, repeat, shortfall_tokens, order_rows (counted in order.parquet)}]

Packed only
  domains     [{domain, rows, tokens (counted in the shards), documents, share_tokens}]
  packed      {seq_len, sequences, tokens, pad_tokens, fill (non-padding share), documents,
               documents_per_sequence (mean, from the manifest), bos_policy, source_shards,
               tokenizer {sha256, vocab_size, eos_id, bos_id, path}}
  tokens_per_sequence, segments_per_sequence, segment_tokens   distributions

Shard flags: error level — missing, unreadable, rows_mismatch, bytes_mismatch, sha256_mismatch,
schema (required columns absent), tokens_mismatch (packed), unlisted (a Parquet file on storage
that the manifest does not name); warning level — empty, tiny (< 10% of the median rows, not the
last shard), huge (> 4x the median rows or bytes).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from dsllm import storage
from dsllm.curation.report import packed as _packed
from dsllm.curation.report import scan
from dsllm.errors import UserError

SCHEMA_ID = "dsllm.stats/1"
CURATED_COLUMNS = ("id", "text", "url", "crawl", "lang", "lang_score", "quality_score", "domain", "n_chars")
ERROR_FLAGS = (
    "missing",
    "unreadable",
    "rows_mismatch",
    "bytes_mismatch",
    "sha256_mismatch",
    "schema",
    "tokens_mismatch",
    "unlisted",
)


def locate(path: str) -> tuple[str, dict]:
    """(output root, manifest) for PATH = an output dir, its manifest.json, or a curated shards/ dir."""
    path = str(path) if storage.is_remote(path) else os.path.normpath(str(path))
    path = path.rstrip("/") or "/"
    candidates = [path[: -len("/manifest.json")] if path.endswith("/manifest.json") else path]
    parent, _, name = candidates[0].rpartition("/")
    if name == "shards" and parent:
        candidates.append(parent)
    for root in candidates:
        if storage.exists(storage.join(root, "mixture.json")):
            mixture = storage.read_json(storage.join(root, "mixture.json"))
            if not isinstance(mixture, dict) or mixture.get("kind") != "mixture":
                raise UserError(f"{storage.join(root, 'mixture.json')}: not a dsllm mixture (kind != 'mixture')")
            return root, mixture
        mpath = storage.join(root, "manifest.json")
        if storage.exists(mpath):
            manifest = storage.read_json(mpath)
            kind = manifest.get("kind") if isinstance(manifest, dict) else None
            if kind not in ("curated", "packed"):
                raise UserError(f"{mpath}: kind {kind!r} is neither 'curated' nor 'packed' output")
            if not isinstance(manifest.get("shards"), list):
                raise UserError(f"{mpath}: no 'shards' list; not a dsllm {kind} manifest")
            return root, manifest
    if not storage.is_remote(path) and not os.path.exists(path):
        raise UserError(f"{path}: no such file or directory")
    raise UserError(f"{path}: neither curated nor packed output nor a mixture (no manifest.json / mixture.json)")


def summarize(
    path: str,
    sample: int = 0,
    verify: bool = False,
    seed: int = 0,
    threads: int | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> dict:
    """The full report for PATH. `progress(label, total)` returns a per-item tick callback."""
    root, manifest = locate(path)
    threads = threads or scan.default_threads(storage.is_remote(root))
    tick = progress or (lambda label, total: None)
    if manifest["kind"] == "mixture":
        from dsllm.curation.report import mixture as _mixture

        return _mixture.summarize(root, manifest, verify, finish)
    if manifest["kind"] == "curated":
        return _curated(root, manifest, sample, verify, seed, threads, tick)
    return _packed.summarize(
        root, manifest, sample, verify, seed, threads, tick, scan_shards=scan_shards, finish=finish
    )


def _base(root: str, manifest: dict) -> dict:
    return {
        "schema": SCHEMA_ID,
        "kind": manifest["kind"],
        "path": root,
        "manifest_created": manifest.get("created"),
        "versions": manifest.get("versions") or {},
    }


# --- shards (both kinds) ---------------------------------------------------------------------


def scan_shards(
    root: str, manifest: dict, pattern_dir: str, stat_columns, required, threads, tick, verify: bool
) -> tuple[list[dict], list[scan.ShardFooter]]:
    """Read every manifest shard's footer (and bytes with verify); flag problems per shard."""
    entries = list(manifest["shards"])
    listed = {e["path"] for e in entries}
    on_storage = [
        f
        for f in storage.list_files(storage.join(root, pattern_dir) if pattern_dir else root)
        if f.uri.endswith(".parquet")
    ]
    prefix = root.rstrip("/") + "/"
    shard_prefix = pattern_dir.strip("/") + "/" if pattern_dir else ""
    unlisted = [
        f
        for f in on_storage
        if f.uri[len(prefix) :] not in listed and "/" not in f.uri[len(prefix) + len(shard_prefix) :]
    ]
    uris = [storage.join(root, e["path"]) for e in entries] + [f.uri for f in unlisted]
    footers = scan.parallel_map(lambda u: scan.read_footer(u, stat_columns), uris, threads, tick("footers", len(uris)))
    hashes = [None] * len(uris)
    if verify:
        hashes = scan.parallel_map(
            lambda ft: None if ft.error else scan.sha256_of(ft.uri), footers, threads, tick("sha256", len(uris))
        )
    rows = []
    for i, ft in enumerate(footers):
        e = entries[i] if i < len(entries) else {"path": ft.uri[len(prefix) :]}
        rows.append(_shard_row(e, ft, hashes[i], required, i >= len(entries)))
    _flag_sizes(rows, n_listed=len(entries))
    return rows, footers


def _shard_row(e: dict, ft: scan.ShardFooter, digest: str | None, required, unlisted: bool) -> dict:
    flags = []
    if unlisted:
        flags.append("unlisted")
    if ft.error:
        flags.append("missing" if ft.error == "missing" else "unreadable")
    else:
        if e.get("rows") is not None and ft.rows != e["rows"]:
            flags.append("rows_mismatch")
        if e.get("bytes") is not None and ft.size != e["bytes"]:
            flags.append("bytes_mismatch")
        if digest is not None and e.get("sha256") and digest != e["sha256"]:
            flags.append("sha256_mismatch")
        if any(c not in ft.columns for c in required):
            flags.append("schema")
    sha = None if digest is None or not e.get("sha256") else ("ok" if digest == e["sha256"] else "mismatch")
    return {
        "path": e["path"],
        "rows": ft.rows,
        "manifest_rows": e.get("rows"),
        "bytes": ft.size,
        "manifest_bytes": e.get("bytes"),
        "row_groups": ft.row_groups,
        "sha256": sha,
        "flags": flags,
        "error": ft.error,
    }


def _flag_sizes(rows: list[dict], n_listed: int) -> None:
    ok = [r for r in rows[:n_listed] if r["rows"] is not None and "schema" not in r["flags"]]
    if not ok:
        return
    med_rows = float(np.median([r["rows"] for r in ok]))
    med_bytes = float(np.median([r["bytes"] for r in ok]))
    for i, r in enumerate(rows[:n_listed]):
        if r["rows"] is None or "schema" in r["flags"]:
            continue
        if r["rows"] == 0:
            r["flags"].append("empty")
        elif r["rows"] < 0.1 * med_rows and i != n_listed - 1:
            r["flags"].append("tiny")
        if med_rows and (r["rows"] > 4 * med_rows or r["bytes"] > 4 * med_bytes):
            r["flags"].append("huge")


def shard_summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["rows"] is not None]
    flags: dict[str, int] = {}
    for r in rows:
        for f in r["flags"]:
            flags[f] = flags.get(f, 0) + 1

    def stats3(key):
        v = [r[key] for r in ok]
        return (min(v), int(np.median(v)), max(v)) if v else (None, None, None)

    (rmin, rmed, rmax), (bmin, bmed, bmax) = stats3("rows"), stats3("bytes")
    return {
        "count": len(rows),
        "rows_min": rmin,
        "rows_median": rmed,
        "rows_max": rmax,
        "bytes_min": bmin,
        "bytes_median": bmed,
        "bytes_max": bmax,
        "flagged": sum(1 for r in rows if r["flags"]),
        "flags": dict(sorted(flags.items())),
    }


def finish(report: dict, rows: list[dict], problems: list[dict], verified: bool) -> dict:
    """Add shard table, summary and checks (shard flags become problems) to a report."""
    for r in rows:
        for f in r["flags"]:
            if f in ERROR_FLAGS:
                detail = f" ({r['error']})" if r.get("error") and f == "unreadable" else ""
                problems.append({"level": "error", "message": f"{r['path']}: {f.replace('_', ' ')}{detail}"})
    report["shards"] = rows
    report["shard_summary"] = shard_summary(rows)
    report["checks"] = {
        "verified": verified,
        "ok": not any(p["level"] == "error" for p in problems),
        "problems": problems,
    }
    report.setdefault("sample", [])
    return report


# --- curated ---------------------------------------------------------------------------------


def _curated(root, manifest, sample, verify, seed, threads, tick) -> dict:
    from dsllm.curation.report import curated as cur

    stats_uri = storage.join(root, "stats.json")
    stats = storage.read_json(stats_uri) if storage.exists(stats_uri) else None
    problems: list[dict] = []
    if stats is None:
        problems.append(
            {"level": "warning", "message": f"{stats_uri}: absent; funnel, languages, domains and dedup unknown"}
        )
    shard_dir = os.path.dirname(manifest["shards"][0]["path"]) if manifest["shards"] else "shards"
    rows, footers = scan_shards(
        root, manifest, shard_dir, ("quality_score", "n_chars"), CURATED_COLUMNS, threads, tick, verify
    )
    for r, ft in zip(rows, footers):
        q, n = ft.stats.get("quality_score", (None, None)), ft.stats.get("n_chars", (None, None))
        r.update(quality_min=_num(q[0]), quality_max=_num(q[1]), n_chars_min=_num(n[0]), n_chars_max=_num(n[1]))
    good = [
        ft
        for r, ft in zip(rows, footers)
        if not ft.error and "schema" not in r["flags"] and "unlisted" not in r["flags"]
    ]
    quality, length = cur.distributions(good, threads, tick)
    report = _base(root, manifest)
    report.update(cur.sections(manifest, stats, rows, quality, length, problems))
    if sample:
        report["sample"] = cur.sample_documents(root, good, sample, seed)
    from dsllm.curation.report.dropped import dropped_examples

    try:
        report["dropped_examples"] = dropped_examples(root, stats)
    except (OSError, ValueError) as exc:  # unreadable samples: the rest of the report still stands
        report["dropped_examples"] = []
        problems.append({"level": "warning", "message": f"dropped documents unreadable: {exc}"})
    return finish(report, rows, problems, verify)


def _num(x):
    return None if x is None else (round(float(x), 6) if isinstance(x, float) else x)
