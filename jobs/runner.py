"""Ray execution of curation: an Executor over Ray tasks, and the curate run itself.

    executor = RayExecutor.start(address=None)        # in-process Ray using every core, or a cluster
    result = run_curate(specs, "s3://b/run1", cfg, executor, dedup_index=None)

The run: per-input tasks (read → … → pii, one task per input file, skipped when their completion
marker exists) → dedup (curation.dedup.run_dedup, through the same executor) → remix plan from the
natural domain counts → final shard tasks → manifest.json, stats.json, config.json → the dedup
index is committed → OUT/_work/complete.json. A failed input is recorded in the manifest and the
run ends non-zero naming it; its outputs are not published as complete, so a rerun retries only it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

from dsllm.curation.config import GLOBAL_STAGES, PER_INPUT_STAGES, CurateConfig
from dsllm.curation.executor import Executor
from dsllm.curation.sources import InputSpec
from dsllm.curation.stage import StageCounts, merge_counts
from dsllm import storage
from dsllm.config import config_to_dict


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at `address` ('auto', HOST:PORT; default $DSLLM_RAY_ADDRESS, which a
    submitted job sets), or start an in-process Ray on this machine's cores, bound to loopback."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("DSLLM_RAY_ADDRESS") or None
    if not address:
        # without this Ray resolves 127.0.0.1 to the host's interface address and listens there
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
        except ConnectionError as exc:
            from dsllm.errors import UserError

            raise UserError(f"--ray-address {address}: cannot connect to a Ray cluster ({exc})") from None
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)


def task_env() -> dict[str, str]:
    """The environment every task needs (S3 endpoint and credentials, dsllm settings).

    Workers of an existing cluster do not inherit the driver's environment; these values travel
    through the object store (not `runtime_env`, which the dashboard displays)."""
    from dsllm.jobs.submit import forwarded_env

    return forwarded_env()


def call_with_env(env: dict[str, str], fn, item):
    """Run `fn(item)` in a Ray worker after applying the driver's environment."""
    os.environ.update(env)
    return fn(item)


def require_shared_path(uri: str, flag: str) -> None:
    """On a multi-node cluster, refuse a node-local path: other nodes could not see it.

    Set DSLLM_SHARED_FS=1 when the local path is on a filesystem every node mounts."""
    import ray

    from dsllm import storage
    from dsllm.errors import UserError

    if storage.is_remote(uri) or os.environ.get("DSLLM_SHARED_FS"):
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        raise UserError(f"{flag} {uri}: a node-local path on a {len(nodes)}-node Ray cluster; use s3:// "
                        "(or a shared filesystem and DSLLM_SHARED_FS=1)")


