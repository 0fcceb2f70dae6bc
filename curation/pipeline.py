"""One input file through the per-input stages, with no Ray in sight:

    read → extract → langid → gopher_quality → gopher_repetition → c4 → fineweb → quality_model
         → url_filter → pii → OUT/_work/inputs/<key>/docs.parquet, dropped.parquet (the dropped
           documents kept as samples, curation.dropped), done.json (written last)

`process_input` is what a Ray task runs (and what tests call directly). Its outputs are published
atomically and the completion marker comes last, so a rerun skips finished inputs and a killed
task leaves nothing half-visible. The result of the same input under the same config is always
the same documents in the same order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator

from dsllm import storage
from dsllm.config import config_to_dict
from dsllm.curation.config import PER_INPUT_STAGES, CurateConfig
from dsllm.curation.document import Document
from dsllm.curation.dropped import DROPPED_SCHEMA, DropRecorder, dropped_uri
from dsllm.curation.sources import InputSpec
from dsllm.curation.stage import StageCounts
from dsllm.curation.timing import ChainTimer
from dsllm.errors import UserError


def work_dir(out: str, spec: InputSpec) -> str:
    return storage.join(out, "_work", "inputs", spec.key)


def per_input_fingerprint(cfg: CurateConfig) -> str:
    """Hash of the config sections that change per-input outputs (a change redoes the inputs)."""
    d = config_to_dict(cfg)
    keep = {k: d[k] for k in PER_INPUT_STAGES + ("run", "domains", "skip", "dropped") if k in d}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _domain_classifier(rules_key: str):
    from dsllm.curation.domains import DomainClassifier, DomainsConfig

    rules, extra = json.loads(rules_key)
    return DomainClassifier.from_config(DomainsConfig(rules=rules, extra_rules=extra))


def build_stages(cfg: CurateConfig, reader, warc_file: str, id_base: str, crawl) -> list:
    """The stage objects after `read`, in order, for the stages that run."""
    from dsllm.curation.extract import HtmlExtractor
    from dsllm.curation.filters.c4 import C4Filter
    from dsllm.curation.filters.fineweb import FineWebFilter
    from dsllm.curation.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
    from dsllm.curation.filters.pii import PiiMasker
    from dsllm.curation.filters.urls import UrlFilter
    from dsllm.redact import redact

    classifier = _domain_classifier(json.dumps([cfg.domains.rules, cfg.domains.extra_rules]))
    factories = {
        "extract": lambda: HtmlExtractor(
            cfg.extract, crawl=crawl, warc_file=redact(warc_file), id_base=id_base, domain_of=classifier.domain
        ),
        "decontaminate": lambda: _decontaminator(cfg),
        "langid": lambda: _langid(cfg),
        "gopher_quality": lambda: GopherQualityFilter(cfg.gopher_quality),
        "gopher_repetition": lambda: GopherRepetitionFilter(cfg.gopher_repetition),
        "c4": lambda: C4Filter(cfg.c4),
        "fineweb": lambda: FineWebFilter(cfg.fineweb),
        "quality_model": lambda: _quality(cfg),
        "url_filter": lambda: UrlFilter(cfg.url_filter),
        "pii": lambda: PiiMasker(cfg.pii),
    }
    return [factories[name]() for name in cfg.stages if name in factories]


def warm_up(cfg: CurateConfig) -> None:
    """Load what the stages cache per process (lid.176, the decontamination index, the quality model,
    the domain rules) in this process, so workers forked from it share them instead of loading them."""
    import logging

    import dsllm.curation.dedup.run  # noqa: F401 - imported once here, not in every worker
    from dsllm.curation.shards import documents_to_batch
    from dsllm.curation.warc import WarcReader

    documents_to_batch([Document(id="", text="", url="", crawl="", warc_file="")])  # pyarrow imports pandas here

    try:
        for stage in build_stages(cfg, WarcReader(cfg.read), "", "", lambda: ""):
            if stage.name == "decontaminate":  # its lookup tables are built on the first match
                stage.index.match(["warm up " * 20])
    except Exception as exc:  # noqa: BLE001 - each task builds its stages again and reports the problem there
        logging.getLogger(__name__).debug("warm-up failed (each worker loads its models): %s", exc)


def _decontaminator(cfg):
    from dsllm.curation.decontam.stage import Decontaminator

    return Decontaminator(cfg.decontaminate)


def _langid(cfg):
    from dsllm.curation.langid import LanguageIdentifier

    return LanguageIdentifier(cfg.langid)


def _quality(cfg):
    from dsllm.curation.quality import QualityScorer

    return QualityScorer(cfg.quality_model)


def run_stages(
    cfg: CurateConfig,
    stream,
    warc_file: str,
    id_base: str,
    crawl_hint: str,
    counts: dict[str, StageCounts],
    dropped: DropRecorder | None = None,
    timer: ChainTimer | None = None,
) -> Iterator[Document]:
    """Chain reader and stages over a WARC stream; every stage counts into `counts[name]`, hands the
    drops `dropped` wants to it and, with a `timer`, adds its own CPU and wall time to `timer`."""
    from dsllm.curation.quality import heuristic_score
    from dsllm.curation.warc import WarcReader

    reader = WarcReader(cfg.read)
    crawl = lambda: reader.crawl or crawl_hint or cfg.run.crawl or "unknown"  # noqa: E731
    if dropped is not None:
        dropped.crawl = crawl
    wrap = timer.wrap if timer is not None else (lambda _name, items: items)
    docs = wrap("read", reader(stream, counts["read"], dropped))
    c0, w0 = time.process_time(), time.perf_counter()
    stages = build_stages(cfg, reader, warc_file, id_base, crawl)  # loads models (cached per process)
    if timer is not None:
        timer.setup = [time.process_time() - c0, time.perf_counter() - w0]
    for stage in stages:
        docs = wrap(stage.name, stage(docs, counts[stage.name], dropped))
    score_heuristically = not cfg.runs("quality_model")
    for doc in docs:
        if score_heuristically:
            doc.quality_score = heuristic_score(doc.signals)
        yield doc
    counts["read"].events["records"] = reader.records  # stages added their own events as they ended


def id_base_of(spec: InputSpec) -> str:
    """What ids hash besides the record id: the WARC's file name (stable across machines/mirrors)."""
    return spec.uri.rstrip("/").rsplit("/", 1)[-1]


