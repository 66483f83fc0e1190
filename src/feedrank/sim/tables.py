"""Canonical table frames from world arrays and simulated chunks (columns as in data/schema.py).

Id strings are built by polars (format and gather), never by Python loops: a chunk of 80k rows
becomes a frame in a few milliseconds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.sim import ids
from feedrank.sim.response import Responses
from feedrank.sim.world import World

I64 = npt.NDArray[np.int64]


def _names(values: tuple[str, ...], codes: npt.NDArray[np.integer]) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(codes.astype(np.int64))


def _timestamps(ts_us: I64) -> pl.Series:
    return pl.Series(ts_us, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _epoch_us(t_s: npt.NDArray[np.float64]) -> I64:
    return np.rint(t_s * 1e6).astype(np.int64)


def users_frame(world: World) -> pl.DataFrame:
    """The users table: every user of the world (including those who arrive late), (U rows)."""
    u, demo = world.users, world.vocab.demographics
    return pl.DataFrame(
        {
            "user_id": world.user_ids(),
            "age_bucket": _names(demo["age_bucket"], u.age_bucket),
            "gender": _names(demo["gender"], u.gender),
            "country": _names(demo["country"], u.country),
            "device": _names(demo["device"], u.device),
        }
    )


def items_frame(world: World) -> pl.DataFrame:
    """The items table: every item of the world; titles are unknown (null)."""
    it = world.items
    return pl.DataFrame(
        {
            "item_id": world.item_ids(),
            "publisher_id": world.publisher_ids(it.publisher),
            "category": _names(world.vocab.topics, it.main_topic),
            "subcategory": _names(world.vocab.subtopics, it.subtopic),
            "content_type": _names(world.vocab.content_types, it.content_type),
            "published_ts": _timestamps(_epoch_us(it.published_s)),
        }
    )


class FrameBuilder:
    """Turns simulated chunks into impressions / history frames, reusing the id strings."""

    def __init__(self, world: World) -> None:
        self._user_ids = world.user_ids()
        self._item_ids = world.item_ids()

    def impressions(
        self,
        first_request: int,
        users: I64,
        ts_us: I64,
        slates: I64,
        propensity: npt.NDArray[np.float64],
        resp: Responses,
    ) -> pl.DataFrame:
        """One row per shown item: requests (B,) with slates (B, k) -> B * k rows, slate order."""
        num, k = slates.shape
        survey = resp.survey.ravel()
        request = np.repeat(np.arange(first_request, first_request + num), k)
        return pl.DataFrame(
            {
                "request_id": ids.format_ids(ids.REQUEST, request),
                "user_id": self._user_ids.gather(np.repeat(users, k)),
                "item_id": self._item_ids.gather(slates.ravel()),
                "ts": _timestamps(np.repeat(ts_us, k)),
                "position": pl.Series(np.tile(np.arange(k, dtype=np.int32), num)),
                "clicked": pl.Series(resp.clicked.ravel()),
                "dwell_s": pl.Series(resp.dwell_s.ravel()),
                "shared": pl.Series(resp.shared.ravel()),
                "hidden": pl.Series(resp.hidden.ravel()),
                "survey": pl.Series(survey, nan_to_null=True),
                "propensity": pl.Series(propensity.ravel()),
            }
        )

    def history(self, users: I64, ts_us: I64, slates: I64, resp: Responses, seq: I64) -> pl.DataFrame:
        """Clicked rows of a warm-up chunk; `seq` (number of clicks) is each click's history index."""
        rows, cols = np.nonzero(resp.clicked)
        return pl.DataFrame(
            {
                "user_id": self._user_ids.gather(users[rows]),
                "seq": pl.Series(seq.astype(np.int32)),
                "item_id": self._item_ids.gather(slates[rows, cols]),
                "ts": _timestamps(ts_us[rows]),
                "dwell_s": pl.Series(resp.dwell_s[rows, cols]),
            }
        )
