"""The posterior oracle's view of the log (eval/posterior_server.py): a user's events strictly
before the request, from the impressions and the warm-up clicks, in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from feedrank.eval.posterior_server import UserEvents
from feedrank.sim import World
from tests.sim.conftest import tiny_config

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _ts(minutes: list[int]) -> pl.Series:
    return pl.Series([T0 + timedelta(minutes=m) for m in minutes], dtype=pl.Datetime("us", "UTC"))


def test_a_request_sees_only_the_users_events_before_it() -> None:
    world = World.generate(tiny_config(seed=3))
    impressions = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u1", "u1", "u1"],
            "item_id": ["i10", "i11", "i12", "i13", "i14"],
            "ts": _ts([30, 5, 10, 20, 20]),
            "position": [0, 1, 2, 3, 4],
            "clicked": [True, False, True, False, False],
            "dwell_s": [12.0, 0.0, 40.0, 0.0, 0.0],
            "shared": [False, False, True, False, False],
            "hidden": [False, False, False, True, False],
            "survey": [None, None, 4.0, None, None],
        }
    )
    history = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u3"],
            "item_id": ["i1", "i2", "i3"],
            "ts": _ts([-60, 25, -5]),
            "dwell_s": [9.0, 8.0, 7.0],
        }
    )
    events = UserEvents(world, impressions, pl.concat([history, history]))  # each part repeats it
    now = int((T0 + timedelta(minutes=20)).timestamp() * 1e6)
    log = events.before(1, now)
    assert log.items.tolist() == [12]  # not the two rows at the request's own time, nor later ones
    assert log.clicked.tolist() == [True] and log.shared.tolist() == [True]
    assert log.survey.tolist() == [4.0] and log.dwell_s.tolist() == [40.0] and log.position.tolist() == [2.0]
    assert log.click_items.tolist() == [1] and log.click_dwell_s.tolist() == [9.0]  # deduplicated
    later = events.before(1, now + 20 * 60_000_000)
    assert later.items.tolist() == [12, 13, 14, 10] and later.hidden.tolist() == [False, True, False, False]
    assert later.click_items.tolist() == [1, 2]
    assert events.before(4, now).size == 0  # a user with no events
    assert np.isnan(later.survey[1])