def process_input(spec: InputSpec, cfg: CurateConfig, out: str) -> dict:
    """Run one input through the per-input stages; returns (and stores as done.json) its result.

    Skips the work if a completion marker for the same config exists."""
    from dsllm.curation.shards import ParquetShardWriter

    wdir = work_dir(out, spec)
    done_uri, docs_uri = storage.join(wdir, "done.json"), storage.join(wdir, "docs.parquet")
    drops_uri = dropped_uri(wdir)
    fingerprint = per_input_fingerprint(cfg)
    if storage.exists(done_uri):
        prev = storage.read_json(done_uri)
        if prev.get("fingerprint") == fingerprint and prev.get("status", "done") == "done":
            return dict(prev, skipped=True)  # an invalid or truncated input is read again
    counts = {name: StageCounts(name) for name in cfg.stages if name in PER_INPUT_STAGES}
    start = time.time()
    recorder = DropRecorder(cfg.dropped, spec.uri, id_base_of(spec)) if cfg.dropped.enabled else None
    timer, cpu0, wall0 = ChainTimer(), time.process_time(), time.perf_counter()
    with contextlib.ExitStack() as stack:
        stream = stack.enter_context(storage.open_read(spec.uri))
        writer = stack.enter_context(ParquetShardWriter(docs_uri, cfg.output.batch_rows, cfg.output.compression_level))
        if recorder is not None:  # written, like docs.parquet, only when the input completes
            recorder.writer = stack.enter_context(
                ParquetShardWriter(
                    drops_uri, cfg.output.batch_rows, cfg.output.compression_level, schema=DROPPED_SCHEMA
                )
            )
        crawls: Counter = Counter()
        for doc in run_stages(cfg, stream, spec.uri, id_base_of(spec), spec.crawl, counts, recorder, timer):
            crawls[doc.crawl] += 1
            writer.add(doc)
        if recorder is not None:
            recorder.flush()
    stage_times = timer.exclusive(list(counts), time.process_time() - cpu0, time.perf_counter() - wall0)
    if recorder is None and storage.exists(drops_uri):  # an earlier run's samples, now turned off
        storage.remove(drops_uri)
    status, error = input_status(counts["read"])
    result = {
        "uri": spec.uri,
        "key": spec.key,
        "status": status,
        "error": error,
        "crawl": crawls.most_common(1)[0][0] if crawls else (spec.crawl or cfg.run.crawl or "unknown"),
        "records": counts["read"].n_in,
        "documents": writer.rows,
        "docs": docs_uri,
        "counts": [c.to_json() for c in counts.values()],
        "dropped_rows": recorder.counts() if recorder is not None else {},
        "fingerprint": fingerprint,
        "seconds": round(time.time() - start, 3),
        # this input's own CPU and wall seconds per stage (`write`: scoring and the Parquet write)
        "stage_times": {k: [round(c, 4), round(w, 4)] for k, (c, w) in stage_times.items()},
    }
    for c in counts.values():
        if not c.balanced():
            raise AssertionError(f"stage {c.name} does not balance: {c.to_json()}")
    storage.write_json(done_uri, result)  # the completion marker, last
    return result


