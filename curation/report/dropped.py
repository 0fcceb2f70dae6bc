"""`dsllm stats OUT --dropped SELECTOR`: the dropped documents a curate run kept (OUT/dropped/).

SELECTOR is `stage:reason` (`gopher_quality:symbol_ratio`, `decontaminate:benchmark:gsm8k`), a bare
reason (`symbol_ratio`, every stage that has it) or a stage name (all its reasons). Rows come in
the order curate kept them (inputs in command-line order, drops in record order).
"""

from __future__ import annotations

from dsllm import storage
from dsllm.errors import UserError


def available(stats: dict) -> dict[str, dict]:
    """{"stage:reason": {"dropped": n in stats.json, "kept": rows in OUT/dropped/}} in funnel order."""
    kept = (stats.get("dropped_samples") or {}).get("rows") or {}
    out: dict[str, dict] = {}
    for s in stats.get("stages") or []:
        for reason, n in sorted((s.get("dropped") or {}).items()):
            key = f"{s['name']}:{reason}"
            out[key] = {"dropped": int(n), "kept": int(kept.get(key, 0))}
    return out


def match(selector: str, keys: list[str]) -> list[str]:
    """The `stage:reason` keys SELECTOR names: itself, a reason of any stage, or a stage's reasons."""
    if selector in keys:
        return [selector]
    by_reason = [k for k in keys if k.split(":", 1)[1] == selector]
    if by_reason:
        return by_reason
    return [k for k in keys if k.split(":", 1)[0] == selector]


EXAMPLE_FIELDS = ("stage", "reason", "value", "detail", "duplicate_of", "id", "url", "lang", "n_chars", "text")


def dropped_examples(root: str, stats: dict | None, per_reason: int = 2, chars: int = 600) -> list[dict]:
    """The first `per_reason` kept dropped documents of every stage:reason (funnel order), text cut to
    `chars`: the report's "Dropped documents" section. Reads OUT/dropped/ batch by batch and stops
    once every reason has its examples, so a run kept with `--keep-dropped all` is not read whole."""
    import pyarrow.parquet as pq

    info = (stats or {}).get("dropped_samples")
    if not info:
        return []
    wanted = {k: min(per_reason, v["kept"]) for k, v in available(stats or {}).items() if v["kept"]}
    found: dict[str, list[dict]] = {k: [] for k in wanted}
    for rel in info.get("files") or []:
        if all(len(found[k]) >= n for k, n in wanted.items()):
            break
        with storage.open_random(storage.join(root, rel)) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=1024, columns=list(EXAMPLE_FIELDS)):
                for row in batch.to_pylist():
                    key = f"{row['stage']}:{row['reason']}"
                    if len(found.get(key, ())) < wanted.get(key, 0):
                        row["text"] = (row["text"] or "")[:chars]
                        found[key].append(row)
                if all(len(found[k]) >= n for k, n in wanted.items()):
                    break
    return [row for k in wanted for row in found[k]]


def dropped_report(path: str, selector: str, limit: int = 20) -> dict:
    """The kept dropped rows SELECTOR names (at most `limit`; 0 = all), with what stats.json counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dsllm.curation.dropped import read_dropped
    from dsllm.curation.report.summary import locate

    root, manifest = locate(path)
    if manifest.get("kind") != "curated":
        raise UserError(
            f"--dropped: {root} is {manifest.get('kind')} output; dropped documents belong to curated output"
        )
    stats = storage.read_json(storage.join(root, "stats.json"))
    reasons = available(stats)
    info = stats.get("dropped_samples")
    keys = match(selector, list(reasons))
    if not keys:
        listing = ", ".join(f"{k} ({v['kept']} kept of {v['dropped']})" for k, v in reasons.items()) or "none"
        raise UserError(
            f"--dropped {selector}: no document of {root} was dropped by that stage or reason; dropped here: {listing}"
        )
    if info is None:
        raise UserError(
            f"--dropped: {root} was curated without keeping dropped documents (an older dsllm); rerun "
            "curate (default: --keep-dropped 5) to keep them"
        )
    if not any(reasons[k]["kept"] for k in keys):
        raise UserError(
            f"--dropped {selector}: {sum(reasons[k]['dropped'] for k in keys)} dropped, none kept "
            f"(curated with --keep-dropped {info.get('keep')}); rerun curate with --keep-dropped N or all"
        )
    table = read_dropped(root, info.get("files"))
    stage_reason = pc.binary_join_element_wise(table.column("stage"), table.column("reason"), ":")
    table = table.filter(pc.is_in(stage_reason, value_set=pa.array(keys, pa.string())))
    total = table.num_rows
    if limit:
        table = table.slice(0, limit)
    return {
        "path": root,
        "selector": selector,
        "reasons": {k: reasons[k] for k in keys},
        "mode": info.get("mode"),
        "keep": info.get("keep"),
        "rows_kept": total,
        "rows": table.to_pylist(),
    }
