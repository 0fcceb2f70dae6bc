"""Dropped documents kept by `dsllm curate` (OUT/dropped/) and shown by `dsllm stats --dropped`.

Oracles: stats.json's per-stage counts (tallied by `StageCounts`, not by the recorder), the kept
shards (no dropped document is among them), Gopher's duplicate n-gram fraction written the slow
and obvious way (tests.curation.test_filters), and the sample crawl's ground truth (which page each
planted duplicate copies)."""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dsllm.curation.config import load_curate_config
from dsllm.curation.document import Document, document_id
from dsllm.curation.dropped import DROPPED_SCHEMA, DroppedConfig, DropRecorder, parse_keep_dropped, read_dropped
from dsllm.curation.executor import LocalExecutor
from dsllm.curation.filters.urls import UrlFilter, UrlFilterConfig
from dsllm.curation.pipeline import replace_skip
from dsllm.curation.run import run_curate
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
from dsllm.curation.sources import resolve_inputs
from dsllm.curation.stage import Stage, StageCounts
from tests.conftest import run_cli
from tests.curation.test_filters import _reference_dup_fraction

SKIP = "decontaminate"  # its index build is tested elsewhere; the sample crawl holds no benchmark text


@pytest.fixture(scope="module")
def crawl(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dropped") / "crawl"
    write_sample_crawl(str(root), SampleCrawlConfig(warcs=2, records=60, seed=3))
    return root


def funnel(out: Path) -> dict[str, int]:
    """stats.json's drops as {"stage:reason": n}."""
    stats = json.loads((out / "stats.json").read_text())
    return {f"{s['name']}:{r}": n for s in stats["stages"] for r, n in s["dropped"].items()}


def kept_ids(out: Path) -> set[str]:
    m = json.loads((out / "manifest.json").read_text())
    return set(
        pa.concat_tables([pq.read_table(out / s["path"], columns=["id"]) for s in m["shards"]]).column("id").to_pylist()
    )


def test_all_mode_keeps_every_drop_with_its_value(crawl, tmp_path):
    out = tmp_path / "all"
    proc = run_cli("curate", str(crawl), "--output", str(out), "--skip", SKIP, "--keep-dropped", "all")
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_dropped(str(out)).to_pylist()
    by_reason = collections.Counter(f"{r['stage']}:{r['reason']}" for r in rows)
    counted = funnel(out)
    assert by_reason == counted  # every drop of every stage, dedup included, once
    assert {k.split(":")[0] for k in counted} >= {"read", "langid", "gopher_repetition", "exact_dedup", "minhash_dedup"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped_samples"]["mode"] == "all" and stats["dropped_samples"]["rows"] == counted
    assert sorted(os.listdir(out / "dropped")) == ["part-00000.parquet", "part-00001.parquet"]

    kept = kept_ids(out)
    with_text = [r for r in rows if r["text"] is not None]
    assert with_text and not kept & {r["id"] for r in with_text}
    assert all(r["n_chars"] == len(r["text"]) for r in with_text)  # whole text in all mode

    # the deciding value, against Gopher's definition written independently
    dup = [
        r
        for r in rows
        if r["stage"] == "gopher_repetition" and r["reason"].startswith("dup_") and "gram" in r["reason"]
    ]
    assert dup
    for r in dup:
        n = int(r["reason"][len("dup_") : -len("gram")])
        assert r["value"] == pytest.approx(_reference_dup_fraction(r["text"].split(), n), abs=1e-4)
    truth = json.loads((crawl / "sample-crawl.json").read_text())["captures"]
    key = {(c["warc"], c["record_id"]): document_id(os.path.basename(c["warc"]), c["record_id"]) for c in truth}
    status = {key[(c["warc"], c["record_id"])]: c["status"] for c in truth}
    not_200 = [r for r in rows if (r["stage"], r["reason"]) == ("read", "http_not_200")]
    assert not_200 and all(r["value"] == status[r["id"]] != 200 for r in not_200)  # the crawl's own status
    for r in rows:  # language drops carry the language and fastText's score
        if r["stage"] == "langid":
            assert r["detail"] and 0 < r["value"] <= 1

    # duplicates name the kept document they matched, from the same planted family
    family = {}
    for c in truth:
        if c["dup_of"]:
            root_id = key[(c["dup_of_warc"], c["dup_of"])]
            family[key[(c["warc"], c["record_id"])]] = root_id
            family[root_id] = root_id
    dedup = [r for r in rows if r["stage"] in ("exact_dedup", "minhash_dedup")]
    checked = [r for r in dedup if r["id"] in family]
    assert len(checked) >= 5
    for r in checked:
        assert r["duplicate_of"] not in (None, r["id"]) and family.get(r["duplicate_of"]) == family[r["id"]], r
    near = [r for r in dedup if r["stage"] == "minhash_dedup"]
    assert near and all(r["duplicate_of"] in kept for r in near)  # the survivor is in the shards

    # stats --dropped shows them; unknown names are one error line listing what there is
    proc = run_cli("stats", str(out), "--dropped", "exact_dedup", "--limit", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["rows_kept"] == counted["exact_dedup:exact_duplicate"] == len(shown["rows"])
    proc = run_cli("stats", str(out), "--dropped", "no_such_reason")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "langid:other_language" in proc.stderr or "langid:low_confidence" in proc.stderr


def test_default_mode_keeps_the_first_n_and_a_rerun_is_identical(crawl, tmp_path):
    out = tmp_path / "sample"  # in-process (LocalExecutor): the CLI and Ray run in the test above
    cfg = replace_skip(load_curate_config(None, parse_keep_dropped("2")), [SKIP])
    run_curate(resolve_inputs([str(crawl)], None, None), str(out), cfg, LocalExecutor(), log=lambda *a: None)
    table = read_dropped(str(out))
    rows = table.to_pylist()
    by_reason = collections.Counter(f"{r['stage']}:{r['reason']}" for r in rows)
    counted = funnel(out)
    assert by_reason == {k: min(2, n) for k, n in counted.items()}
    assert os.listdir(out / "dropped") == ["samples.parquet"]
    assert not kept_ids(out) & {r["id"] for r in rows if r["text"] is not None}
    assert all(len(r["text"]) <= 2000 for r in rows if r["text"] is not None)

    # the first two per reason in input order: the per-input files' first rows of each reason
    first = collections.defaultdict(list)
    for spec in resolve_inputs([str(crawl)], None, None):  # in input order
        f = out / "_work" / "inputs" / spec.key / "dropped.parquet"
        for r in pq.read_table(f).to_pylist():
            first[(r["stage"], r["reason"])].append(r["id"])
    for (stage, reason), ids in first.items():
        assert [r["id"] for r in rows if (r["stage"], r["reason"]) == (stage, reason)] == ids[:2]

    # stats --dropped prints the samples of a reason with their value
    r = next(r for r in rows if r["stage"] == "gopher_repetition")
    proc = run_cli("stats", str(out), "--dropped", f"gopher_repetition:{r['reason']}")
    assert proc.returncode == 0, proc.stderr
    assert f"gopher_repetition:{r['reason']} · value {r['value']:.6g}" in proc.stdout and r["url"] in proc.stdout

    # a crash after one input finished but before its completion marker: the rerun is identical
    before = (out / "stats.json").read_text()
    shutil.rmtree(out / "dropped")
    (out / "_work" / "complete.json").unlink()
    specs = resolve_inputs([str(crawl)], None, None)
    (out / "_work" / "inputs" / specs[1].key / "done.json").unlink()  # the second input in input order
    result = run_curate(specs, str(out), cfg, LocalExecutor(), log=lambda *a: None)
    assert [bool(r.get("skipped")) for r in result.inputs] == [True, False]
    assert read_dropped(str(out)).equals(table)
    # identical but for `timing` (each run's own wall and CPU seconds)
    again, first = json.loads((out / "stats.json").read_text()), json.loads(before)
    assert again.pop("timing") and first.pop("timing")
    assert again == first


def test_stats_dropped_never_passes_control_characters_to_the_terminal(crawl, tmp_path):
    out = tmp_path / "hostile"
    cfg = replace_skip(load_curate_config(None, ["dropped.keep=1"]), [SKIP, "minhash_dedup"])
    run_curate(resolve_inputs([str(crawl)], None, None), str(out), cfg, LocalExecutor(), log=lambda *a: None)
    path = out / "dropped" / "samples.parquet"
    rows = pq.read_table(path).to_pylist()
    evil = "\x1b[2J\x1b]0;pwned\x07\x9b31m\r\u202eevil"
    for r in rows:
        r["text"], r["url"], r["detail"] = f"{evil} text", f"http://x.example/{evil}", evil
    pq.write_table(pa.Table.from_pylist(rows, schema=DROPPED_SCHEMA), path)
    proc = run_cli("stats", str(out), "--dropped", "read", "--limit", "0")
    assert proc.returncode == 0, proc.stderr
    for c in ("\x1b", "\x07", "\x9b", "\r", "\u202e"):
        assert c not in proc.stdout
    assert "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x0d\\u202eevil text" in proc.stdout
    proc = run_cli("stats", str(out), "--dropped", "exact_dedup:exact_duplicate", "--json")
    assert proc.returncode == 0 and "\x1b" not in proc.stdout  # JSON escapes them as \u001b
    proc = run_cli("stats", str(out), "--dropped", "minhash_dedup")
    assert proc.returncode == 2 and "minhash_dedup" in proc.stderr


def test_keep_dropped_values():
    from dsllm.errors import UserError

    assert parse_keep_dropped("all") == ["dropped.all=true"]
    assert parse_keep_dropped("0") == ["dropped.keep=0", "dropped.all=false"]
    for bad in ("-1", "some", "2.5"):
        with pytest.raises(UserError, match="--keep-dropped"):
            parse_keep_dropped(bad)
    proc = run_cli("curate", "nowhere", "--output", "x", "--keep-dropped", "many")
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "dsllm curate: error: --keep-dropped many: expected a number (per stage and reason) or 'all'"
    )


class _Odd(Stage):
    """Drops odd numbers; counts how often it is asked for a deciding value."""

    name = "odd"

    def __init__(self):
        self.asked = 0

    def keep(self, item):
        return "odd" if item.signals["n"] % 2 else None

    def deciding(self, item, reason):
        self.asked += 1
        return super().deciding(item, reason)


def test_the_deciding_value_is_computed_only_for_kept_samples():
    docs = [
        Document(str(i), f"text {i}", url=f"http://x.example/{i}", signals={"n": i, "odd": i / 10}) for i in range(40)
    ]
    stage, counts = _Odd(), StageCounts("odd")
    recorder = DropRecorder(DroppedConfig(keep=3, text_chars=5), "w.warc.gz", "w.warc.gz")
    assert [d.id for d in stage(iter(docs), counts, recorder)] == [str(i) for i in range(0, 40, 2)]
    assert counts.dropped == {"odd": 20} and stage.asked == 3
    assert [(r["id"], r["value"], r["text"], r["n_chars"]) for r in recorder.rows] == [
        ("1", 0.1, "text ", 6),
        ("3", 0.3, "text ", 6),
        ("5", 0.5, "text ", 6),
    ]


def test_url_filter_names_the_block_list_entry():
    f = UrlFilter(
        UrlFilterConfig(domain_lists=(), word_lists=(), domains=("example.com", "bad.org"), words=("casino",))
    )
    docs = [
        Document("1", "t", url="https://a.b.example.com/page"),
        Document("2", "t", url="https://good.net/casino-night"),
        Document("3", "t", url="https://bad.org/"),
        Document("4", "t", url="https://good.net/ok"),
    ]
    recorder = DropRecorder(DroppedConfig(all=True), "w", "w")
    assert [d.id for d in f(iter(docs), StageCounts("url_filter"), recorder)] == ["4"]
    assert [(r["reason"], r["detail"]) for r in recorder.rows] == [
        ("blocked_domain", "example.com"),
        ("blocked_word", "casino"),
        ("blocked_domain", "bad.org"),
    ]


def test_keep_dropped_0_keeps_none_and_says_so(crawl, tmp_path):
    out = tmp_path / "none"
    cfg = replace_skip(load_curate_config(None, parse_keep_dropped("0")), [SKIP, "minhash_dedup"])
    run_curate(resolve_inputs([str(crawl)], None, None), str(out), cfg, LocalExecutor(), log=lambda *a: None)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["dropped_samples"] == {"mode": "sample", "keep": 0, "files": [], "rows": {}}
    assert not list((out / "_work" / "inputs").glob("*/dropped.parquet"))
    assert not (out / "dropped").exists() or not os.listdir(out / "dropped")
    proc = run_cli("stats", str(out), "--dropped", "read:record_request")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"dsllm stats: error: --dropped read:record_request: {funnel(out)['read:record_request']} dropped, "
        "none kept (curated with --keep-dropped 0); rerun curate with --keep-dropped N or all"
    )


def test_the_html_report_shows_the_first_dropped_documents_of_every_reason(crawl, tmp_path):
    """`dsllm stats --html`: a "Dropped documents" section with the first 2 kept documents of every
    stage:reason (oracle: OUT/dropped/ read whole and filtered here), drawn in headless Chromium."""
    from dsllm.curation.report import summarize
    from tests.curation.test_stats_html import _browser

    out = tmp_path / "out"
    cfg = replace_skip(load_curate_config(None, parse_keep_dropped("3")), [SKIP])
    run_curate(resolve_inputs([str(crawl)], None, None), str(out), cfg, LocalExecutor(), log=lambda *a: None)
    rows = read_dropped(str(out)).to_pylist()
    stats = json.loads((out / "stats.json").read_text())
    order = [f"{s['name']}:{r}" for s in stats["stages"] for r in sorted(s["dropped"])]  # funnel order
    want = [r for key in order for r in [r for r in rows if f"{r['stage']}:{r['reason']}" == key][:2]]
    assert len(want) >= 6  # several stages and reasons
    got = summarize(str(out))["dropped_examples"]
    assert [(g["stage"], g["reason"], g["id"], g["value"]) for g in got] == [
        (w["stage"], w["reason"], w["id"], w["value"]) for w in want
    ]
    assert [g["text"] for g in got] == [(w["text"] or "")[:600] for w in want]

    page = tmp_path / "report.html"
    proc = run_cli("stats", str(out), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    dumped = _browser(tmp_path, "--dump-dom", f"file://{page}")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    keys = [
        line.split('data-dropped="', 1)[1].split('"', 1)[0]
        for line in dumped.stdout.split("<div")
        if 'data-dropped="' in line
    ]
    assert keys == [f"{w['stage']}:{w['reason']}" for w in want]
