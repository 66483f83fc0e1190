"""Rollout plans: stage times follow traffic, stop conditions are there, underpowered stages are flagged."""

from __future__ import annotations

import dataclasses

import pytest

from feedrank.errors import ConfigError
from feedrank.experiments.ab_plan import Design, ProportionMetric, plan
from feedrank.experiments.rollout import (
    DEFAULT_CHECKS,
    Check,
    RolloutConfig,
    Stage,
    check_time,
    plan_rollout,
    render_rollout,
)


def test_halving_the_share_doubles_every_check_time() -> None:
    config = RolloutConfig()
    for check in DEFAULT_CHECKS:
        wide = check_time(check, Stage("a", 0.02, 1.0, 1e6), config)
        narrow = check_time(check, Stage("b", 0.01, 1.0, 1e6), config)
        assert narrow.hours_needed / wide.hours_needed == pytest.approx(2.0, rel=1e-3), check.name


def test_check_time_is_the_ab_plan_duration() -> None:
    config = RolloutConfig(requests_per_day=2_000_000)
    check = Check("errors", ProportionMetric(0.002), 0.001, relative=False, unit="request")
    got = check_time(check, Stage("ramp", 0.25, 1.0, 72.0), config)
    design = Design(
        treatment_fraction=0.5, traffic_share=0.5, units_per_day=2e6, relative=False, two_sided=False
    )
    expected = plan(ProportionMetric(0.002), design, effect=0.001)
    assert expected.days is not None
    assert got.hours_needed == pytest.approx(24 * expected.days)
    assert got.power_at_max > 0.99  # 72 h is far more than needed


def test_every_stage_has_its_stop_conditions() -> None:
    result = plan_rollout()
    assert [s.stage.name for s in result.stages] == ["canary", "experiment", "ramp 25%", "ramp 50%", "full"]
    for s in result.stages:
        assert any("p99 latency above 50 ms" in rule for rule in s.stop_conditions)
        has_control = s.stage.control > 0  # only a stage with a control arm can compare the arms
        assert any("sample ratio mismatch" in rule for rule in s.stop_conditions) == has_control
        if has_control:
            assert len(s.stop_conditions) == 2 + len(s.stage.checks)
    assert [s.stage.control > 0 for s in result.stages] == [True, True, True, True, False]
    experiment = result.stages[1]
    assert any("requests with a hide higher than control by 10.0%" in r for r in experiment.stop_conditions)
    assert experiment.stage.share == 0.05 and experiment.hours >= 7 * 24


def test_a_stage_that_cannot_reach_power_is_flagged() -> None:
    small = plan_rollout(RolloutConfig(users_per_day=50_000, requests_per_day=500_000))
    canary = small.stages[0]
    assert not canary.reaches_power
    errors = next(t for t in canary.checks if t.name == "error_rate")
    assert errors.hours_needed > canary.stage.max_hours and errors.power_at_max < 0.8
    assert canary.hours == canary.stage.max_hours  # it runs to its limit, not beyond
    text = render_rollout(small)
    assert "**UNDERPOWERED**" in text and "Underpowered stages" in text and "canary" in text
    big = plan_rollout(RolloutConfig(users_per_day=5e6, requests_per_day=5e7))
    assert all(s.reaches_power for s in big.stages)
    assert "UNDERPOWERED" not in render_rollout(big)


def test_stage_duration_is_the_slowest_check_within_its_bounds() -> None:
    result = plan_rollout()
    for s in result.stages:
        slowest = max((t.hours_needed for t in s.checks), default=0.0)
        assert s.hours == pytest.approx(min(max(s.stage.min_hours, slowest), s.stage.max_hours))
    assert result.total_hours == pytest.approx(sum(s.hours for s in result.stages))


def test_bad_rollout_configs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown checks"):
        RolloutConfig(stages=(Stage("x", 0.1, 1.0, 2.0, ("nope",)),))
    with pytest.raises(ConfigError, match="need a control"):
        RolloutConfig(stages=(Stage("x", 1.0, 1.0, 2.0, ("hide_rate",)),))
    with pytest.raises(ConfigError, match="min_hours"):
        RolloutConfig(stages=(Stage("x", 0.1, 5.0, 2.0),))
    with pytest.raises(ConfigError):
        dataclasses.replace(RolloutConfig(), users_per_day=0.0)
