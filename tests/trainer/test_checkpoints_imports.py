"""trainer/checkpoints/ is one component without import circles (module-level or inside functions)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import dsllm.trainer.checkpoints as package

PREFIX = "dsllm.trainer.checkpoints"


def _imports(path: Path) -> set[str]:
    """The modules of this package that `path` imports anywhere (also lazily, inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            if node.module == PREFIX:
                out.update(f"{PREFIX}.{a.name}" for a in node.names)
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith(PREFIX + "."))
    return out


def test_checkpoint_modules_import_each_other_without_a_circle():
    folder = Path(package.__file__).parent
    graph = {f"{PREFIX}.{p.stem}": _imports(p) - {f"{PREFIX}.{p.stem}"} for p in folder.glob("*.py")}
    assert {
        f"{PREFIX}.{m}" for m in ("hf", "export", "stream", "remote", "ranged", "formats", "native", "mirror")
    } <= set(graph)
    assert f"{PREFIX}.stream" in graph[f"{PREFIX}.hf"]  # the edge that used to close a circle
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on any circle
    # one ranged-download implementation: the cache download and the streaming import both use it
    assert f"{PREFIX}.ranged" in graph[f"{PREFIX}.remote"] and f"{PREFIX}.ranged" in graph[f"{PREFIX}.stream"]
