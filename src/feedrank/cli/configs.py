"""`feedrank config show KIND`: every configuration key of a command, with its default, as TOML.

The output is a valid config file: save it, edit it, pass it with `--config`; every key also takes
`--set key=value` (dots reach nested tables).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from feedrank.errors import ConfigError

app = typer.Typer(help="Configuration keys and their defaults.", no_args_is_help=True)


def _retrieval() -> object:
    from feedrank.artifacts.config import RetrievalRunConfig

    return RetrievalRunConfig()


def _ranker() -> object:
    from feedrank.artifacts.config import RankerRunConfig

    return RankerRunConfig()


def _serve() -> object:
    from feedrank.serve.settings import ServeSettings

    return ServeSettings()


def _sim() -> object:
    from feedrank.sim import SimConfig

    return SimConfig()


def _demo() -> object:
    from feedrank.pipeline import DemoConfig

    return DemoConfig()


def _rollout() -> object:
    from feedrank.experiments.rollout import RolloutConfig

    return RolloutConfig()


def _index() -> object:
    from feedrank.index import IndexSpec

    return IndexSpec()


# kind -> (the commands that read it, its defaults)
KINDS: dict[str, tuple[str, Callable[[], object]]] = {
    "retrieval": ("feedrank train retrieval --config/--set", _retrieval),
    "ranker": ("feedrank train ranker --config/--set", _ranker),
    "serve": ("feedrank serve --config/--set", _serve),
    "sim": ("feedrank simulate --config/--set (the 'small' preset)", _sim),
    "demo": ("feedrank demo --config/--set", _demo),
    "rollout": ("feedrank abtest rollout --config/--set", _rollout),
    "index": ("feedrank bundle --index-config (feedrank index tune --write)", _index),
}


@app.command("show")
def show_command(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
) -> None:
    """Print every key of a configuration with its default, as a TOML file you can edit.

    Example: feedrank config show ranker > ranker.toml
    """
    if kind not in KINDS:
        raise ConfigError(f"config kind {kind!r}: expected one of {', '.join(KINDS)}")
    used_by, defaults = KINDS[kind]
    typer.echo(f"# {kind}: every key and its default; read by {used_by}\n" + to_toml(defaults()), nl=False)


def to_toml(config: object) -> str:
    """A config dataclass as TOML: its scalar fields, then one [table] per nested config."""
    lines: list[str] = []
    _table(config, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def write_toml(config: object, path: Path, header: str = "") -> Path:
    """`config` as a TOML file at `path`, with `header` as its first comment lines."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(comment + to_toml(config), encoding="utf-8")
    return path


def _table(config: object, prefix: str, lines: list[str]) -> None:
    nested: list[tuple[str, object]] = []
    for name, value in config_items(config):
        if _is_config(value):
            nested.append((name, value))
        elif value is None:
            lines.append(f"# {name} = (not set)")
        else:
            lines.append(f"{name} = {_value(value)}")
    for name, value in nested:
        key = f"{prefix}.{name}" if prefix else name
        lines += ["", f"[{key}]"]
        _table(value, key, lines)


def _is_config(value: object) -> bool:
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or hasattr(value, "model_fields")


def config_items(config: object) -> list[tuple[str, Any]]:
    """(key, value) of every setting of a config dataclass (or pydantic model), in field order.

    A field whose default comes from a builtin function (a clock such as `time.monotonic`) is a
    value of the running process, not a setting: it is left out.
    """
    if dataclasses.is_dataclass(config):
        return [
            (f.name, getattr(config, f.name))
            for f in dataclasses.fields(config)
            if f.init and not isinstance(f.default_factory, types.BuiltinFunctionType)
        ]
    return [(name, getattr(config, name)) for name in type(config).model_fields]  # type: ignore[attr-defined]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return _value(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
        )
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if _is_config(value):  # a config inside a list: an inline table
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in config_items(value) if v is not None) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}: {value!r}")
