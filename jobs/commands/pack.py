"""Tokenize curated shards and pack fixed-length sequences joined with EOS.

    dsllm pack OUT/ --tokenizer TOK/ --output PACKED/ [--seq-len 4096]

SHARDS is a curated output directory (its manifest's shards), a directory / S3 prefix / glob of
Parquet files with a `text` column, or several of those. --tokenizer is a directory holding a
Hugging Face `tokenizer.json` (ours, or a published checkpoint's folder). Each shard is packed by
a Ray task (in-process Ray unless --ray-address); the output is the same bytes at any worker
count, and rerunning a killed run resumes it.
"""

from __future__ import annotations

import itertools
import sys
import time

from jobs.commands.common import add_config_flags, add_ray_flags


def add_arguments(p) -> None:
    p.add_argument("shards", nargs="+", metavar="SHARDS", help="curated output, directory, prefix or glob of shards")
    p.add_argument("--tokenizer", required=True, metavar="DIR", help="directory with tokenizer.json (local or s3://)")
    p.add_argument("--output", required=True, metavar="PACKED", help="output directory (local or s3://)")
    p.add_argument("--seq-len", type=int, default=None, metavar="N", help="tokens per row (default 4096)")
    p.add_argument("--bos", choices=["eos", "document"], default=None,
                   help="eos: documents joined by EOS only, as DeepSeek (default); document: also BOS before each")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="in-process Ray CPUs (default: all cores)")
    add_config_flags(p)
    add_ray_flags(p)


class RayMapExecutor:
    """`map(fn, items)` as Ray tasks (1 CPU each, at most `max_in_flight` at once); results in item
    order; progress on stderr. Ray starts on the first `map` (in-process unless `address`), so
    input errors found before any work is spread show without starting Ray."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, max_in_flight: int | None = None):
        self.address, self.num_cpus, self.max_in_flight = address, num_cpus, max_in_flight
        self._started = False

    @property
    def parallelism(self) -> int:
        ray = self._ray()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return min(cpus, self.max_in_flight or cpus)

    def _ray(self):
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            self._started = True
        return ray

    def map(self, fn, items):
        ray = self._ray()
        items = list(items)
        remote = ray.remote(num_cpus=1, max_retries=2)(fn)
        limit = self.parallelism
        results: list = [None] * len(items)
        index, pending, done, t0 = {}, [], 0, time.time()
        todo = iter(enumerate(items))
        while True:
            for i, item in itertools.islice(todo, max(0, limit - len(pending))):
                ref = remote.remote(item)
                index[ref] = i
                pending.append(ref)
            if not pending:
                break
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results[index.pop(ref)] = _unwrap(ray, ref)
                done += 1
            print(f"\r  shards {done}/{len(items)} on {limit} worker(s)  {time.time() - t0:.0f}s",
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        return results

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _unwrap(ray, ref):
    """ray.get that re-raises a user error from a task as itself (one line, exit 2)."""
    from dsllm.errors import UserError

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        raise


def run(args) -> int:
    import os

    from dsllm import storage
    from dsllm.config import load_config
    from dsllm.errors import UserError
    from tokenizer.pack import PackConfig, pack

    overrides = list(args.overrides)
    if args.seq_len is not None:
        overrides.append(f"seq_len={args.seq_len}")
    if args.bos is not None:
        overrides.append(f'bos="{args.bos}"')
    cfg = load_config(PackConfig, args.config, overrides)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    executor = RayMapExecutor(args.ray_address, args.workers)
    try:
        if args.ray_address and storage.local_dir(args.output):
            nodes = [n for n in executor._ray().nodes() if n.get("Alive")]
            if len(nodes) > 1:
                raise UserError(f"{args.output}: a local path cannot collect output from {len(nodes)} "
                                "cluster nodes; use s3://")
        pack(args.shards, args.tokenizer, args.output, cfg, executor, log=lambda msg: print(msg, file=sys.stderr))
    finally:
        executor.close()
    return 0
