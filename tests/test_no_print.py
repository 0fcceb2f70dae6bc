"""No print() in the package: commands write through dsllm.console, library code logs (ruff's T20
rule says the same in `ruff check`; this test holds it for the plain test command too)."""

from __future__ import annotations

import ast
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project depends on tomli below 3.11
    import tomli as tomllib

from tests.conftest import ROOT


def test_no_print_calls_in_the_package():
    package_dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    found = []
    for folder in sorted(set(package_dirs.values())):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("print", "pprint")
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(package_dirs) >= 6 and not found, found
