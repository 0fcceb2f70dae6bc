"""The report for packed output: sequences, tokens, fill, documents per sequence, tokenizer identity.

Reads the manifest, every shard's footer and the small columns `n_tokens` (int32 per row),
`doc_offsets` (a few int32 per row) and `domain`; `input_ids` only for `sample=N`. Rows and tokens
per domain are counted from the shards and checked against the manifest's `domains`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from dsllm import storage
from dsllm.curation.report import scan
from dsllm.errors import UserError

PACKED_COLUMNS = ("input_ids", "doc_offsets", "n_tokens")


def summarize(root, manifest, sample, verify, seed, threads, tick, scan_shards, finish) -> dict:
    seq_len = int(manifest.get("seq_len") or 0)
    problems: list[dict] = []
    rows, footers = scan_shards(root, manifest, "", ("n_tokens",), PACKED_COLUMNS, threads, tick, verify)
    good = []
    for i, (r, ft) in enumerate(zip(rows, footers)):
        entry = manifest["shards"][i] if i < len(manifest["shards"]) else {}
        r.update(tokens=None, manifest_tokens=entry.get("tokens"))
        if ft.error or "schema" in r["flags"] or "unlisted" in r["flags"]:
            continue
        width = getattr(ft.schema.field("input_ids").type, "list_size", None)
        if width != seq_len:
            r["flags"].append("schema")
            problems.append({"level": "error", "message": f"{r['path']}: input_ids width {width} != seq_len {seq_len}"})
            continue
        good.append((r, ft))
    per_seq, segs, seg_len, by_domain = _distributions(good, seq_len, threads, tick)
    listed = [r for r in rows if "unlisted" not in r["flags"]]
    sequences = sum(r["rows"] or 0 for r in listed)
    tokens = sum(r["tokens"] or 0 for r in listed)
    m_tokens = manifest.get("tokens")
    pad = manifest.get("pad_tokens")
    _check_totals(manifest, sequences, tokens, seq_len, rows, problems)
    tok = manifest.get("tokenizer") or {}
    report = {
        "schema": "dsllm.stats/1",
        "kind": "packed",
        "path": root,
        "manifest_created": manifest.get("created"),
        "versions": manifest.get("versions") or {},
        "totals": {
            "sequences": sequences,
            "tokens": tokens,
            "pad_tokens": sequences * seq_len - tokens,
            "documents": manifest.get("documents"),
            "shard_bytes": sum(r["bytes"] or 0 for r in rows),
            "shards": len(rows),
            "row_groups": sum(r["row_groups"] for r in rows),
        },
        "packed": {
            "seq_len": seq_len,
            "sequences": manifest.get("rows"),
            "tokens": m_tokens,
            "pad_tokens": pad,
            "fill": round(m_tokens / (m_tokens + pad), 6)
            if m_tokens is not None and pad is not None and m_tokens + pad
            else None,
            "documents": manifest.get("documents"),
            "documents_per_sequence": round(manifest["documents"] / manifest["rows"], 4)
            if manifest.get("documents") is not None and manifest.get("rows")
            else None,
            "bos_policy": manifest.get("bos_policy"),
            "source_shards": len(manifest.get("source_shards") or []),
            "tokenizer": {k: tok.get(k) for k in ("sha256", "vocab_size", "eos_id", "bos_id", "path")},
        },
        "domains": _domains(by_domain, manifest, problems) if good else [],
        "tokens_per_sequence": per_seq.to_json(),
        "segments_per_sequence": segs.to_json(),
        "segment_tokens": seg_len.to_json(),
    }
    if sample:
        report["sample"] = _sample(root, [ft for _, ft in good], sample, seed, tok, problems)
    return finish(report, rows, problems, verify)


def _distributions(good, seq_len: int, threads: int, tick):
    """Per-shard: tokens per row, segments per row, and segment lengths (from doc_offsets)."""

    def reduce(item):
        r, ft = item
        t = scan.read_columns(ft, ["n_tokens", "doc_offsets"] + (["domain"] if "domain" in ft.columns else []))
        n_tok = np.nan_to_num(scan.numeric(t.column("n_tokens"))).astype(np.int64)
        dom = (
            np.array(t.column("domain").to_pylist(), dtype=object)
            if "domain" in t.column_names
            else np.full(len(n_tok), "unlabelled", dtype=object)
        )
        names, inv = np.unique(dom.astype(str), return_inverse=True)
        by_domain = {str(d): (int((inv == i).sum()), int(n_tok[inv == i].sum())) for i, d in enumerate(names)}
        offs = t.column("doc_offsets").combine_chunks()
        lengths = np.nan_to_num(scan.numeric(offs.value_lengths())).astype(np.int64)
        flat = scan.numeric(offs.flatten()).astype(np.int64)
        # a segment ends where the next one starts; the last one in a row ends at n_tokens
        ends = np.append(flat[1:], 0)
        last = np.cumsum(lengths)[lengths > 0] - 1
        ends[last] = n_tok[lengths > 0]
        a, b, c = scan.LinearHistogram(0, max(seq_len, 1)), scan.IntHistogram(), scan.Log2Histogram()
        a.add(n_tok)
        b.add(lengths)
        c.add(ends - flat)
        return int(n_tok.sum()), a, b, c, by_domain

    per_seq, segs, seg_len = scan.LinearHistogram(0, max(seq_len, 1)), scan.IntHistogram(), scan.Log2Histogram()
    by_domain: dict[str, list[int]] = {}
    results = scan.parallel_map(reduce, good, threads, tick("columns", len(good)))
    for (r, _), (tokens, a, b, c, doms) in zip(good, results):
        for d, (n_rows, n_tokens) in doms.items():
            acc = by_domain.setdefault(d, [0, 0])
            acc[0] += n_rows
            acc[1] += n_tokens
        r["tokens"] = tokens
        if r["manifest_tokens"] is not None and tokens != r["manifest_tokens"]:
            r["flags"].append("tokens_mismatch")
        per_seq.merge(a)
        segs.merge(b)
        seg_len.merge(c)
    return per_seq, segs, seg_len, by_domain


def _domains(by_domain: dict, manifest: dict, problems: list) -> list[dict]:
    """Per domain: sequences and tokens counted in the shards, documents from the manifest, the
    natural token share; a mismatch with the manifest's `domains` is an error."""
    listed = manifest.get("domains") or {}
    total = sum(t for _, t in by_domain.values()) or 1
    for d in sorted(set(listed) | set(by_domain)):
        want = listed.get(d)
        if want is not None and (want.get("rows"), want.get("tokens")) != tuple(by_domain.get(d, (0, 0))):
            problems.append(
                {
                    "level": "error",
                    "message": f"domain {d}: manifest says {want.get('rows')} rows / "
                    f"{want.get('tokens')} tokens, the shards hold {by_domain.get(d, (0, 0))[0]} / "
                    f"{by_domain.get(d, (0, 0))[1]}",
                }
            )
    rows = [
        {
            "domain": d,
            "rows": r,
            "tokens": t,
            "documents": (listed.get(d) or {}).get("documents"),
            "share_tokens": round(t / total, 6),
        }
        for d, (r, t) in by_domain.items()
    ]
    return sorted(rows, key=lambda r: (-r["tokens"], r["domain"]))


