"""Strict YAML configuration: frozen dataclasses, ranges declared beside the fields.

A config class is a frozen dataclass whose fields are declared with `setting(...)`, which records
the allowed range or choices. `load_config` reads YAML, applies `--set a.b=c` overrides and builds
the dataclass; an unknown key, a wrong type or a value out of range raises `ConfigError` naming the
dotted key and what is allowed. `save_resolved` writes the final values beside an output.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from edge_ser.atomic_write import write_text_atomic

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of its allowed range."""


def setting(default: Any, *, min: float | None = None, max: float | None = None,
            choices: tuple | None = None, help: str = "") -> Any:
    """Declare a config field with its default and what values it allows."""
    meta = {"min": min, "max": max, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults: config objects are immutable")
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type) -> Any:
    """Declare a nested config section whose defaults come from `cls()`."""
    return dataclasses.field(default_factory=cls)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build `cls` from a plain mapping, checking keys, types and ranges."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f" in '{prefix}'" if prefix else ""
        raise ConfigError(f"unknown key '{_join(prefix, unknown[0])}'{where}; "
                          f"allowed keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        key = _join(prefix, name)
        values[name] = _check(key, hints[name], value, fields[name].metadata)
    return cls(**values)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _check(key: str, hint: Any, value: Any, meta: typing.Mapping[str, Any]) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check(key, inner, value, meta)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        return tuple(_check(f"{key}[{i}]", args[0], v, meta) for i, v in enumerate(value))
    value = _coerce(key, hint, value)
    _check_range(key, value, meta)
    return value


def _coerce(key: str, hint: Any, value: Any) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"'{key}': unsupported config type {hint!r}")


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"'{key}' = {value!r} is not allowed; choose one of "
                          f"{', '.join(map(str, choices))}")
    allowed = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every comparison
        raise ConfigError(f"'{key}' = {value!r} is not a finite number; allowed: a finite "
                          f"number in {allowed}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"'{key}' = {value!r} is out of range; allowed {allowed}")


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides (values parsed as YAML) to a nested mapping, returning a copy."""
    result = _deep_copy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set has an empty key part: {item!r}")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def load_config(cls: type[T], path: str | os.PathLike | None = None,
                overrides: typing.Iterable[str] = ()) -> T:
    """Load `cls` from a YAML file (or its defaults), then apply `--set` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
    try:
        return from_dict(cls, apply_overrides(data, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested mapping (tuples as lists) for YAML and JSON."""
    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(dataclasses.asdict(config))


def save_resolved(config: Any, out_dir: str | os.PathLike,
                  name: str = "config.resolved.yaml") -> Path:
    """Write the resolved config beside an output, atomically; returns the file path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    write_text_atomic(target, yaml.safe_dump(to_dict(config), sort_keys=False))
    return target
