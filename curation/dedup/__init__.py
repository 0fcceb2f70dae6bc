"""Exact and MinHash near-duplicate removal, within a dump and against an index of earlier dumps.

outcome = run_dedup(files, workdir, DedupConfig(), index="s3://bucket/dedup-index", executor=ex)
drop = outcome.removed(files[0])        # ids to drop from that file
outcome.counts                          # [StageCounts("exact_dedup"), StageCounts("minhash_dedup")]
outcome.dumps                           # stats.json "dedup.dumps" entries
outcome.commit_index()                  # after the shards are published
"""

from dsllm.curation.dedup.config import DedupConfig
from dsllm.curation.dedup.run import DedupOutcome, run_dedup

__all__ = ["DedupConfig", "DedupOutcome", "run_dedup"]
