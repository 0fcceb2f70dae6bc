"""What a submitted Ray job runs: `python -m jobs.entrypoint JOB ARGS...` on the cluster.

Reads (and deletes) the forwarded environment file, then runs the CLI command against the cluster
it runs on (`--ray-address auto` for the stages that fan out on Ray).
"""

from __future__ import annotations

import json
import os
import sys

from dsllm import console
from dsllm.jobs.submit import SECRET_FILE

RAY_STAGES = ("curate", "pack", "tokenizer", "train")


def main(argv: list[str]) -> int:
    if os.path.exists(SECRET_FILE):
        with open(SECRET_FILE) as f:
            os.environ.update(json.load(f))
        os.remove(SECRET_FILE)
    os.environ.setdefault("DSLLM_RAY_ADDRESS", "auto")
    from dsllm.jobs.cli import main as cli_main

    console.out(f"dsllm job: {' '.join(argv[:1])} on the Ray cluster")
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