class RayExecutor:
    """`map(fn, items)` as Ray tasks (results in item order, at most `max_in_flight` at once),
    progress on stderr. Ray starts on first use (in-process unless `address`), so input errors
    found before any work is spread show without starting Ray; a user error raised inside a task
    comes back as itself (one line, exit 2)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, task_cpus: float = 1.0,
                 max_in_flight: int | None = None, quiet: bool = False):
        self.address, self.num_cpus, self.task_cpus = address, num_cpus, task_cpus
        self.max_in_flight, self.quiet = max_in_flight, quiet
        self._started = False

    @classmethod
    def start(cls, address: str | None = None, quiet: bool = False) -> "RayExecutor":
        """Join `address` (or 'auto'), or start an in-process Ray with every core of this machine."""
        executor = cls(address, quiet=quiet)
        executor.ray
        return executor

    @property
    def ray(self):
        import ray

        if not ray.is_initialized():
            init_ray(self.address, self.num_cpus)
            self._started = True
        return ray

    @property
    def parallelism(self) -> int:
        cpus = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        return min(cpus, self.max_in_flight or cpus)

    def map(self, fn, items, label: str | None = None):
        """fn over items as Ray tasks, results in order; progress names the stage (`label`, else
        the function's module and name, e.g. `pack/pack_source`)."""
        ray, items = self.ray, list(items)
        label = label or f"{fn.__module__.rsplit('.', 1)[-1]}/{fn.__name__}"
        if not items:
            return []
        remote = ray.remote(num_cpus=self.task_cpus, max_retries=3)(call_with_env)
        env = ray.put(task_env())
        limit = self.max_in_flight or len(items)
        workers = min(limit, self.parallelism)
        results: list = [None] * len(items)
        index: dict = {}
        pending: list = []
        todo = iter(enumerate(items))
        from dsllm.progress import StageProgress

        progress = StageProgress(label, len(items), unit=f"tasks on {workers} worker(s)", quiet=self.quiet)
        while True:
            for i, item in itertools.islice(todo, max(0, limit - len(pending))):
                ref = remote.remote(env, fn, item)
                index[ref] = i
                pending.append(ref)
            if not pending:
                break
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results[index.pop(ref)] = _get(ray, ref)
                progress.advance()
        progress.close()
        return results

    def close(self) -> None:
        """Shut Ray down if this executor started it."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _get(ray, ref):
    """ray.get that re-raises a user error from a task as itself."""
    from dsllm.errors import UserError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise


def _map(executor: Executor, fn, items, label: str):
    if isinstance(executor, RayExecutor):
        return executor.map(fn, items, label=label)
    return executor.map(fn, items)


@dataclasses.dataclass
class CurateResult:
    inputs: list[dict]
    failed: list[dict]
    shards: list[dict]
    stats: dict
    skipped_complete: bool = False


def _complete_marker(out: str) -> str:
    return storage.join(out, "_work", "complete.json")


def run_curate(specs: list[InputSpec], out: str, cfg: CurateConfig, executor: Executor,
               dedup_index: str | None = None, log=print) -> CurateResult:
    """The whole curate run over `executor` (Ray in production, LocalExecutor in tests)."""
    from dsllm.curation.pipeline import per_input_fingerprint, process_input_safely, task_list

    marker = _complete_marker(out)
    signature = {"inputs": [s.uri for s in specs], "fingerprint": per_input_fingerprint(cfg),
                 "config": config_to_dict(cfg), "dedup_index": dedup_index}
    if storage.exists(marker) and storage.read_json(marker).get("signature") == signature:
        stats = storage.read_json(storage.join(out, "stats.json"))
        manifest = storage.read_json(storage.join(out, "manifest.json"))
        log(f"curate: {out} is already complete for these inputs and this config; nothing to do")
        return CurateResult(manifest["inputs"], [], manifest["shards"], stats, skipped_complete=True)

    results = _map(executor, process_input_safely, task_list(specs, cfg, out), "curate/inputs")
    done = [r for r in results if r["status"] == "done"]
    failed = [r for r in results if r["status"] != "done"]
    n_skipped = sum(1 for r in done if r.get("skipped"))
    log(f"curate: {len(done)} inputs done ({n_skipped} already finished earlier), {len(failed)} failed")

    stage_counts = merge_counts([[StageCounts.from_json(c) for c in r["counts"]] for r in done])
    files = [r["docs"] for r in done]
    removed = {f: [] for f in files}
    dumps: list = []
    outcome = None
    if any(cfg.runs(s) for s in ("exact_dedup", "minhash_dedup")) and files:
        outcome = _dedup(files, out, cfg, executor, dedup_index)
        removed = {f: sorted(outcome.removed(f)) for f in files}
        stage_counts += [c for c in outcome.counts if cfg.runs(c.name)]
        dumps = outcome.dumps

    batch_rows, level = cfg.output.batch_rows, cfg.output.compression_level
    natural = _merge(_map(executor, _natural_task, [(f, removed[f], batch_rows) for f in files], "curate/domains"))
    plan = None
    if cfg.runs("remix"):
        from dsllm.curation.remix import DomainRemixer

        plan = DomainRemixer(cfg.remix).plan(natural)
    shards = _write_shards(out, done, removed, plan, cfg, executor)
    if plan is not None:
        stage_counts.append(_remix_counts(shards))
    stats = _stats(stage_counts, shards, natural, dumps, cfg)
    _publish(out, cfg, results, shards, stats)
    if failed:  # the index is committed only by a complete run: a rerun must not dedup against itself
        return CurateResult(results, failed, shards, stats)
    if outcome is not None and dedup_index:
        outcome.commit_index()
    storage.write_json(marker, {"signature": signature})
    return CurateResult(results, failed, shards, stats)


def _dedup(files, out, cfg: CurateConfig, executor, index):
    from dsllm.curation.dedup import run_dedup

    dcfg = dataclasses.replace(cfg.dedup, exact=cfg.runs("exact_dedup"), minhash=cfg.runs("minhash_dedup"))
    return run_dedup(files, storage.join(out, "_work", "dedup"), dcfg, index, executor)


def _natural_task(task):
    from dsllm.curation.shards import natural_domains

    return natural_domains(task)


def _shard_task(task):
    from dsllm.curation.shards import write_final_shard

    return write_final_shard(task)


def _merge(dicts):
    from dsllm.curation.shards import merge_sums

    return merge_sums(dicts)


def _write_shards(out, done, removed, plan, cfg: CurateConfig, executor) -> list[dict]:
    from dsllm.curation.shards import plan_shards

    kept = [r["documents"] - len(removed[r["docs"]]) for r in done]
    groups = plan_shards(kept, cfg.output.shard_rows)
    tasks = [{"out": out, "index": i, "plan": plan, "batch_rows": cfg.output.batch_rows,
              "level": cfg.output.compression_level,
              "sources": [(done[j]["docs"], removed[done[j]["docs"]]) for j in group]}
             for i, group in enumerate(groups)]
    shards = _map(executor, _shard_task, tasks, "curate/shards")
    keep = {s["path"] for s in shards}
    for f in storage.list_files(storage.join(out, "shards")):  # shards of an earlier, larger plan
        rel = "shards/" + f.uri.replace("\\", "/").rsplit("/", 1)[-1]
        if rel not in keep and rel.endswith(".parquet"):
            storage.remove(f.uri)
    return shards


def _remix_counts(shards: list[dict]) -> StageCounts:
    total = StageCounts("remix")
    for s in shards:
        total = total + StageCounts.from_json(s["remix"])
    return total


def _stats(stage_counts: list[StageCounts], shards, natural, dumps, cfg: CurateConfig) -> dict:
    from dsllm.curation.shards import check_funnel, merge_sums

    rows = sum(s["rows"] for s in shards)
    order = {name: i for i, name in enumerate(PER_INPUT_STAGES + GLOBAL_STAGES)}
    stage_counts = sorted(stage_counts, key=lambda c: order[c.name])
    check_funnel(stage_counts, rows)
    languages = merge_sums(s["languages"] for s in shards)
    remixed = merge_sums(s["domains"] for s in shards)
    return {"stages": [c.to_json() for c in stage_counts],
            "skipped": [s for s in cfg.skip],
            "totals": {"documents": rows, "chars": sum(v["chars"] for v in languages.values()),
                       "bytes": sum(s["text_bytes"] for s in shards)},
            "languages": languages,
            "domains": {"natural": natural, "remixed": remixed},
            "dedup": {"dumps": dumps}}


def _publish(out, cfg: CurateConfig, results, shards, stats) -> None:
    from dsllm.curation.shards import now_iso, versions

    inputs = [{"uri": r["uri"], "crawl": r.get("crawl", ""), "status": r["status"], "error": r.get("error"),
               "records": r.get("records", 0), "documents": r.get("documents", 0)} for r in results]
    config = config_to_dict(cfg)
    manifest = {"kind": "curated", "created": now_iso(), "versions": versions(),
                "shards": [{k: s[k] for k in ("path", "rows", "bytes", "sha256")} for s in shards],
                "inputs": inputs, "config": config}
    storage.write_json(storage.join(out, "config.json"), config)
    storage.write_json(storage.join(out, "stats.json"), stats)
    storage.write_json(storage.join(out, "manifest.json"), manifest)
