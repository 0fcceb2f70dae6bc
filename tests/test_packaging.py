"""Packaging: one namespace (`dsllm.*`), a wheel that carries configs and lid.176, nothing top-level
named `trainer`, `tokenizer`, `jobs` or `curation`, and coexistence with packages of those names."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = {
    "curation": "dsllm.curation",
    "tokenizer": "dsllm.tokenizer",
    "trainer": "dsllm.trainer",
    "jobs": "dsllm.jobs",
    "dsllm": "dsllm",
}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_source_package_is_listed_under_the_dsllm_namespace():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = set()
    for folder, name in SUBPACKAGES.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((name, *rel)))
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert all(p == "dsllm" or p.startswith("dsllm.") for p in listed)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("dsllm-*.whl")
    return whl


def test_wheel_has_one_namespace_and_carries_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {"trainer", "tokenizer", "jobs", "curation", "configs", "tests", "bench"}.isdisjoint(tops), tops
    assert "dsllm/curation/models/lid.176.ftz" in names
    assert "dsllm/curation/models/NOTICE.md" in names
    assert "dsllm/configs/curate.toml" in names and "dsllm/configs/train-tiny.toml" in names
    assert "dsllm/trainer/model.py" in names and "dsllm/jobs/cli.py" in names


def test_wheel_install_works_beside_packages_named_trainer_and_tokenizer(wheel, tmp_path):
    """Installed from the wheel (not the checkout), dsllm runs its CLI, finds its configs and lid.176;
    `trainer` and `tokenizer` stay whatever else the environment has (here: stand-ins for Coqui's
    `trainer` and the `tokenizer` package on PyPI)."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    others = tmp_path / "others"
    for name in ("trainer", "tokenizer"):
        (others / name).mkdir(parents=True)
        (others / name / "__init__.py").write_text(f"WHO = 'the other {name}'\n")
    code = (
        "import dsllm, dsllm.trainer.model, dsllm.jobs.cli, dsllm.config as c, trainer, tokenizer\n"
        "from dsllm import fasttext_compat as f\n"
        "print(dsllm.trainer.model.__file__); print(c.CONFIG_DIR); print(f.lid176_path())\n"
        "print(trainer.WHO); print(tokenizer.WHO)\n"
        "lid = f.load_model(f.lid176_path())\n"
        "print(lid.predict('the quick brown fox jumps over the lazy dog')[0][0])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(others)])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model_file, config_dir, lid, who_trainer, who_tok, label = proc.stdout.split("\n")[:6]
    for p in (model_file, config_dir, lid):
        assert p.startswith(str(target)), p
    assert (who_trainer, who_tok) == ("the other trainer", "the other tokenizer")
    assert label == "__label__en"
    # the console script's entry point resolves inside the wheel
    proc = subprocess.run(
        [sys.executable, "-c", "from dsllm.jobs.cli import main; main(['plan', '--compute', '1e20'])"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_top_level_modules_of_ours_outside_the_checkout(tmp_path):
    """With the (editable) install of this checkout, `import trainer` from elsewhere finds nothing of ours."""
    for name in ("trainer", "tokenizer", "jobs", "curation"):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import importlib.util as u; s = u.find_spec({name!r}); print(s.origin if s else '')",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        )
        assert proc.returncode == 0, proc.stderr
        assert not proc.stdout.strip().startswith(str(ROOT)), f"`import {name}` finds {proc.stdout.strip()}"
