"""Domain mixtures at training time: `dsllm mix PACKED... --output MIX` plans how many sequences of
each domain a run sees and writes the global sequence order, without copying tokens.

    cfg = load_config(MixConfig, "mixture.toml", ["mixture.target.news=0.3"])
    build_mixture(["packed-web", "packed-code"], "mix", cfg.mixture)   # MIX/order.parquet, MIX/mixture.json

The plan (shares of tokens, as OLMo-core's source mixtures):
1. natural: tokens and rows of every domain over all inputs (the packed rows' `domain`, `n_tokens`);
2. target share: a domain named in `target` gets its weight; the named domains present in the
   data share what the unnamed ones leave (an unnamed domain keeps its natural share, or gets 0
   with `unlisted = "exclude"`): weights are renormalised over the domains that exist;
3. planned tokens = share × total (`tokens`, default: the natural total), capped at
   `max_repeat` × natural: a capped domain gets what it has, its shortfall is reported and the
   others are scaled up (water-filling) until nothing more is capped;
4. the sequences of a domain: passes over seeded permutations of its rows (`max_repeat` passes at
   most), truncated to its planned count: down-sampling keeps a seeded subset;
5. the order interleaves the domains as Megatron's blended index does (each position goes to the
   domain furthest behind its share): every prefix holds each domain within one sequence of its
   share. The greedy runs over one period of at most `period` positions; the order is that period
   tiled with numpy (the period's shares differ from the planned ones by under a sequence per period).
Everything is a pure function of the inputs and the config: a second run writes the same order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math

import numpy as np

from dsllm import storage
from dsllm.errors import UserError

_log = logging.getLogger(__name__)  # the default `log` of callers without a console


@dataclasses.dataclass(frozen=True)
class MixtureConfig:
    """A mixture: target shares of tokens per domain and how far a domain may be repeated."""

    target: dict = dataclasses.field(default_factory=dict)
    max_repeat: float = 4.0  # at most this many epochs of any domain (each row <= ceil(max_repeat) times)
    unlisted: str = "natural"  # natural: unnamed domains keep their natural share | exclude: they get 0
    tokens: int = 0  # planned total tokens (0: the natural total of the inputs)
    seed: int = 0
    period: int = 65536  # positions of the interleaving period (see the module doc)

    def __post_init__(self):
        if self.unlisted not in ("natural", "exclude"):
            raise ValueError(f"unlisted must be 'natural' or 'exclude', got {self.unlisted!r}")
        if not self.max_repeat >= 1:
            raise ValueError(f"max_repeat must be >= 1, got {self.max_repeat}")
        if self.tokens < 0 or self.period < 1:
            raise ValueError("tokens must be >= 0 and period >= 1")
        for dom, w in self.target.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not w >= 0 or math.isinf(w):
                raise ValueError(f"target.{dom} must be a number >= 0, got {w!r}")


@dataclasses.dataclass(frozen=True)
class MixConfig:
    """The file `dsllm mix --mixture` reads (configs/mixture.toml): one `[mixture]` section."""

    mixture: MixtureConfig = dataclasses.field(default_factory=MixtureConfig)


# ---------------------------------------------------------------- the plan (pure, per domain)
def target_shares(natural: dict[str, int], cfg: MixtureConfig) -> dict[str, float]:
    """Resolved target share of every domain present (they sum to 1)."""
    total = sum(natural.values())
    share = {d: t / total for d, t in natural.items()}
    listed = {d: float(cfg.target[d]) for d in natural if d in cfg.target}
    unlisted = {d: (share[d] if cfg.unlisted == "natural" else 0.0) for d in natural if d not in listed}
    free = 1.0 - sum(unlisted.values())
    norm = sum(listed.values())
    if norm > 0:
        out = {**unlisted, **{d: w / norm * free for d, w in listed.items()}}
    else:  # every named domain present has weight 0: the unnamed ones share everything
        out = {**unlisted, **{d: 0.0 for d in listed}}
    s = sum(out.values())
    if s <= 0:
        raise UserError(
            "mixture: every domain in the data gets weight 0 (targets: "
            f"{', '.join(f'{d}={w}' for d, w in sorted(cfg.target.items())) or 'none'})"
        )
    return {d: v / s for d, v in sorted(out.items())}


def plan_tokens(natural: dict[str, int], share: dict[str, float], total: int, max_repeat: float) -> dict[str, float]:
    """Planned tokens per domain: share × total, capped at max_repeat × natural (water-filling)."""
    planned: dict[str, float] = {}
    active = [d for d in share if share[d] > 0]
    remaining = float(total)
    while active:
        weight = sum(share[d] for d in active)
        want = {d: share[d] / weight * remaining for d in active}
        capped = [d for d in active if want[d] > max_repeat * natural[d]]
        if not capped:
            planned.update(want)
            break
        for d in capped:
            planned[d] = max_repeat * natural[d]
            remaining -= planned[d]
        active = [d for d in active if d not in capped]
    return {d: planned.get(d, 0.0) for d in share}


def interleave(counts: np.ndarray, length: int, period: int) -> np.ndarray:
    """Domain index at each of `length` positions: counts[d] / sum(counts) of them to domain d,
    every prefix within one position of each share (Megatron's greedy over one period, tiled)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    L = min(length, period)
    if L == length:
        quota = counts.copy()
    else:  # the period's counts: largest remainders of the shares
        exact = counts * L / total
        quota = np.floor(exact).astype(np.int64)
        quota[np.argsort(-(exact - quota), kind="stable")[: L - int(quota.sum())]] += 1
    w = (quota / L).tolist()
    have = [0] * len(w)
    seq = np.empty(L, dtype=np.int32)
    for i in range(L):  # one period, at most `period` steps of Python; the rest is np.tile
        best, pick = -2.0, 0
        for d, wd in enumerate(w):
            deficit = wd * (i + 1) - have[d]
            if deficit > best:
                best, pick = deficit, d
        have[pick] += 1
        seq[i] = pick
    return np.tile(seq, -(-length // L))[:length]


def _domain_seed(seed: int, domain: str, epoch: int) -> list[int]:
    h = int.from_bytes(hashlib.blake2b(domain.encode("utf-8"), digest_size=8).digest(), "big")
    return [int(seed) & (2**63 - 1), h, epoch]


def pick_rows(n_rows: int, count: int, seed: int, domain: str) -> np.ndarray:
    """`count` indices into a domain's `n_rows` rows: passes over seeded permutations, truncated."""
    passes = -(-count // n_rows) if count else 0
    picks = [np.random.default_rng(_domain_seed(seed, domain, j)).permutation(n_rows) for j in range(passes)]
    return np.concatenate(picks)[:count] if picks else np.empty(0, dtype=np.int64)


# ---------------------------------------------------------------- reading the inputs
@dataclasses.dataclass
class Source:
    """One packed input: its manifest and, per row, the domain code and non-padding tokens."""

    uri: str
    manifest: dict
    codes: np.ndarray  # (rows,) index into the global domain list
    n_tokens: np.ndarray  # (rows,)


def _scan_packed(uri: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """(manifest, domain per row (object array), n_tokens per row) of PACKED, reading only those
    two columns (dictionary-encoded in Arrow, so a row costs no Python object of its own)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dsllm.trainer.data import PackedDataset

    ds = PackedDataset(uri)
    domains, n_tokens = [], []
    for shard in ds.shards:
        with storage.open_random(shard.uri, size=shard.bytes) as f:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            cols = [c for c in ("domain", "n_tokens") if c in names]
            table = pf.read(columns=cols) if cols else pa.table({})
        rows = shard.rows
        if "domain" in cols:
            enc = table.column("domain").combine_chunks().dictionary_encode()
            names = np.array(enc.dictionary.to_pylist() + ["unlabelled"], dtype=object)
            idx = enc.indices.fill_null(len(names) - 1).to_numpy(zero_copy_only=False)
            domains.append(names[idx])
        else:
            domains.append(np.full(rows, "unlabelled", dtype=object))
        n_tokens.append(
            table.column("n_tokens").to_numpy() if "n_tokens" in cols else np.full(rows, ds.seq_len, dtype=np.int32)
        )
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.empty(0, dtype=dt)
    return ds.manifest, cat(domains, object), cat(n_tokens, np.int32).astype(np.int64)


def read_sources(uris: list[str]) -> tuple[list[Source], list[str]]:
    """The packed inputs (same sequence length and tokenizer) and the sorted domain names."""
    scanned = [(str(u).rstrip("/"),) + _scan_packed(str(u).rstrip("/")) for u in uris]
    first = scanned[0][1]
    for uri, m, _, _ in scanned[1:]:
        if m["seq_len"] != first["seq_len"]:
            raise UserError(f"{uri}: sequence length {m['seq_len']} differs from {scanned[0][0]}'s {first['seq_len']}")
        sha = lambda man: (man.get("tokenizer") or {}).get("sha256")
        if sha(m) != sha(first):
            raise UserError(f"{uri}: packed with another tokenizer than {scanned[0][0]} (tokenizer sha256 differs)")
    import pyarrow as pa

    names = sorted({str(d) for _, _, dom, _ in scanned for d in pa.array(dom, pa.string()).unique().to_pylist()})
    lookup = {d: i for i, d in enumerate(names)}
    sources = []
    for uri, m, dom, ntok in scanned:
        enc = pa.array(dom, pa.string()).dictionary_encode()
        code_of = np.array([lookup[str(u)] for u in enc.dictionary.to_pylist()], dtype=np.int32)
        codes = code_of[enc.indices.to_numpy()] if len(dom) else np.empty(0, np.int32)
        sources.append(Source(uri, m, codes, ntok))
    return sources, names


# ---------------------------------------------------------------- the whole job
def build_mixture(inputs: list[str], output: str, cfg: MixtureConfig, log=_log.info) -> dict:
    """Plan the mixture of `inputs` (PACKED dirs), write MIX/order.parquet and MIX/mixture.json."""
    output = str(output).rstrip("/")
    if storage.is_http(output):
        raise UserError(f"{output}: cannot write to an HTTP URL; use a local path or s3://")
    sources, names = read_sources(inputs)
    codes = np.concatenate([s.codes for s in sources])
    ntok = np.concatenate([s.n_tokens for s in sources])
    src = np.concatenate([np.full(len(s.codes), i, dtype=np.int32) for i, s in enumerate(sources)])
    row = np.concatenate([np.arange(len(s.codes), dtype=np.int64) for s in sources])
    nat_rows = np.bincount(codes, minlength=len(names))
    nat_tokens = np.bincount(codes, weights=ntok, minlength=len(names)).astype(np.int64)
    natural = {d: int(nat_tokens[i]) for i, d in enumerate(names)}
    if not sum(natural.values()):
        raise UserError(f"{', '.join(inputs)}: no tokens to mix")
    share = target_shares(natural, cfg)
    total = cfg.tokens or sum(natural.values())
    want = plan_tokens(natural, share, total, cfg.max_repeat)
    per_row = nat_tokens / np.maximum(nat_rows, 1)
    cap = np.floor(cfg.max_repeat * nat_rows + 1e-9).astype(np.int64)
    counts = np.minimum(np.rint([want[d] / per_row[i] for i, d in enumerate(names)]).astype(np.int64), cap)
    if not counts.sum():
        raise UserError(f"mixture: {total} tokens is less than one sequence")
    seq = _interleave_within_caps(counts, cap, cfg.period)
    order_rows = np.empty(len(seq), dtype=np.int64)  # index into the concatenated rows
    by_domain = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(nat_rows)])
    for i, d in enumerate(names):
        pos = np.nonzero(seq == i)[0]
        members = by_domain[starts[i] : starts[i + 1]]  # the domain's rows in input order
        order_rows[pos] = members[pick_rows(len(members), len(pos), cfg.seed, d)]
    order = {"source": src[order_rows], "domain": codes[order_rows], "row": row[order_rows]}
    got_rows = np.bincount(order["domain"], minlength=len(names))
    got_tokens = np.bincount(order["domain"], weights=ntok[order_rows], minlength=len(names)).astype(np.int64)
    entry = _write_order(output, order, names)
    planned_total = int(got_tokens.sum())
    domains = {
        d: {
            "natural_tokens": natural[d],
            "natural_rows": int(nat_rows[i]),
            "natural_share": natural[d] / sum(natural.values()),
            "target_share": share[d],
            "planned_tokens": int(got_tokens[i]),
            "planned_rows": int(got_rows[i]),
            "planned_share": int(got_tokens[i]) / planned_total,
            "repeat": int(got_rows[i]) / max(int(nat_rows[i]), 1),
            # only a domain held at its max_repeat cap falls short (not one off by rounding)
            "shortfall_tokens": max(0, int(round(share[d] * total)) - int(got_tokens[i]))
            if got_rows[i] >= cap[i]
            else 0,
        }
        for i, d in enumerate(names)
    }
    first = sources[0].manifest
    mixture = {
        "kind": "mixture",
        "seq_len": int(first["seq_len"]),
        "rows": int(len(seq)),
        "tokens": planned_total,
        "requested_tokens": int(total),
        "tokenizer": first.get("tokenizer"),
        "order": entry,
        "sources": [{"uri": _absolute(s.uri), "rows": len(s.codes), "tokens": int(s.n_tokens.sum())} for s in sources],
        "domains": domains,
        "absent_targets": sorted(set(cfg.target) - set(names)),
        "period": int(min(len(seq), cfg.period)),
        "config": dataclasses.asdict(cfg),
    }
    storage.write_json(storage.join(output, "mixture.json"), mixture)
    log(f"{output}: {len(seq)} sequences, {planned_total:,} tokens over {len(names)} domain(s)")
    return mixture


def _interleave_within_caps(counts: np.ndarray, cap: np.ndarray, period: int) -> np.ndarray:
    """The interleaved domain sequence; a period's rounding never pushes a domain past its cap."""
    counts = counts.copy()
    while True:
        seq = interleave(counts, int(counts.sum()), period)
        over = np.bincount(seq, minlength=len(counts)) > cap
        if not over.any():
            return seq
        counts[over] -= 1


def _absolute(uri: str) -> str:
    import os

    return uri if storage.is_remote(uri) else os.path.abspath(uri)


def _write_order(output: str, order: dict, names: list[str]) -> dict:
    """MIX/order.parquet (source int32, domain string, row int64) → its manifest entry."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    domain = pa.DictionaryArray.from_arrays(pa.array(order["domain"], pa.int32()), pa.array(names, pa.string()))
    table = pa.table(
        {"source": pa.array(order["source"], pa.int32()), "domain": domain, "row": pa.array(order["row"], pa.int64())}
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=1 << 20)
    data = buf.getvalue()
    storage.write_bytes(storage.join(output, "order.parquet"), data)
    return {
        "path": "order.parquet",
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
