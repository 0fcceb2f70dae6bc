"""`dsllm mix` over real-text packed data with three domains of unequal size (two packed inputs):
token shares within 2% of target, every prefix within one sequence of each share, max_repeat
respected with the shortfall reported, deterministic per seed; training reads the mixture in its
order, logs tokens per domain and resumes exactly.

The oracle is the packed Parquet read back with pyarrow (each row's `domain` and `n_tokens`), not
the mixture code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsllm.curation.executor import LocalExecutor
from dsllm.tokenizer.pack import PackConfig, pack
from dsllm.trainer.mixture import MixtureConfig, build_mixture
from tests.conftest import run_cli
from tests.domain_data import train_small_tokenizer, write_domain_shards

SEQ = 64
TARGET = {"letters": 0.3, "novel": 0.3, "speeches": 0.4}  # natural: ~0.14, ~0.41, ~0.45


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> list[str]:
    """Two packed inputs (shards 0-1 and shard 2) of the three-domain curated data."""
    root = tmp_path_factory.mktemp("mixdata")
    curated = write_domain_shards(root / "curated")
    tok = train_small_tokenizer(root / "tok")
    cfg = PackConfig(seq_len=SEQ, row_group_rows=4)
    outs = []
    for name, shards in (("a", ["part-00000", "part-00001"]), ("b", ["part-00002"])):
        pack(
            [str(curated / "shards" / f"{s}.parquet") for s in shards],
            str(tok),
            str(root / name),
            cfg,
            LocalExecutor(),
            log=lambda m: None,
        )
        outs.append(str(root / name))
    return outs


def packed_rows(uri: str) -> pa.Table:
    """(domain, n_tokens) of every row of PACKED in order, straight from its Parquet parts."""
    m = json.loads((Path(uri) / "manifest.json").read_text())
    return pa.concat_tables([pq.read_table(Path(uri) / s["path"], columns=["domain", "n_tokens"]) for s in m["shards"]])


def order_of(mix: Path) -> dict:
    t = pq.read_table(mix / "order.parquet")
    return {
        "source": t.column("source").to_numpy(),
        "row": t.column("row").to_numpy(),
        "domain": np.array(t.column("domain").to_pylist()),
    }


def truth(packed: list[str], order: dict) -> tuple[np.ndarray, np.ndarray]:
    """Each order position's domain and tokens, looked up in the packed data itself."""
    tables = [packed_rows(p) for p in packed]
    dom = [np.array(t.column("domain").to_pylist()) for t in tables]
    ntok = [t.column("n_tokens").to_numpy() for t in tables]
    d = np.array([dom[s][r] for s, r in zip(order["source"], order["row"])])
    n = np.array([ntok[s][r] for s, r in zip(order["source"], order["row"])])
    return d, n


