"""SimConfig: presets, validation, round trips and `--set` overrides."""

from __future__ import annotations

import json

import pytest

from feedrank.config import apply_overrides, load_config
from feedrank.errors import ConfigError
from feedrank.sim import ResponseParams, SimConfig


def test_default_world_is_the_small_preset() -> None:
    assert SimConfig.preset("small") == SimConfig()
    assert 200_000 <= SimConfig().num_impressions <= 300_000


@pytest.mark.parametrize("name", SimConfig.presets())
def test_presets_build_and_grow(name: str) -> None:
    assert SimConfig.preset(name).num_impressions >= 1_000


def test_presets_are_ordered_by_size() -> None:
    sizes = [SimConfig.preset(n).num_impressions for n in ("tiny", "small", "medium", "large")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="tiny"):
        SimConfig.preset("huge")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_impressions", 0),
        ("slate_size", 0),
        ("epsilon", 0.0),
        ("epsilon", 1.5),
        ("num_days", 0.0),
        ("items_per_hour", -1.0),
        ("start", "yesterday"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        SimConfig(**{field: value})  # type: ignore[arg-type]


def test_dict_round_trip_is_json_ready_and_exact() -> None:
    cfg = SimConfig.preset("tiny", seed=3, response=ResponseParams(click_bias=-1.0))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert SimConfig.from_dict(data) == cfg


def test_overrides_reach_nested_response_params() -> None:
    cfg = apply_overrides(SimConfig(), ["seed=5", "response.click_bias=-2", "num_days=3"])
    assert (cfg.seed, cfg.response.click_bias, cfg.num_days) == (5, -2.0, 3.0)
    cfg = load_config(SimConfig, None, ["slate_size=20"], base=SimConfig.preset("tiny"))
    assert cfg.slate_size == 20 and cfg.num_impressions == SimConfig.preset("tiny").num_impressions


def test_override_with_invalid_value_raises() -> None:
    with pytest.raises(ConfigError):
        apply_overrides(SimConfig(), ["epsilon=0"])


def test_requests_round_up_to_whole_slates() -> None:
    assert SimConfig(num_impressions=1_001, slate_size=10).num_requests == 101
