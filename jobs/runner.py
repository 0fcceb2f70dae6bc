"""Ray for the commands: joining or starting Ray, and the Ray implementation of curation's Executor.

    executor = RayExecutor.start(address=None)        # in-process Ray using every core, or a cluster
    result = dsllm.curation.run.run_curate(specs, "s3://b/run1", cfg, executor)

`RayExecutor.map(fn, items, label)` runs one Ray task per item with the driver's environment
(`task_env`); the flows themselves (curation.run, tokenizer.pack) know nothing of Ray.
"""

from __future__ import annotations

import itertools
import os


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to the Ray cluster at `address` ('auto', HOST:PORT; default $DSLLM_RAY_ADDRESS, which a
    submitted job sets), or start an in-process Ray on this machine's cores, bound to loopback."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("DSLLM_RAY_ADDRESS") or None
    if not address:
        from dsllm.jobs.local_ray import prepare_local_ray

        prepare_local_ray()  # loopback only; Ray's own token auth stays on (never disabled here)
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
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
        from dsllm.jobs.reaper import start_reaper

        start_reaper()  # even a `kill -9` of this command leaves no Ray process behind
    from dsllm import interrupt

    interrupt.reinstall()  # ray.init replaced our SIGTERM handler with one that exits at once


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
        raise UserError(
            f"{flag} {uri}: a node-local path on a {len(nodes)}-node Ray cluster; use s3:// "
            "(or a shared filesystem and DSLLM_SHARED_FS=1)"
        )


class RayExecutor:
    """`map(fn, items)` as Ray tasks (results in item order, at most `max_in_flight` at once),
    progress on stderr. Ray starts on first use (in-process unless `address`), so input errors
    found before any work is spread show without starting Ray; a user error raised inside a task
    comes back as itself (one line, exit 2)."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        task_cpus: float = 1.0,
        max_in_flight: int | None = None,
        quiet: bool = False,
    ):
        self.address, self.num_cpus, self.task_cpus = address, num_cpus, task_cpus
        self.max_in_flight, self.quiet = max_in_flight, quiet
        self._started = False

    @classmethod
    def start(cls, address: str | None = None, quiet: bool = False) -> RayExecutor:
        """Join `address` (or 'auto'), or start an in-process Ray with every core of this machine."""
        executor = cls(address, quiet=quiet)
        _ = executor.ray  # starts or joins Ray now
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
