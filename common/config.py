"""Strict YAML -> dataclass configuration.

Every config in the project (table, demo, hardware profiles, training presets) is a dataclass tree.
`load_config(path, Cls)` reads YAML with safe_load and builds the tree, rejecting unknown keys and
wrong types with a message that names the file and the dotted key, because a kiosk technician
editing YAML by hand must be told exactly which line to fix.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from common.atomic import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration file or dict does not match its schema."""

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key = source, key
        where = f"{source}: " if source else ""
        at = f"key '{key}': " if key else ""
        super().__init__(f"{where}{at}{message}")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(source, key, f"expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(source, key, f"expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list ({_type_name(tp)}), got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(source, key, f"expected {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, f"expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(kt, k, source, key): _convert(vt, v, source, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"expected a path string, got {value!r}")
        return Path(value)
    raise ConfigError(source, key, f"unsupported schema type {_type_name(tp)}")


def from_dict(cls: type[T], data: Any, source: str = "", prefix: str = "") -> T:
    """Build dataclass `cls` from a plain dict; missing keys take the dataclass defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, prefix, f"expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        k = unknown[0]
        raise ConfigError(source, f"{prefix}.{k}" if prefix else str(k),
                          f"unknown key (allowed here: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], source, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(source, key, "required key is missing")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ range checks
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(source, prefix, str(e)) from e
    return obj


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a YAML file into dataclass `cls`; every problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "", f"not valid YAML: {e}") from e
    return from_dict(cls, data, str(path))


def to_dict(obj: Any) -> Any:
    """Dataclass tree -> plain YAML-safe structures (tuples as lists, Paths as strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_config(path: str | Path, obj: Any) -> None:
    """Write a dataclass tree as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))
