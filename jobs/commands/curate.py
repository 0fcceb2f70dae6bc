"""WARC → extracted, language- and quality-filtered, deduplicated, domain-labelled Parquet shards.

Every surviving document is written once, labelled with its `domain` (URL rules: configs/domains.toml);
domain mixtures are planned at training time with `dsllm mix` over packed data.

Inputs: local files, directories and globs, s3:// prefixes, https:// URLs, and Common Crawl crawls
as cc:CC-MAIN-YYYY-WW (the WARCs of the crawl's warc.paths.gz under --cc-base). Rerunning the same
command on the same OUT resumes: finished inputs are skipped, failed ones are retried.

Tasks run on worker processes forked from this one (`--executor local`, the default on one machine:
models loaded once before the fork, no Ray daemons) or on Ray (`--executor ray`, or any run with
--ray-address / $DSLLM_RAY_ADDRESS). stats.json's `timing` says where the time went.
"""

from __future__ import annotations

from dsllm import console
from dsllm.jobs.commands.common import add_config_flags, add_ray_flags, add_requester_pays


def add_arguments(p) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="WARC/WET files, directories, globs, s3://, https://, cc:CRAWL"
    )
    p.add_argument("--output", "-o", required=True, metavar="OUT", help="output directory (local or s3://)")
    add_config_flags(p)
    p.add_argument(
        "--dedup-index",
        metavar="IDX",
        default=None,
        help="cross-dump dedup index (local or s3://): dedup against earlier dumps and add this one",
    )
    p.add_argument(
        "--skip",
        metavar="STAGE[,STAGE]",
        default="",
        help="stages not to run, named as in stats.json (e.g. minhash_dedup,pii)",
    )
    p.add_argument(
        "--accept-partial",
        action="store_true",
        help="keep the readable records of an input that ends inside a gzip member (status "
        "`truncated` in manifest.json) instead of failing the run",
    )
    p.add_argument(
        "--keep-dropped",
        metavar="N|all",
        default=None,
        help="dropped documents kept in OUT/dropped/ with stage, reason and deciding value: the first N "
        "per stage and reason (default 5, dropped.keep), or all of them for audits; shown by "
        "`dsllm stats OUT --dropped REASON`",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="take only the first N WARCs")
    p.add_argument(
        "--cc-base",
        default=None,
        metavar="URL",
        help="where cc:CRAWL is read from (default $DSLLM_CC_BASE or https://data.commoncrawl.org/)",
    )
    add_ray_flags(p)
    p.add_argument(
        "--executor",
        choices=("auto", "ray", "local"),
        default="auto",
        help="where tasks run: `ray` (an in-process Ray, or the cluster at --ray-address), `local` (worker "
        "processes forked from this one on this machine: no Ray daemons, models loaded once); `auto` "
        "(default): ray when --ray-address or $DSLLM_RAY_ADDRESS is set or Ray already runs in this process, "
        "else local",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes of --executor local (default: all cores)",
    )
    add_requester_pays(p)


def run(args) -> int:
    import os
    import sys

    from dsllm import storage
    from dsllm.curation.config import load_curate_config
    from dsllm.curation.pipeline import replace_skip
    from dsllm.curation.run import run_curate
    from dsllm.curation.sources import resolve_inputs
    from dsllm.errors import UserError
    from dsllm.jobs.runner import RayExecutor, require_shared_path

    storage.set_requester_pays(args.requester_pays)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be >= 1")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be >= 1")
    kind = args.executor
    if kind == "auto":  # Ray when asked for or already running in this process (never fork a Ray driver)
        ray_running = "ray" in sys.modules and sys.modules["ray"].is_initialized()
        kind = "ray" if (args.ray_address or os.environ.get("DSLLM_RAY_ADDRESS") or ray_running) else "local"
    if kind == "local" and args.ray_address:
        raise UserError("--executor local runs on this machine only; drop --ray-address or use --executor ray")
    if kind == "ray" and args.workers is not None:
        raise UserError("--workers sets the processes of --executor local; Ray uses the cluster's CPUs")
    if storage.is_http(args.output):
        raise UserError(f"--output {args.output}: cannot write to an HTTP URL; use a local path or s3://")
    from dsllm.curation.dropped import parse_keep_dropped

    overrides = list(args.overrides) + (["run.accept_partial=true"] if args.accept_partial else [])
    if args.keep_dropped is not None:
        overrides += parse_keep_dropped(args.keep_dropped)
    cfg = load_curate_config(args.config, overrides)
    cfg = replace_skip(cfg, [s.strip() for s in args.skip.split(",") if s.strip()])
    specs = resolve_inputs(args.inputs, args.cc_base, args.limit)
    console.note(f"curate: {len(specs)} input file(s) → {args.output}; stages: {', '.join(cfg.stages)}")
    import time

    cpu0, wall0 = time.process_time(), time.perf_counter()
    if kind == "ray":
        executor = RayExecutor.start(args.ray_address)
        for uri in [args.output] + ([args.dedup_index] if args.dedup_index else []) + [spec.uri for spec in specs]:
            require_shared_path(uri, "--output" if uri == args.output else "input")
    else:
        from dsllm.curation.executor import ProcessExecutor
        from dsllm.curation.pipeline import warm_up

        warm_up(cfg)  # models loaded once here, shared by the forked workers
        executor = ProcessExecutor(args.workers)
    startup = {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0}
    try:
        result = run_curate(specs, args.output, cfg, executor, args.dedup_index, log=console.note, startup=startup)
    finally:
        if kind == "local":
            executor.close()
    totals = result.stats["totals"]
    console.out(
        f"curate: {totals['documents']} documents, {totals['chars']} characters in "
        f"{len(result.shards)} shard(s) at {args.output}"
    )
    if result.failed:
        for f in result.failed:
            console.note(f"curate: input {f['status']}: {f['uri']}: {f['error']}")
        names = ", ".join(f"{f['uri']} ({f['status']})" for f in result.failed)
        hint = (
            "; --accept-partial keeps a truncated input's readable records"
            if any(f["status"] == "truncated" for f in result.failed)
            else ""
        )
        console.error(
            "curate",
            f"{len(result.failed)} input(s) failed: {names}; the others are kept; "
            f"rerun the same command to retry only those{hint}",
        )
        return 1
    return 0
