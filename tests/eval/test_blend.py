"""The next-click blend: its grid holds both components, so on the tuning clicks it never loses."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.eval.blend import BlendWeights, blend_grid, tune_blend
from feedrank.eval.next_click_stream import POP_WINDOWS_MIN, TargetState, rank_metrics


def _states(n: int, seed: int) -> list[TargetState]:
    """Clicks where co-visitation knows a few items (mostly the target) and popularity ranks the rest."""
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(n):
        size = 200
        pop = {m: rng.poisson(3.0 * m / 10, size).astype(np.float64) for m in POP_WINDOWS_MIN}
        covis = np.zeros(size)
        covis[rng.choice(size, 5, replace=False)] = rng.integers(1, 4, 5)
        target = int(rng.integers(size))
        if rng.random() < 0.4:  # the previous click predicts the next one
            covis[target] = 3.0
        else:  # popularity does
            pop[10][target] += 10
        states.append(TargetState(np.arange(size), target, pop, covis, False))
    return states


def _mean_ndcg(weights: BlendWeights, states: list[TargetState]) -> float:
    return float(np.mean([rank_metrics(weights.scores(s), s.target)["ndcg@10"] for s in states]))


def test_the_grid_holds_each_component_alone() -> None:
    grid = blend_grid()
    assert BlendWeights(0.0, 1.0, 60) in grid  # co-visitation alone
    assert all(BlendWeights(1.0, 0.0, m) in grid for m in POP_WINDOWS_MIN)  # each popularity alone


def test_the_tuned_blend_beats_each_component_on_the_tuning_clicks() -> None:
    states = _states(300, seed=0)
    tuning = tune_blend(states)
    tuned = tuning.best
    components = [BlendWeights(0.0, 1.0, 60)] + [BlendWeights(1.0, 0.0, m) for m in POP_WINDOWS_MIN]
    best_component = max(_mean_ndcg(c, states) for c in components)
    assert _mean_ndcg(tuned, states) >= best_component
    reported = tuning.validation_ndcg()
    assert reported["blend"] == max(reported.values()) and tuning.clicks == 300
    assert reported["co-visitation (previous click)"] == pytest.approx(_mean_ndcg(components[0], states))
    # here both signals matter, so a real mixture wins outright and generalises to fresh clicks
    assert tuned.a > 0 and tuned.b > 0 and tuned.window_min == 10
    fresh = _states(300, seed=1)
    assert _mean_ndcg(tuned, fresh) > max(_mean_ndcg(c, fresh) for c in components)


def test_no_usable_click_keeps_a_default() -> None:
    dead = TargetState(np.arange(3), -1, {m: np.zeros(3) for m in POP_WINDOWS_MIN}, np.zeros(3), True)
    assert tune_blend([]).best == BlendWeights(1.0, 1.0, 60) and tune_blend([]).validation_ndcg() == {}
    assert tune_blend([dead]).validation_ndcg()["blend"] == 0.0  # a click that was not live: a miss
