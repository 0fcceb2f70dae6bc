"""The curate run, top to bottom, over any `Executor` (Ray in production, LocalExecutor in tests):

    result = run_curate(specs, "s3://b/run1", cfg, executor, dedup_index=None)

1. plan: the run's signature (inputs, per-input fingerprint, config, index); a finished run with the
   same signature is not redone;
2. per input (curation.pipeline.process_input_safely, one task per input file; an input whose
   completion marker exists is skipped): read → extract → … → pii → OUT/_work/inputs/<key>/;
3. dedup (curation.dedup.run_dedup): exact and MinHash, within the run and against the index;
4. final shards (curation.shards.write_final_shard), one task per group of inputs: every surviving
   document exactly once, labelled with its domain (mixtures are applied at training time by
   `dsllm mix`, never here);
5. dropped documents → OUT/dropped/ (curation.dropped: the first `dropped.keep` per stage and
   reason, or all of them);
6. statistics; publish config.json, manifest.json; commit the dedup index; stats.json (with
   `timing`: wall and CPU seconds of every phase and per-input stage, curation.timing);
   OUT/_work/complete.json last.

A failed input is recorded in the manifest and the run ends non-zero naming it; its outputs are not
published as complete, so a rerun retries only it.
"""

from __future__ import annotations

import dataclasses
import logging

from dsllm import storage
from dsllm.config import config_to_dict
from dsllm.curation.config import GLOBAL_STAGES, PER_INPUT_STAGES, CurateConfig
from dsllm.curation.executor import Executor
from dsllm.curation.pipeline import per_input_fingerprint, process_input_safely, task_list
from dsllm.curation.shards import check_funnel, merge_sums, now_iso, plan_shards, versions, write_final_shard
from dsllm.curation.sources import InputSpec
from dsllm.curation.stage import StageCounts, merge_counts
from dsllm.curation.timing import RunTimer, TimedExecutor, merge_stage_times

_log = logging.getLogger(__name__)  # the default `log` of callers without a console


@dataclasses.dataclass
class CurateResult:
    inputs: list[dict]
    failed: list[dict]
    shards: list[dict]
    stats: dict
    skipped_complete: bool = False


def complete_marker(out: str) -> str:
    """Written last by a complete run: its signature."""
    return storage.join(out, "_work", "complete.json")


def run_signature(specs: list[InputSpec], cfg: CurateConfig, dedup_index: str | None) -> dict:
    """What makes two runs the same run (a finished run with the same signature is not redone)."""
    return {
        "inputs": [s.uri for s in specs],
        "fingerprint": per_input_fingerprint(cfg),
        "config": config_to_dict(cfg),
        "dedup_index": dedup_index,
    }


def run_curate(
    specs: list[InputSpec],
    out: str,
    cfg: CurateConfig,
    executor: Executor,
    dedup_index: str | None = None,
    log=_log.info,
    startup: dict | None = None,
) -> CurateResult:
    """The whole curate run over `executor`; see the module docstring for its steps.

    `startup` ({"wall_s", "cpu_s"}): what the caller spent starting the executor (Ray), recorded as
    the first phase of stats.json's `timing`."""
    executor = TimedExecutor(executor)
    timer = RunTimer(executor, startup)
    marker, signature = complete_marker(out), run_signature(specs, cfg, dedup_index)
    if storage.exists(marker) and storage.read_json(marker).get("signature") == signature:
        log(f"curate: {out} is already complete for these inputs and this config; nothing to do")
        return _previous_result(out)

    if cfg.runs("decontaminate"):
        from dsllm.curation.decontam.stage import load_index

        index = load_index(cfg.decontaminate.index, cfg.decontaminate.n)  # a bad index stops the run here
        source = cfg.decontaminate.index or "the bundled index"
        log(f"curate: decontaminating against {source} ({len(index.names)} benchmarks)")
    with timer.phase("inputs"):
        results = executor.map(process_input_safely, task_list(specs, cfg, out), label="curate/inputs")
    usable = ("done", "truncated") if cfg.run.accept_partial else ("done",)
    done = [r for r in results if r["status"] in usable]
    failed = [r for r in results if r["status"] not in usable]
    n_skipped = sum(1 for r in done if r.get("skipped"))
    kinds = {s: sum(1 for r in failed if r["status"] == s) for s in ("failed", "invalid", "truncated")}
    log(
        f"curate: {len(done)} inputs done ({n_skipped} already finished earlier), "
        + ", ".join(f"{n} {s}" for s, n in kinds.items())
    )

    stage_counts = merge_counts([[StageCounts.from_json(c) for c in r["counts"]] for r in done])
    files = [r["docs"] for r in done]
    removed = {f: [] for f in files}
    dumps: list = []
    outcome = None
    if any(cfg.runs(s) for s in ("exact_dedup", "minhash_dedup")) and files:
        with timer.phase("dedup"):
            outcome = dedup(files, out, cfg, executor, dedup_index)
            removed = {f: sorted(outcome.removed(f)) for f in files}
        stage_counts += [c for c in outcome.counts if cfg.runs(c.name)]
        dumps = outcome.dumps

    with timer.phase("shards"):
        shards = write_shards(out, done, removed, cfg, executor)
    with timer.phase("stats"):
        stats = build_stats(stage_counts, shards, dumps, cfg)
    with timer.phase("publish"):
        stats["dropped_samples"] = publish_dropped(out, done, outcome, stage_counts, cfg, executor)
        publish(out, cfg, results, shards)
        if not failed and outcome is not None and dedup_index:
            outcome.commit_index()  # only by a complete run: a rerun must not dedup against itself
    stage_times = merge_stage_times(
        (r.get("stage_times", {}) for r in done if not r.get("skipped")), ("setup",) + PER_INPUT_STAGES + ("write",)
    )
    stats["timing"] = timer.to_json(stage_times)
    storage.write_json(storage.join(out, "stats.json"), stats)  # timed up to here: one small JSON write
    if failed:
        return CurateResult(results, failed, shards, stats)
    storage.write_json(marker, {"signature": signature})
    return CurateResult(results, failed, shards, stats)


