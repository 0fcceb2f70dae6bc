"""Small frozen dataclass configs loaded from TOML and overridden with `--set section.key=value`.

Each component owns its config dataclass. A run's resolved config is written next to its output
with `config_to_dict` so the run can be reproduced.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dsllm.errors import UserError

T = TypeVar("T")

# configs/ at the top of a source tree; dsllm/configs/ inside an installed wheel
_PKG = Path(__file__).resolve().parent
CONFIG_DIR = _PKG / "configs" if (_PKG / "configs").is_dir() else _PKG.parent / "configs"


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML literal (numbers, booleans, lists, quoted strings),
    falling back to the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply `a.b.c=value` overrides to a nested dict (a copy is returned)."""
    data = json.loads(json.dumps(data))
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set dedup.threshold=0.8")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part!r} is a value, not a section")
        node[parts[-1]] = parse_value(value.strip())
    return data


def load_toml(path: str | Path) -> dict:
    """Read a TOML file (local path, or a name under configs/ such as `curate.toml`)."""
    p = Path(path)
    if not p.exists() and (CONFIG_DIR / p).exists():
        p = CONFIG_DIR / p
    if not p.exists():
        raise UserError(f"config {path}: no such file")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config {path}: malformed TOML: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config {where}: expected a section, got {value!r}")
        return from_dict(tp, value, where)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config {where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, f"{where}[]") for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config {where}: expected a table, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is Any:
        return value
    if tp in (int, float, bool, str):
        raise UserError(f"config {where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build a (nested) frozen dataclass from a dict, rejecting unknown keys with a clear error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise UserError(f"config {where or cls.__name__}: unknown key(s) {unknown}; known: {known}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise UserError(f"config {where or cls.__name__}: {exc}") from None


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None, default: str | None = None
) -> T:
    """Resolve a config: dataclass defaults ← TOML file (or the shipped default) ← `--set` overrides."""
    data: dict = {}
    if path is not None:
        data = load_toml(path)
    elif default is not None and (CONFIG_DIR / default).exists():
        data = load_toml(CONFIG_DIR / default)
    return from_dict(cls, apply_overrides(data, overrides))


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a dataclass config (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))
