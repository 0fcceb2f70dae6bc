"""`dsllm stats` on curated and packed output built to the INTERFACES.md contract: the numbers,
the shard checks, the sample, the terminal view and the CLI's errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsllm.curation.report import summarize
from tests.conftest import run_cli
from tests.curation.test_stats_builders import write_curated, write_packed


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    out = tmp_path_factory.mktemp("cur")
    return str(out), write_curated(str(out))


def test_curated_totals_and_distributions(curated):
    out, built = curated
    rep = summarize(out)
    docs = built["docs"]
    q = np.array([d["quality_score"] for d in docs], dtype=np.float32).astype(np.float64)
    n = np.array([d["n_chars"] for d in docs])
    t = rep["totals"]
    assert (rep["kind"], t["documents"], t["chars"], t["shards"]) == ("curated", len(docs), int(n.sum()), 4)
    assert t["text_bytes"] == sum(len(d["text"].encode()) for d in docs)
    assert t["shard_bytes"] == sum(os.path.getsize(os.path.join(out, e["path"])) for e in built["shards"])
    assert t["row_groups"] == sum(
        pq.read_metadata(os.path.join(out, e["path"])).num_row_groups for e in built["shards"]
    )
    assert t["tokens"] is None
    qd = rep["quality_score"]
    expected, _ = np.histogram(q, bins=np.linspace(q.min(), q.max(), 21))
    assert qd["histogram"]["counts"] == expected.tolist()
    assert qd["min"] == pytest.approx(q.min(), rel=1e-6) and qd["max"] == pytest.approx(q.max(), rel=1e-6)
    assert qd["mean"] == pytest.approx(q.mean(), rel=1e-6)
    for key, p in (("p10", 10), ("p50", 50), ("p90", 90)):
        assert abs(qd[key] - np.percentile(q, p)) <= (q.max() - q.min()) / 100
    ld = rep["doc_chars"]
    expected, _ = np.histogram(n, bins=ld["histogram"]["edges"])
    assert ld["histogram"]["counts"] == expected.tolist() and sum(expected) == len(docs)
    assert all(e == 0 or np.log2(e).is_integer() for e in ld["histogram"]["edges"])
    assert ld["p50"] == pytest.approx(np.median(n), rel=0.05)
    assert rep["checks"] == {"verified": False, "ok": True, "problems": []}


def test_curated_funnel_languages_domains_dedup(curated):
    out, built = curated
    rep = summarize(out)
    stages = built["stats"]["stages"]
    assert [s["name"] for s in rep["funnel"]] == [s["name"] for s in stages]
    read = stages[0]["in"]
    for got, s in zip(rep["funnel"], stages):
        assert got["dropped_total"] == sum(s["dropped"].values())
        assert got["kept_of_read"] == pytest.approx(s["out"] / read, abs=1e-6)
        for reason, count in s["dropped"].items():
            assert got["share_of_in"][reason] == pytest.approx(count / s["in"], abs=1e-6)
    assert rep["funnel"][-1]["out"] == len(built["docs"])
    langs = {row["lang"]: row for row in rep["languages"]}
    assert rep["languages"][0]["lang"] == "en"
    assert langs["zh"]["documents"] == sum(d["lang"] == "zh" for d in built["docs"])
    assert sum(r["share_documents"] for r in rep["languages"]) == pytest.approx(1.0, abs=1e-5)
    dom = {d["domain"]: d for d in rep["domains"]}
    nat = built["stats"]["domains"]["natural"]  # an old run's "remixed" counts are not shown
    assert {d: v["documents"] for d, v in dom.items()} == {d: v["documents"] for d, v in nat.items()}
    n_share = nat["books"]["chars"] / sum(v["chars"] for v in nat.values())
    assert dom["books"]["share_chars"] == pytest.approx(n_share, abs=1e-5)
    assert sum(d["share_documents"] for d in rep["domains"]) == pytest.approx(1.0, abs=1e-5)
    dumps = rep["dedup"]["dumps"]
    assert [d["dumps_in_index"] for d in dumps] == [1, 2, 3]
    src = built["stats"]["dedup"]["dumps"]
    removed = sum(d["removed_within_dump"] + d["removed_against_index"] for d in src)
    assert dumps[-1]["cumulative_rate"] == pytest.approx(removed / sum(d["documents_in"] for d in src), abs=1e-6)
    assert dumps[0]["cumulative_rate"] == pytest.approx(src[0]["rate_total"], abs=1e-6)
    assert rep["inputs"]["failed"] == 1 and rep["inputs"]["failed_list"][0]["error"] == "truncated gzip stream"


def test_shard_outliers_flagged(tmp_path):
    built = write_curated(str(tmp_path), shard_rows=(40, 40, 0, 3, 200, 40, 12))
    rep = summarize(str(tmp_path))
    flags = {r["path"].rsplit("/", 1)[1]: r["flags"] for r in rep["shards"]}
    assert flags["part-00002.parquet"] == ["empty"]
    assert flags["part-00003.parquet"] == ["tiny"]
    assert flags["part-00004.parquet"] == ["huge"]
    assert flags["part-00006.parquet"] == []  # a short last shard is normal
    assert rep["shard_summary"]["flags"] == {"empty": 1, "huge": 1, "tiny": 1}
    assert rep["checks"]["ok"] is True  # outliers are warnings, not failures
    assert rep["totals"]["documents"] == len(built["docs"])


def test_integrity_problems_and_verify(tmp_path):
    write_curated(str(tmp_path), shard_rows=(30, 30, 30, 30))
    mpath = tmp_path / "manifest.json"
    m = json.loads(mpath.read_text())
    m["shards"][0]["sha256"] = "0" * 64  # bytes that differ from what was recorded
    mpath.write_text(json.dumps(m))
    rep = summarize(str(tmp_path))
    assert rep["checks"]["ok"] and all(r["sha256"] is None for r in rep["shards"])
    rep = summarize(str(tmp_path), verify=True)
    assert [r["sha256"] for r in rep["shards"]] == ["mismatch", "ok", "ok", "ok"]
    assert rep["shards"][0]["flags"] == ["sha256_mismatch"] and not rep["checks"]["ok"]

    m["shards"][0]["sha256"] = None
    m["shards"][1]["rows"] = 31
    mpath.write_text(json.dumps(m))
    os.remove(tmp_path / "shards/part-00002.parquet")
    with open(tmp_path / "shards/part-00003.parquet", "r+b") as f:
        f.truncate(100)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "shards/part-00099.parquet")
    rep = summarize(str(tmp_path))
    flags = [r["flags"] for r in rep["shards"]]
    assert flags[1] == ["rows_mismatch"] and flags[2] == ["missing"] and flags[3] == ["unreadable"]
    assert rep["shards"][4]["path"] == "shards/part-00099.parquet" and flags[4] == ["unlisted", "schema"]
    messages = " | ".join(p["message"] for p in rep["checks"]["problems"])
    assert "shards/part-00002.parquet: missing" in messages and "stats.json totals.documents" in messages
    assert rep["totals"]["documents"] == 60  # only the readable listed shards
    proc = run_cli("stats", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stdout and "rows_mismatch" in proc.stdout


def test_sample_reads_the_chosen_documents(curated):
    out, built = curated
    by_id = {d["id"]: d for d in built["docs"]}
    starts = np.cumsum([0] + [e["rows"] for e in built["shards"]])
    index = {e["path"]: k for k, e in enumerate(built["shards"])}
    rep = summarize(out, sample=7, seed=3)
    assert len(rep["sample"]) == 7 and len({d["id"] for d in rep["sample"]}) == 7
    for d in rep["sample"]:
        src = built["docs"][starts[index[d["shard"]]] + d["row"]]
        assert d["id"] == src["id"] and d["text"] == by_id[d["id"]]["text"] and d["url"] == src["url"]
    assert [d["id"] for d in summarize(out, sample=7, seed=3)["sample"]] == [d["id"] for d in rep["sample"]]
    assert {d["id"] for d in summarize(out, sample=7, seed=4)["sample"]} != {d["id"] for d in rep["sample"]}
    assert len(summarize(out, sample=10_000)["sample"]) == len(built["docs"])


def test_packed_report(tmp_path):
    built = write_packed(str(tmp_path / "p"), shard_rows=(20, 20, 7), seq_len=64)
    m = built["manifest"]
    rep = summarize(str(tmp_path / "p"), verify=True)
    assert rep["kind"] == "packed" and rep["checks"]["ok"], rep["checks"]
    t, p = rep["totals"], rep["packed"]
    assert (t["sequences"], t["tokens"], t["documents"]) == (47, m["tokens"], built["documents"])
    assert p["fill"] == pytest.approx(m["tokens"] / (47 * 64), abs=1e-6) and p["tokenizer"]["eos_id"] == 2
    assert p["documents_per_sequence"] == pytest.approx(built["documents"] / 47, abs=1e-4)
    seg_counts = [len(r[1]) for r in built["rows"]]
    sp = rep["segments_per_sequence"]
    lo = int(sp["min"])
    assert sp["histogram"]["counts"] == np.bincount(seg_counts)[lo:].tolist()
    seg = rep["segment_tokens"]
    assert seg["count"] == sum(seg_counts)
    assert seg["mean"] * seg["count"] == pytest.approx(m["tokens"])  # segments tile the non-padding tokens
    assert rep["tokens_per_sequence"]["max"] == 64
    assert [r["tokens"] for r in rep["shards"]] == [e["tokens"] for e in m["shards"]]

    m["shards"][1]["tokens"] += 5
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(m))
    rep = summarize(str(tmp_path / "p"))
    assert rep["shards"][1]["flags"] == ["tokens_mismatch"] and not rep["checks"]["ok"]


def test_packed_sample_decodes_with_the_manifest_tokenizer(tmp_path):
    import hashlib

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["the river carried old stories past the mill"] * 50,
        trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    (tmp_path / "tok").mkdir()
    tok.save(str(tmp_path / "tok" / "tokenizer.json"))
    digest = hashlib.sha256((tmp_path / "tok" / "tokenizer.json").read_bytes()).hexdigest()
    write_packed(
        str(tmp_path / "p"),
        tokenizer={
            "sha256": digest,
            "vocab_size": tok.get_vocab_size(),
            "eos_id": 2,
            "bos_id": None,
            "path": str(tmp_path / "tok"),
        },
    )
    rep = summarize(str(tmp_path / "p"), sample=3)
    assert len(rep["sample"]) == 3 and rep["checks"]["problems"] == []
    for d in rep["sample"]:
        row = pq.read_table(tmp_path / "p" / d["shard"]).slice(d["row"], 1).to_pylist()[0]
        assert d["text"] == tok.decode(row["input_ids"][: row["n_tokens"]], skip_special_tokens=False)
        assert d["doc_offsets"] == row["doc_offsets"]


def test_cli_terminal_and_json(curated):
    out, built = curated
    proc = run_cli("stats", out, "--sample", "2")
    assert proc.returncode == 0, proc.stderr
    for text in (
        "Stage funnel",
        "minhash_dedup",
        "near_duplicate",
        "Languages",
        "Domains (natural",
        "Quality score",
        "Document length",
        "CC-MAIN-2023-23",
        "part-00003.parquet",
        "checks: ok",
        "Sample of 2",
        f"{len(built['docs'])} documents",
    ):
        assert text in proc.stdout, text
    proc = run_cli("stats", os.path.join(out, "manifest.json"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == summarize(out)
    proc = run_cli("stats", os.path.join(out, "shards"), "--json")
    assert json.loads(proc.stdout)["totals"]["documents"] == len(built["docs"])


@pytest.mark.parametrize("case", ["no_manifest", "absent", "other_kind", "bad_json"])
def test_cli_not_output_is_one_line_exit_2(tmp_path, case):
    target = tmp_path / "x"
    if case != "absent":
        target.mkdir()
        (target / "data.parquet").write_bytes(b"PAR1")
    if case == "other_kind":
        (target / "manifest.json").write_text('{"kind": "checkpoint", "shards": []}')
    if case == "bad_json":
        (target / "manifest.json").write_text('{"kind": ')
    proc = run_cli("stats", str(target))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsllm stats: error: ") and str(target) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