def _previous_result(out: str) -> CurateResult:
    stats = storage.read_json(storage.join(out, "stats.json"))
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    return CurateResult(manifest["inputs"], [], manifest["shards"], stats, skipped_complete=True)


def dedup(files: list[str], out: str, cfg: CurateConfig, executor: Executor, index: str | None):
    """Exact and MinHash dedup of the per-input files (the stages that run), under OUT/_work/dedup."""
    from dsllm.curation.dedup import run_dedup

    dcfg = dataclasses.replace(cfg.dedup, exact=cfg.runs("exact_dedup"), minhash=cfg.runs("minhash_dedup"))
    if dcfg.minhash and not dcfg.bands:  # resolved once here: datasketch's optimum imports scipy in every worker
        bands, rows = dcfg.band_rows
        dcfg = dataclasses.replace(dcfg, bands=bands, rows=rows)
    return run_dedup(files, storage.join(out, "_work", "dedup"), dcfg, index, executor)


def write_shards(out: str, done: list[dict], removed: dict, cfg: CurateConfig, executor: Executor) -> list[dict]:
    """The final shards (dedup removals applied), one task per group; stale shards removed."""
    kept = [r["documents"] - len(removed[r["docs"]]) for r in done]
    groups = plan_shards(kept, cfg.output.shard_rows)
    tasks = [
        {
            "out": out,
            "index": i,
            "batch_rows": cfg.output.batch_rows,
            "level": cfg.output.compression_level,
            "sources": [(done[j]["docs"], removed[done[j]["docs"]]) for j in group],
        }
        for i, group in enumerate(groups)
    ]
    shards = executor.map(write_final_shard, tasks, label="curate/shards")
    keep = {s["path"] for s in shards}
    for f in storage.list_files(storage.join(out, "shards")):  # shards of an earlier, larger plan
        rel = "shards/" + f.uri.replace("\\", "/").rsplit("/", 1)[-1]
        if rel not in keep and rel.endswith(".parquet"):
            storage.remove(f.uri)
    return shards


def publish_dropped(
    out: str, done: list[dict], outcome, stage_counts: list[StageCounts], cfg: CurateConfig, executor: Executor
) -> dict:
    """OUT/dropped/ from the inputs' kept drops and the dedup removals (curation.dropped)."""
    from dsllm.curation import dropped

    removed = [
        outcome.removed_rows_uri(i) if outcome is not None else None for i in range(len(done))
    ]  # files = done's docs
    totals = {(c.name, reason): n for c in stage_counts for reason, n in c.dropped.items()}
    return dropped.publish_dropped(out, done, removed, totals, cfg, executor)


def build_stats(stage_counts: list[StageCounts], shards, dumps, cfg: CurateConfig) -> dict:
    """stats.json: the funnel in pipeline order (checked to balance), totals, languages, domains."""
    rows = sum(s["rows"] for s in shards)
    order = {name: i for i, name in enumerate(PER_INPUT_STAGES + GLOBAL_STAGES)}
    stage_counts = sorted(stage_counts, key=lambda c: order[c.name])
    check_funnel(stage_counts, rows)
    languages = merge_sums(s["languages"] for s in shards)
    natural = merge_sums(s["domains"] for s in shards)  # each surviving document once
    return {
        "stages": [c.to_json() for c in stage_counts],
        "skipped": [s for s in cfg.skip],
        "totals": {
            "documents": rows,
            "chars": sum(v["chars"] for v in languages.values()),
            "bytes": sum(s["text_bytes"] for s in shards),
        },
        "languages": languages,
        "domains": {"natural": natural},
        "dedup": {"dumps": dumps},
    }


def publish(out: str, cfg: CurateConfig, results: list[dict], shards: list[dict]) -> None:
    """config.json, then manifest.json (shards with sha256, inputs with status); the run writes
    stats.json after them, with the timings of every phase up to it."""
    inputs = [
        {
            "uri": r["uri"],
            "crawl": r.get("crawl", ""),
            "status": r["status"],
            "error": r.get("error"),
            "records": r.get("records", 0),
            "documents": r.get("documents", 0),
        }
        for r in results
    ]
    config = config_to_dict(cfg)
    manifest = {
        "kind": "curated",
        "created": now_iso(),
        "versions": versions(),
        "shards": [{k: s[k] for k in ("path", "rows", "bytes", "sha256")} for s in shards],
        "inputs": inputs,
        "config": config,
    }
    storage.write_json(storage.join(out, "config.json"), config)
    storage.write_json(storage.join(out, "manifest.json"), manifest)
