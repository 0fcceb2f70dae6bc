"""stats.json `timing`: wall and CPU seconds of every phase of a curate run and of every per-input
stage, and `dsllm stats` showing them. Structural checks only (no timing assertions): every phase
and stage that ran is there once, in order, with non-negative numbers, task counts that match the
run, and per-stage times that add up within the clock intervals that contain them."""

from __future__ import annotations

import dataclasses
import json
import math

from dsllm import storage
from dsllm.curation.config import PER_INPUT_STAGES, CurateConfig
from dsllm.curation.executor import LocalExecutor
from dsllm.curation.pipeline import replace_skip
from dsllm.curation.run import run_curate
from dsllm.curation.samples import SampleCrawlConfig, write_sample_crawl
from dsllm.curation.sources import resolve_inputs
from tests.conftest import run_cli

PHASES = ["inputs", "dedup", "shards", "stats", "publish"]


def _sane(entry: dict) -> None:
    for key in ("wall_s", "cpu_s"):
        assert isinstance(entry[key], float | int) and math.isfinite(entry[key]) and entry[key] >= 0, entry


def _curate(tmp_path, cfg: CurateConfig, name: str = "out", startup=None):
    crawl = tmp_path / "crawl"
    if not crawl.exists():
        write_sample_crawl(str(crawl), SampleCrawlConfig(warcs=3, records=15, seed=5))
    specs = resolve_inputs([str(crawl)])
    out = str(tmp_path / name)
    result = run_curate(specs, out, cfg, LocalExecutor(), log=lambda *a: None, startup=startup)
    return specs, out, result


def test_every_phase_and_stage_is_timed_once_in_order(tmp_path):
    cfg = replace_skip(CurateConfig(), ["decontaminate", "pii"])
    specs, out, result = _curate(tmp_path, cfg, startup={"wall_s": 1.5, "cpu_s": 0.25})
    timing = storage.read_json(f"{out}/stats.json")["timing"]
    assert timing == result.stats["timing"]

    phases = timing["phases"]
    assert [p["name"] for p in phases] == ["startup"] + PHASES
    assert phases[0] == {"name": "startup", "wall_s": 1.5, "cpu_s": 0.25, "tasks": 0, "workers": 0}
    for p in phases:
        _sane(p)
    by_name = {p["name"]: p for p in phases}
    assert by_name["inputs"]["tasks"] == len(specs) == 3
    assert by_name["shards"]["tasks"] == len(result.shards)
    assert by_name["dedup"]["tasks"] > 0  # dedup fans out through the same executor
    assert by_name["stats"]["tasks"] == by_name["publish"]["tasks"] == 0
    assert all(p["workers"] == 1 for p in phases if p["tasks"])  # LocalExecutor: this process only
    assert timing["total"]["cpu_s"] == round(sum(p["cpu_s"] for p in phases), 4)

    ran = [s for s in PER_INPUT_STAGES if cfg.runs(s)]
    assert "pii" not in ran and "decontaminate" not in ran
    stages = timing["stages"]
    assert [s["name"] for s in stages] == ["setup"] + ran + ["write"]
    for s in stages:
        _sane(s)
        assert s["tasks"] == len(specs)
    # per-stage CPU is split out of each input's own interval, which lies inside the inputs phase
    # (LocalExecutor: the same process and the same clock), so it can never exceed the phase
    assert sum(s["cpu_s"] for s in stages) <= by_name["inputs"]["cpu_s"] + 1e-3
    assert sum(s["wall_s"] for s in stages) <= by_name["inputs"]["wall_s"] + 1e-3

    done = [storage.read_json(f"{out}/_work/inputs/{s.key}/done.json") for s in specs]
    for d in done:  # each input keeps its own per-stage times, same names
        assert list(d["stage_times"]) == ["setup"] + ran + ["write"]
    for s in stages:  # stats.json sums them over the inputs
        assert math.isclose(s["cpu_s"], sum(d["stage_times"][s["name"]][0] for d in done), abs_tol=1e-3)