# read-stage reasons that say the file itself is broken, not that a record was unwanted
STREAM_REASONS = ("corrupt_gzip", "truncated_gzip", "invalid_warc", "read_error", "length_overrun")


def input_status(read: StageCounts) -> tuple[str, str | None]:
    """("done", None), ("invalid", why) for an input with no valid WARC record (an empty file, a text
    file named .warc.gz), or ("truncated", why) for one that ends inside a gzip member."""
    broken = {r: n for r, n in read.dropped.items() if r in STREAM_REASONS}
    valid = read.n_in - sum(broken.values())
    if valid <= 0:
        detail = ", ".join(f"{r} {n}" for r, n in sorted(broken.items())) or "the file holds no records"
        return "invalid", f"no valid WARC record ({detail})"
    if broken.get("truncated_gzip"):
        return "truncated", f"the file ends inside a gzip member after {valid} valid record(s)"
    return "done", None


def process_input_safely(task: tuple[InputSpec, CurateConfig, str]) -> dict:
    """`process_input` with retries; a failure after them becomes a failed result, not an exception,
    so the other inputs go on. Module-level so executors can pickle it."""
    spec, cfg, out = task
    attempts = cfg.run.retries + 1
    error = ""
    for attempt in range(attempts):
        try:
            return process_input(spec, cfg, out)
        except UserError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any failure of one input is recorded, the run goes on
            error = f"{type(exc).__name__}: {exc}"
        if attempt < attempts - 1:
            time.sleep(min(5.0, 0.5 * 2**attempt))
    return {
        "uri": spec.uri,
        "key": spec.key,
        "status": "failed",
        "error": error.splitlines()[0][:500],
        "crawl": spec.crawl,
        "records": 0,
        "documents": 0,
    }


def task_list(specs: list[InputSpec], cfg: CurateConfig, out: str) -> list[tuple]:
    return [(spec, cfg, out) for spec in specs]


def replace_skip(cfg: CurateConfig, skip: list[str]) -> CurateConfig:
    """The config with `--skip` stages added (validated by CurateConfig)."""
    try:
        return dataclasses.replace(cfg, skip=tuple(dict.fromkeys(cfg.skip + tuple(skip))))
    except ValueError as exc:
        raise UserError(f"--skip: {exc}") from None