def natural_tokens(packed: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in packed:
        t = packed_rows(p)
        for d, n in zip(t.column("domain").to_pylist(), t.column("n_tokens").to_pylist()):
            out[d] = out.get(d, 0) + n
    return out


def test_shares_within_2_percent_and_every_prefix_within_one_sequence(packed, tmp_path):
    nat = natural_tokens(packed)
    total = sum(nat.values())
    m = build_mixture(packed, str(tmp_path / "mix"), MixtureConfig(target=TARGET, max_repeat=4), log=lambda s: None)
    order = order_of(tmp_path / "mix")
    dom, ntok = truth(packed, order)
    assert np.array_equal(dom, order["domain"])  # every position names its row's real domain
    assert abs(int(ntok.sum()) - total) <= 3 * SEQ  # the natural total by default
    for d, share in TARGET.items():
        got = ntok[dom == d].sum() / ntok.sum()
        assert abs(got - share) <= 0.02, (d, got)
        assert m["domains"][d]["natural_tokens"] == nat[d]
        assert m["domains"][d]["planned_tokens"] == int(ntok[dom == d].sum())
    assert min(nat, key=nat.get) == "letters" and m["domains"]["letters"]["repeat"] > 1  # up-sampled
    assert m["domains"]["speeches"]["repeat"] < 1 and m["domains"]["novel"]["repeat"] < 1  # down-sampled
    # the prefix property: after m sequences, each domain's count is within 1 of m × its share
    n = len(dom)
    for d in TARGET:
        counts = np.cumsum(dom == d)
        expect = np.arange(1, n + 1) * (counts[-1] / n)
        assert np.abs(counts - expect).max() <= 1.0, d
    # down-sampling picks distinct rows; up-sampling repeats rows at most ceil(repeat) times
    rows = list(zip(order["source"].tolist(), order["row"].tolist(), dom.tolist()))
    uses: dict = {}
    for r in rows:
        uses[r] = uses.get(r, 0) + 1
    assert max(v for (s, r, d), v in uses.items() if d in ("speeches", "novel")) == 1
    assert max(v for (s, r, d), v in uses.items() if d == "letters") == 3  # repeat ~2.2: 2 or 3 times


def test_max_repeat_caps_a_domain_reports_its_shortfall_and_renormalises_the_rest(packed, tmp_path):
    nat = natural_tokens(packed)
    cfg = MixtureConfig(target={"letters": 0.8, "novel": 0.1, "speeches": 0.1}, max_repeat=2, tokens=150_000)
    m = build_mixture(packed, str(tmp_path / "mix"), cfg, log=lambda s: None)
    order = order_of(tmp_path / "mix")
    dom, ntok = truth(packed, order)
    uses: dict = {}
    for s, r in zip(order["source"][dom == "letters"].tolist(), order["row"][dom == "letters"].tolist()):
        uses[(s, r)] = uses.get((s, r), 0) + 1
    letters_rows = sum(
        int((packed_rows(p).column("domain").to_numpy(zero_copy_only=False) == "letters").sum()) for p in packed
    )
    assert max(uses.values()) == 2 and len(uses) == letters_rows  # every row, twice, no more
    got = int(ntok[dom == "letters"].sum())
    assert got == 2 * nat["letters"]
    assert m["domains"]["letters"]["shortfall_tokens"] == round(0.8 * 150_000) - got > 0
    assert abs(int(ntok.sum()) - 150_000) <= 2 * SEQ  # the others filled the rest
    novel, speeches = ntok[dom == "novel"].sum(), ntok[dom == "speeches"].sum()
    assert abs(novel / (novel + speeches) - 0.5) <= 0.02  # in their target ratio
    assert m["domains"]["novel"]["shortfall_tokens"] == 0


def test_same_order_for_a_seed_other_seed_other_rows(packed, tmp_path):
    cfg = MixtureConfig(target=TARGET)
    for name in ("a", "b"):
        build_mixture(packed, str(tmp_path / name), cfg, log=lambda s: None)
    build_mixture(packed, str(tmp_path / "c"), MixtureConfig(target=TARGET, seed=1), log=lambda s: None)
    a, b, c = ((tmp_path / n / "order.parquet").read_bytes() for n in "abc")
    assert a == b and a != c
    oa, oc = order_of(tmp_path / "a"), order_of(tmp_path / "c")
    assert np.array_equal(oa["domain"], oc["domain"])  # same interleaving, other rows
    assert not np.array_equal(oa["row"], oc["row"])


def test_unlisted_domains_keep_their_natural_share_or_are_excluded(packed, tmp_path):
    nat = natural_tokens(packed)
    total = sum(nat.values())
    m = build_mixture(packed, str(tmp_path / "n"), MixtureConfig(target={"letters": 1.0}), log=lambda s: None)
    assert abs(m["domains"]["novel"]["target_share"] - nat["novel"] / total) < 1e-9
    assert abs(m["domains"]["letters"]["target_share"] - nat["letters"] / total) < 1e-9
    m = build_mixture(
        packed,
        str(tmp_path / "x"),
        MixtureConfig(target={"letters": 1.0, "novel": 1.0}, unlisted="exclude"),
        log=lambda s: None,
    )
    dom, ntok = truth(packed, order_of(tmp_path / "x"))
    assert "speeches" not in set(dom) and abs(ntok[dom == "letters"].sum() / ntok.sum() - 0.5) <= 0.02


def test_cli_table_json_and_one_line_errors(packed, tmp_path):
    proc = run_cli(
        "mix",
        *packed,
        "--output",
        str(tmp_path / "mix"),
        "--set",
        "mixture.target.letters=0.3",
        "--set",
        "mixture.max_repeat=3",
        "--tokens",
        "100000",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["requested_tokens"] == 100000 and m["config"]["max_repeat"] == 3
    assert json.loads((tmp_path / "mix" / "mixture.json").read_text())["domains"] == m["domains"]
    bad = tmp_path / "bad.toml"
    bad.write_text("[mixture]\nmax_repeats = 2\n")
    for argv, needle in (
        (["--mixture", str(bad)], "max_repeats"),
        (["--set", "mixture.max_repeat=0.5"], "max_repeat"),
        (["--set", 'mixture.unlisted="drop"'], "unlisted"),
    ):
        proc = run_cli("mix", *packed, "--output", str(tmp_path / "o"), *argv)
        assert proc.returncode == 2 and needle in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    proc = run_cli("mix", str(tmp_path / "missing"), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2 and "missing" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def packed_ids(uri: str) -> np.ndarray:
    m = json.loads((Path(uri) / "manifest.json").read_text())
    t = pa.concat_tables([pq.read_table(Path(uri) / s["path"], columns=["input_ids"]) for s in m["shards"]])
    return np.stack(t.column("input_ids").to_numpy(zero_copy_only=False))


def test_loader_reads_the_order_at_any_worker_count(packed, tmp_path):
    from dsllm.trainer.data import DataLoader
    from dsllm.trainer.mixture_data import open_dataset

    build_mixture(packed, str(tmp_path / "mix"), MixtureConfig(target=TARGET), log=lambda s: None)
    order = order_of(tmp_path / "mix")
    ids = [packed_ids(p) for p in packed]
    want = np.stack([ids[s][r] for s, r in zip(order["source"][16:32], order["row"][16:32])])
    ds = open_dataset(str(tmp_path / "mix"))
    for world in (1, 2):  # resumed after 16 sequences, with 1 and 2 ranks
        got = []
        for rank in range(world):
            loader = DataLoader(ds, 16, 4, seed=0, rank=rank, world_size=world, start_sequences=16)
            got += [b.input_ids.numpy() for _, b in zip(range(4 // world), loader)]
            loader.close()
        assert np.array_equal(np.concatenate(got), want)


def test_training_on_a_mixture_logs_tokens_per_domain_and_resumes_exactly(packed, tmp_path):
    from dsllm.config import from_dict
    from dsllm.trainer.config import ModelConfig
    from dsllm.trainer.train import TrainConfig, train

    mix = tmp_path / "mix"
    build_mixture(packed, str(mix), MixtureConfig(target=TARGET), log=lambda s: None)
    model = ModelConfig(
        vocab_size=640,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=SEQ,
        bos_token_id=0,
        eos_token_id=1,
    )
    base = dict(
        batch_size=8,
        micro_batch_size=4,
        precision="fp32",
        eval_every=3,
        eval_rows=4,
        checkpoint_every_steps=3,
        checkpoint_every_minutes=0,
        optim={"lr": 3e-3},
        schedule={"warmup_steps": 2, "total_tokens": 6 * 8 * SEQ},
    )
    train(model, from_dict(TrainConfig, dict(base, max_steps=6)), str(mix), str(tmp_path / "whole"), quiet=True)
    train(model, from_dict(TrainConfig, dict(base, max_steps=3)), str(mix), str(tmp_path / "parts"), quiet=True)
    train(model, from_dict(TrainConfig, dict(base, max_steps=6)), str(mix), str(tmp_path / "parts"), quiet=True)
    read = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    whole, parts = read("whole"), read("parts")
    assert [(r["step"], r["loss"], r["domain_tokens"]) for r in whole] == [
        (r["step"], r["loss"], r["domain_tokens"]) for r in parts
    ]
    dom = order_of(mix)["domain"]
    for r in whole:  # the order's first step × 8 sequences, seq_len tokens each
        seen = dom[: r["step"] * 8]
        assert r["domain_tokens"] == {d: int((seen == d).sum()) * SEQ for d in sorted(set(seen))}
        assert sum(r["domain_tokens"].values()) == r["tokens"]


def test_stats_shows_natural_target_and_mixed_shares(packed, tmp_path):
    from tests.curation.test_stats_html import _rendered

    mix = tmp_path / "mix"
    build_mixture(packed, str(mix), MixtureConfig(target=TARGET), log=lambda s: None)
    page = tmp_path / "mix.html"
    proc = run_cli("stats", str(mix), "--json", "--html", str(page), "--verify")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    dom, ntok = truth(packed, order_of(mix))
    nat = natural_tokens(packed)
    assert rep["kind"] == "mixture" and rep["checks"]["ok"] and rep["checks"]["verified"]
    for d in rep["domains"]:
        assert d["natural_share"] == pytest.approx(nat[d["domain"]] / sum(nat.values()))
        assert d["mixed_share"] == pytest.approx(ntok[dom == d["domain"]].sum() / ntok.sum())
        assert d["target_share"] == pytest.approx(TARGET[d["domain"]])
        assert d["order_rows"] == int((dom == d["domain"]).sum())
    proc = run_cli("stats", str(mix))  # the terminal table names every domain
    assert (
        proc.returncode == 0 and all(d in proc.stdout for d in TARGET) and "natural vs target vs mixed" in proc.stdout
    )
    bars = _rendered(tmp_path, page).bars["domains"]
    assert [b["data-series"] for b in bars] == ["natural", "target", "mixed"] * 3
    # packed data: natural token shares per domain, counted in the shards and checked with the manifest
    rep = json.loads(run_cli("stats", packed[0], "--json").stdout)
    t = packed_rows(packed[0])
    d = np.array(t.column("domain").to_pylist())
    assert {x["domain"]: x["tokens"] for x in rep["domains"]} == {
        k: int(t.column("n_tokens").to_numpy()[d == k].sum()) for k in set(d)
    }
    # a damaged order is a failed check (exit 1)
    pq.write_table(pq.read_table(mix / "order.parquet").slice(0, 10), mix / "order.parquet")
    proc = run_cli("stats", str(mix), "--json")
    assert proc.returncode == 1 and not json.loads(proc.stdout)["checks"]["ok"]


def test_mixture_over_s3_inputs_and_output_reads_the_same_rows(packed, tmp_path, s3_bucket):
    import os

    from dsllm import storage
    from dsllm.trainer.mixture_data import open_dataset

    remote = f"s3://{s3_bucket}/packed-b"
    for f in storage.list_files(packed[1]):
        storage.upload_file(f.uri, storage.join(remote, os.path.relpath(f.uri, packed[1])))
    build_mixture([packed[0], remote], f"s3://{s3_bucket}/mix", MixtureConfig(target=TARGET), log=lambda s: None)
    build_mixture(packed, str(tmp_path / "mix"), MixtureConfig(target=TARGET), log=lambda s: None)
    assert (
        storage.read_bytes(f"s3://{s3_bucket}/mix/order.parquet") == (tmp_path / "mix" / "order.parquet").read_bytes()
    )
    positions = np.arange(0, 200, 7)
    a = open_dataset(f"s3://{s3_bucket}/mix").read(positions, segments=True)
    b = open_dataset(str(tmp_path / "mix")).read(positions, segments=True)
    assert np.array_equal(a.input_ids, b.input_ids) and a.doc_offsets == b.doc_offsets


@pytest.mark.parametrize("period", [1 << 16, 997])
def test_interleaving_keeps_every_prefix_within_one_sequence(period):
    """Many domains and skewed weights, in one period and tiled: each prefix of m positions holds
    domain d within one of m × its share (the share of a tiled period when the order is longer)."""
    from dsllm.trainer.mixture import interleave

    rng = np.random.default_rng(0)
    for _ in range(20):
        counts = rng.integers(1, 800, rng.integers(2, 10))
        counts[0] *= 12
        n = int(counts.sum())
        seq = interleave(counts, n, period)
        got = np.bincount(seq, minlength=len(counts))
        if n <= period:
            assert np.array_equal(got, counts)
        unit = np.bincount(seq[: min(n, period)], minlength=len(counts)) / min(n, period)
        m = np.arange(1, n + 1)[:, None]
        cum = np.cumsum(seq[:, None] == np.arange(len(counts))[None, :], axis=0)
        assert np.abs(cum - m * unit[None, :]).max() <= 1.0
        assert np.abs(got / n - counts / n).max() <= 1 / period + 1 / n
