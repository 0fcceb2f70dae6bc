"""The report for a mixture (MIX/ from `dsllm mix`): per domain natural vs target vs mixed shares
side by side, the inputs, and checks of the order against mixture.json.

Reads mixture.json, the `domain` column of order.parquet (counted per domain and compared with the
planned rows) and each input's manifest.json; order.parquet's bytes are hashed only with verify.
"""

from __future__ import annotations

import hashlib

import numpy as np

from dsllm import storage
from dsllm.errors import UserError


def summarize(root: str, mixture: dict, verify: bool, finish) -> dict:
    problems: list[dict] = []
    counts = _order_counts(root, mixture, verify, problems)
    domains = []
    for d, m in mixture.get("domains", {}).items():
        got = counts.get(d) if counts is not None else None
        if got is not None and got != m.get("planned_rows"):
            problems.append(
                {
                    "level": "error",
                    "message": f"domain {d}: order.parquet holds {got} sequences, "
                    f"mixture.json plans {m.get('planned_rows')}",
                }
            )
        domains.append(
            {
                "domain": d,
                **{
                    k: m.get(k)
                    for k in (
                        "natural_tokens",
                        "natural_rows",
                        "natural_share",
                        "target_share",
                        "planned_tokens",
                        "planned_rows",
                        "repeat",
                        "shortfall_tokens",
                    )
                },
                "mixed_share": m.get("planned_share"),
                "order_rows": got,
            }
        )
    sources = [_source(s, problems) for s in mixture.get("sources", [])]
    report = {
        "schema": "dsllm.stats/1",
        "kind": "mixture",
        "path": root,
        "manifest_created": mixture.get("created"),
        "versions": mixture.get("versions") or {},
        "totals": {
            "sequences": mixture.get("rows"),
            "tokens": mixture.get("tokens"),
            "requested_tokens": mixture.get("requested_tokens"),
            "domains": len(domains),
            "sources": len(sources),
        },
        "mixture": {
            "seq_len": mixture.get("seq_len"),
            "period": mixture.get("period"),
            "absent_targets": mixture.get("absent_targets") or [],
            "config": mixture.get("config") or {},
            "sources": sources,
        },
        "domains": sorted(domains, key=lambda r: (-(r["natural_tokens"] or 0), r["domain"])),
    }
    return finish(report, [], problems, verify)


def _order_counts(root: str, mixture: dict, verify: bool, problems: list) -> dict | None:
    """Sequences per domain in order.parquet (None when unreadable: an error is recorded)."""
    import pyarrow.parquet as pq

    entry = mixture.get("order") or {}
    uri = storage.join(root, entry.get("path") or "order.parquet")
    try:
        with storage.open_random(uri) as f:
            col = pq.ParquetFile(f).read(columns=["domain"]).column("domain").combine_chunks()
    except (UserError, OSError, ValueError) as exc:
        problems.append({"level": "error", "message": f"{uri}: unreadable ({exc})"})
        return None
    if len(col) != mixture.get("rows"):
        problems.append(
            {"level": "error", "message": f"{uri}: {len(col)} sequences, mixture.json says {mixture.get('rows')}"}
        )
    if verify and entry.get("sha256"):
        if hashlib.sha256(storage.read_bytes(uri)).hexdigest() != entry["sha256"]:
            problems.append({"level": "error", "message": f"{uri}: sha256 differs from mixture.json"})
    names = [str(d) for d in col.dictionary.to_pylist()]
    return {names[i]: int(n) for i, n in enumerate(np.bincount(col.indices.to_numpy(), minlength=len(names)))}


def _source(s: dict, problems: list) -> dict:
    uri = s.get("uri", "")
    out = {"uri": uri, "rows": s.get("rows"), "tokens": s.get("tokens"), "reachable": False}
    try:
        m = storage.read_json(storage.join(uri, "manifest.json"))
        out["reachable"] = True
        if m.get("rows") != s.get("rows"):
            problems.append(
                {
                    "level": "error",
                    "message": f"{uri}: {m.get('rows')} rows, the mixture was planned on {s.get('rows')}",
                }
            )
    except UserError as exc:
        problems.append({"level": "error", "message": f"input {uri}: {exc}"})
    return out