def _check_totals(manifest, sequences, tokens, seq_len, rows, problems) -> None:
    if any(r["error"] or "schema" in r["flags"] for r in rows):
        return  # the shard flags already say what is wrong
    for key, actual in (("rows", sequences), ("tokens", tokens)):
        if manifest.get(key) is not None and manifest[key] != actual:
            problems.append(
                {"level": "error", "message": f"manifest {key} = {manifest[key]} but the shards hold {actual}"}
            )
    pad = manifest.get("pad_tokens")
    if (
        pad is not None
        and manifest.get("tokens") is not None
        and manifest.get("rows") is not None
        and manifest["tokens"] + pad != manifest["rows"] * seq_len
    ):
        problems.append(
            {
                "level": "error",
                "message": f"manifest tokens + pad_tokens != rows x seq_len "
                f"({manifest['tokens']} + {pad} != {manifest['rows']} x {seq_len})",
            }
        )


def _load_tokenizer(tok: dict, problems: list):
    """The tokenizer named in the manifest, if its file is reachable and matches the sha256."""
    path = tok.get("path")
    if not path:
        return None
    uri = path if str(path).endswith(".json") else storage.join(path, "tokenizer.json")
    try:
        data = storage.read_bytes(uri)
    except UserError as exc:
        problems.append({"level": "warning", "message": f"sample shown as token ids: tokenizer {exc}"})
        return None
    if tok.get("sha256") and hashlib.sha256(data).hexdigest() != tok["sha256"]:
        problems.append({"level": "warning", "message": f"{uri}: sha256 differs from the manifest's tokenizer"})
    from tokenizers import Tokenizer

    return Tokenizer.from_str(data.decode("utf-8"))


def _sample(root, footers, n, seed, tok, problems) -> list[dict]:
    picked = scan.pick_rows(footers, n, seed)
    tokenizer = _load_tokenizer(tok, problems) if picked else None
    prefix = root.rstrip("/") + "/"
    out = []
    for s, rows in picked:
        ft = footers[s]
        for row, rec in scan.take_rows(ft, rows, list(PACKED_COLUMNS)):
            ids = rec["input_ids"][: rec["n_tokens"]]
            out.append(
                {
                    "shard": ft.uri[len(prefix) :],
                    "row": row,
                    "n_tokens": rec["n_tokens"],
                    "documents": len(rec["doc_offsets"]),
                    "doc_offsets": rec["doc_offsets"],
                    "input_ids_head": ids[:32],
                    "text": tokenizer.decode(ids, skip_special_tokens=False) if tokenizer else None,
                }
            )
    return [out[i] for i in np.random.default_rng(seed + 1).permutation(len(out))]