def test_timing_leaves_outputs_alone_and_a_resumed_run_times_only_its_own_work(tmp_path):
    cfg = replace_skip(CurateConfig(), ["decontaminate"])
    specs, out, first = _curate(tmp_path, cfg, "a")
    _, out_b, second = _curate(tmp_path, cfg, "b")
    for a, b in zip(first.shards, second.shards, strict=True):  # timings never reach the shards
        assert (a["path"], a["rows"], a["sha256"]) == (b["path"], b["rows"], b["sha256"])
    assert first.stats["stages"] == second.stats["stages"]

    # a rerun after a config change that keeps the per-input fingerprint: inputs are skipped
    cfg2 = dataclasses.replace(cfg, dedup=dataclasses.replace(cfg.dedup, threshold=0.9))
    _, _, third = _curate(tmp_path, cfg2, "a")
    assert all(r.get("skipped") for r in third.inputs)
    timing = third.stats["timing"]
    assert [p["name"] for p in timing["phases"]] == PHASES
    assert timing["stages"] == []  # no input was processed by this run


def test_dsllm_stats_prints_the_timings(tmp_path):
    _, out, result = _curate(tmp_path, replace_skip(CurateConfig(), ["decontaminate"]))
    proc = run_cli("stats", out, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["timing"]
    assert [p["name"] for p in report["phases"]] == PHASES
    assert [s["name"] for s in report["stages"]] == [s["name"] for s in result.stats["timing"]["stages"]]
    assert math.isclose(sum(s["share_cpu"] for s in report["stages"]), 1.0, abs_tol=1e-3)

    proc = run_cli("stats", out)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout[proc.stdout.index("Time of the run") :]
    for name in PHASES + [s["name"] for s in report["stages"]] + ["total"]:
        assert f" {name} " in table, name
    cpu = f"{report['phases'][0]['cpu_s']:.2f}"
    assert cpu in table.splitlines()[[i for i, ln in enumerate(table.splitlines()) if " inputs " in ln][0]]


def test_known_lsh_optima_are_datasketchs():
    """The band/row optima kept to spare a default run importing datasketch and scipy are datasketch's."""
    from datasketch.lsh import _optimal_param

    from dsllm.curation.dedup.config import KNOWN_OPTIMA, DedupConfig

    assert (DedupConfig().threshold, DedupConfig().num_perm, DedupConfig().lsh_fn_weight) in KNOWN_OPTIMA
    for (threshold, num_perm, weight), (bands, rows) in KNOWN_OPTIMA.items():
        assert _optimal_param(threshold, num_perm, 1.0 - weight, weight) == (bands, rows)


def test_the_command_on_forked_workers_writes_what_the_in_process_run_writes(tmp_path):
    """`dsllm curate` on one machine (the default `--executor local`: forked workers) against the same
    run in this process: byte-identical shards and the same funnel; its timing has a start-up phase,
    and the inputs' CPU comes from the worker processes (summed over them)."""
    cfg = replace_skip(CurateConfig(), ["decontaminate"])
    _, out_a, first = _curate(tmp_path, cfg, "in-process")
    out_b = str(tmp_path / "forked")
    proc = run_cli("curate", str(tmp_path / "crawl"), "--output", out_b, "--skip", "decontaminate", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = storage.read_json(f"{out_b}/manifest.json")
    assert [(s["path"], s["sha256"]) for s in manifest["shards"]] == [(s["path"], s["sha256"]) for s in first.shards]
    stats = storage.read_json(f"{out_b}/stats.json")
    assert stats["stages"] == first.stats["stages"]
    phases = {p["name"]: p for p in stats["timing"]["phases"]}
    assert list(phases) == ["startup"] + PHASES
    assert 1 <= phases["inputs"]["workers"] <= 2 and phases["inputs"]["tasks"] == 3
    stage_cpu = sum(s["cpu_s"] for s in stats["timing"]["stages"])
    assert 0 < stage_cpu <= phases["inputs"]["cpu_s"] + 1e-3  # the workers' CPU reached the driver's phase


def test_executor_flags_that_contradict_each_other_are_user_errors(tmp_path):
    for args, words in (
        (["--executor", "local", "--ray-address", "127.0.0.1:1"], "--executor local runs on this machine only"),
        (["--executor", "ray", "--workers", "2"], "--workers sets the processes of --executor local"),
        (["--workers", "0"], "--workers must be >= 1"),
    ):
        proc = run_cli("curate", str(tmp_path), "--output", str(tmp_path / "out"), *args)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("dsllm curate: error: ")
        assert words in proc.stderr, proc.stderr
