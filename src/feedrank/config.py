"""Frozen-dataclass configuration loaded from TOML plus `--set key=value` overrides.

    cfg = load_config(SimConfig, Path("sim.toml"), ["num_days=3", "slate_size=20"])

Values are coerced to the field's annotated type (int, float, bool, str, tuples of those, and
nested config dataclasses addressed with dots: `--set optimizer.lr=0.01`); an unknown key or a
value that does not parse raises ConfigError naming both.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from feedrank.errors import ConfigError, SourceNotFoundError

C = TypeVar("C")


def load_config(
    cls: type[C], path: Path | None = None, overrides: list[str] | None = None, *, base: C | None = None
) -> C:
    """Build `cls` from `base` (or its defaults), then the TOML file, then the overrides (last wins)."""
    values: dict[str, Any] = {}
    if path is not None:
        if not path.is_file():
            raise SourceNotFoundError(path, "config file")
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    source = str(path) if path else "defaults"
    # Merged into the class's own defaults, not built by from_dict: a nested table that names a few
    # fields ([train] epochs = 2) must keep the others' class-level defaults (the two-tower's
    # RETRIEVAL_TRAINING), where a fresh TrainConfig(epochs=2) would take the generic ones.
    config = merge(cls() if base is None else base, values, source=source)
    return apply_overrides(config, overrides or [])


def merge(base: C, values: dict[str, Any], *, source: str = "config") -> C:
    """`base` with the fields named in `values` replaced; nested config tables merge field by field."""
    if not dataclasses.is_dataclass(base) or isinstance(base, type):
        raise TypeError(f"{base!r} is not a dataclass instance")
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown key {key!r} for {type(base).__name__}; known: {known}")
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            changes[key] = merge(current, value, source=f"{source}: {key}")
        else:
            changes[key] = _coerce(hints[key], value, f"{source}: {key}")
    try:
        return dataclasses.replace(base, **changes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def from_dict(cls: type[C], values: dict[str, Any], *, source: str = "config") -> C:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key {key!r} for {cls.__name__}; known: {', '.join(sorted(names))}"
            )
        kwargs[key] = _coerce(hints[key], value, f"{source}: {key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def apply_overrides(config: C, overrides: list[str]) -> C:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        config = _set(config, key.strip().split("."), raw.strip(), item)
    return config


def _set(config: C, path: list[str], raw: str, item: str) -> C:
    assert dataclasses.is_dataclass(config) and not isinstance(config, type)
    hints = typing.get_type_hints(type(config))
    head = path[0]
    if head not in hints:
        known = ", ".join(sorted(f.name for f in dataclasses.fields(config)))
        raise ConfigError(f"--set {item!r}: unknown key {head!r} for {type(config).__name__}; known: {known}")
    if len(path) > 1:
        value = _set(getattr(config, head), path[1:], raw, item)
    else:
        value = _coerce(hints[head], _parse_scalar(raw), f"--set {item!r}")
    try:
        return dataclasses.replace(config, **{head: value})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--set {item!r}: {exc}") from exc


def _parse_scalar(raw: str) -> Any:
    """Parse an override value as a TOML value, falling back to a bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: value {value!r} does not fit {hint}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return from_dict(hint, value, source=where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(item_type, v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return {str(k): _coerce(args[1], v, where) for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected text, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-ready dict of a config dataclass (tuples become lists)."""
    result: dict[str, Any] = dataclasses.asdict(config)
    return result
