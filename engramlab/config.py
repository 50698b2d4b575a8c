"""Frozen-dataclass configs: building them from dicts, dotted overrides, TOML presets.

Every config in engramlab is a frozen dataclass. ``from_dict`` builds one from plain data and
names any unknown key with its full dotted path; ``apply_overrides`` applies ``--set a.b=value``
strings; ``load_preset`` reads a named TOML preset shipped in ``engramlab/configs``.

Example::

    cfg = from_dict(TrainConfig, {"steps": 10, "lr": 1e-3})
    raw = apply_overrides(to_dict(cfg), ["lr=3e-4"])
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from engramlab.errors import BadConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

T = TypeVar("T")


def to_dict(cfg: Any) -> Any:
    """A dataclass (possibly nested) as plain JSON-able data."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples, ints to floats."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise BadConfig(f"config key '{path}' must be a table, got {value!r}")
        return from_dict(tp, value, _path=path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except BadConfig as e:
                errors.append(str(e))
        raise BadConfig(f"config key '{path}' has value {value!r}, which fits none of {tp}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise BadConfig(f"config key '{path}' must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise BadConfig(f"config key '{path}' must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise BadConfig(f"config key '{path}' must have {len(args)} entries, got {len(value)}")
            return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise BadConfig(f"config key '{path}' must be a table, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadConfig(f"config key '{path}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadConfig(f"config key '{path}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise BadConfig(f"config key '{path}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise BadConfig(f"config key '{path}' must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], _path: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``; unknown keys and bad types raise BadConfig."""
    if not isinstance(data, dict):
        raise BadConfig(f"config '{_path or cls.__name__}' must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{_path}." if _path else ""
        raise BadConfig(
            f"unknown config key '{where}{unknown[0]}' for {cls.__name__}; known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{_path}.{name}" if _path else name)
    try:
        return cls(**kwargs)
    except BadConfig:
        raise
    except (TypeError, ValueError) as e:
        raise BadConfig(f"invalid config for {cls.__name__}: {e}") from e


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON/TOML-like literals (1, 2.5, true, [1,2], "s") else the raw string."""
    lowered = text.strip()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(lowered)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep brackets
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to nested plain data (a copy is returned)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise BadConfig(f"override '{item}' must look like key=value (e.g. train.steps=100)")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], dict):
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise BadConfig(f"override '{key}': '{part}' is not a table")
            else:
                node = node[part]
        node[parts[-1]] = parse_value(value)
    return data


def preset_names() -> list[str]:
    """Names of the TOML presets shipped in ``engramlab/configs``."""
    root = resources.files("engramlab") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A preset by name (``ebmm-omniglot-conv``) or a path to a TOML file, as plain data."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text = path.read_text()
    else:
        resource = resources.files("engramlab") / "configs" / f"{name_or_path}.toml"
        if not resource.is_file():
            raise BadConfig(f"unknown preset '{name_or_path}'; known presets: {', '.join(preset_names()) or 'none'}")
        text = resource.read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadConfig(f"preset '{name_or_path}' is not valid TOML: {e}") from e
