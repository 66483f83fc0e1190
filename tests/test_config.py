"""Config loading: TOML, --set overrides, and clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from feedrank.config import apply_overrides, load_config
from feedrank.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1
    names: tuple[str, ...] = ("a",)


@dataclass(frozen=True)
class Outer:
    seed: int = 0
    label: str = "x"
    on: bool = False
    inner: Inner = field(default_factory=Inner)
    cap: int | None = None


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('seed = 3\nlabel = "y"\n[inner]\nlr = 2\n')
    cfg = load_config(Outer, path, ["inner.lr=0.5", "on=true", "inner.names=['p', 'q']", "cap=7"])
    assert cfg == Outer(seed=3, label="y", on=True, inner=Inner(lr=0.5, names=("p", "q")), cap=7)


def test_base_is_kept_where_the_file_is_silent(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("seed = 9\n")
    cfg = load_config(Outer, path, [], base=Outer(label="preset"))
    assert (cfg.seed, cfg.label) == (9, "preset")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nope=1", "unknown key 'nope'"),
        ("seed=abc", "expected an integer"),
        ("on=3", "expected true or false"),
        ("seed", "expected key=value"),
        ("inner.zz=1", "unknown key 'zz'"),
    ],
)
def test_bad_overrides_name_key_and_value(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Outer(), [override])


def test_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("seed = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(Outer, path)


def test_a_file_merges_into_nested_base_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[inner]\nlr = 0.5\n")
    base = Outer(inner=Inner(lr=0.1, names=("kept",)))
    cfg = load_config(Outer, path, [], base=base)
    assert cfg.inner == Inner(lr=0.5, names=("kept",))


@dataclass(frozen=True)
class WithTunedInner:
    inner: Inner = Inner(lr=0.003, names=("tuned",))  # a class-level default other than Inner()'s


def test_a_partial_table_keeps_the_class_level_defaults_of_the_other_fields(tmp_path: Path) -> None:
    # RetrievalRunConfig.train is RETRIEVAL_TRAINING; `[train] epochs = 2` must not reset its lr
    path = tmp_path / "c.toml"
    path.write_text("[inner]\nlr = 0.5\n")
    assert load_config(WithTunedInner, path).inner == Inner(lr=0.5, names=("tuned",))
