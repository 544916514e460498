"""Loading the config: YAML files and `--set a.b=v` overrides into the frozen dataclasses of
rewardloop.config, with errors that name the key (split out so each file reads in one sitting).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from rewardloop.errors import ConfigError

from .base import _require
from .run import RunConfig


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the field's type, or say which key is wrong."""
    if dataclasses.is_dataclass(typ):
        _require(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        return _build(typ, value, prefix=key)
    origin = typing.get_origin(typ) or typ
    if origin is bool:
        if isinstance(value, bool):
            return value
        _require(
            isinstance(value, str) and value.lower() in ("true", "false"),
            key,
            f"must be true or false, got {value!r}",
        )
        return value.lower() == "true"
    if origin is int:
        _require(
            isinstance(value, int) and not isinstance(value, bool),
            key,
            f"must be an integer, got {value!r}",
        )
        return value
    if origin is float:
        _require(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            key,
            f"must be a number, got {value!r}",
        )
        return float(value)
    if origin is str:
        _require(
            isinstance(value, (str, int, float)) and not isinstance(value, bool),
            key,
            f"must be a string, got {value!r}",
        )
        return str(value)
    if origin is dict:
        _require(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        return dict(value)
    if origin in (tuple, list, types.GenericAlias):
        _require(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        return tuple(value)
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    types_ = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise ConfigError(f"{key}: unknown key; known keys here: {', '.join(sorted(names))}")
        kwargs[name] = _coerce(value, types_[name], key)
    return cls(**kwargs)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        _require(isinstance(node, dict), dotted, f"{part} is not a section")
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`learner.lr=1e-5` -> ("learner.lr", 1e-5); values are parsed as YAML scalars."""
    key, sep, raw = text.partition("=")
    _require(bool(sep) and bool(key.strip()), text, "overrides look like section.key=value")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return key.strip(), value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Read YAML (optional), apply `--set` overrides, validate, return the frozen config."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"--config: file {p} does not exist")
        loaded = yaml.safe_load(p.read_text()) or {}
        _require(isinstance(loaded, dict), str(p), "the config file must be a YAML mapping")
        data = loaded
    for text in overrides:
        key, value = parse_override(text)
        _set_path(data, key, value)
    try:
        return _build(RunConfig, data)
    except TypeError as exc:  # a field missing a value cannot happen (all have defaults)
        raise ConfigError(str(exc)) from exc


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config (for summary.json and for shipping to Ray actors)."""
    return dataclasses.asdict(cfg)


def replace(cfg: RunConfig, **sections: Any) -> RunConfig:
    """`replace(cfg, learner={"lr": 1e-3})`: a copy with some keys of some sections changed."""
    changed = {}
    for name, value in sections.items():
        current = getattr(cfg, name)
        changed[name] = dataclasses.replace(current, **value) if isinstance(value, dict) else value
    return dataclasses.replace(cfg, **changed)
