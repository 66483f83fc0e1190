"""The requests the served-feed evaluation replays, and who sends them.

A request is a logged request of the evaluated part (user, time), sampled with a seed. Its target
is the user's *next click*: the first click of that user at or after the request's time in the
same part (the request's own click when it has one); a request with no later click has no target
and counts for every measure but the hit rates. Segments are by what serving knew of the user
at the request's time: *new* users have no click before it, *returning* users have; returning
users are *heavy* readers when their clicks before it reach the median of the sampled returning
users' counts, *light* readers otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from feedrank.data.features import DEMOGRAPHICS, to_us

SEGMENTS = ("new users", "returning users", "heavy readers", "light readers")


@dataclass(frozen=True)
class Requests:
    """Sampled requests in time order."""

    user_ids: list[str]  # (Q,)
    ts_us: npt.NDArray[np.int64]  # (Q,)
    demographics: list[dict[str, str]]  # (Q,) the user's demographics, as a client would send them
    next_click: list[str | None]  # (Q,) item id of the user's next click, None when there is none

    def __len__(self) -> int:
        return len(self.user_ids)


def sample_requests(impressions: pl.DataFrame, users: pl.DataFrame, n: int, seed: int) -> Requests:
    """At most n requests of `impressions` (seeded), in time order, with their next clicks.

    A log without request ids (click-only, one request per click) passes one row per request."""
    if "request_id" in impressions.columns:
        requests = impressions.group_by("request_id").agg(pl.col("user_id").first(), pl.col("ts").min())
        requests = requests.sort("ts", "request_id")
    else:
        requests = impressions.select("user_id", "ts").sort("ts", "user_id")
    if requests.height > n:
        rng = np.random.default_rng([seed, 15])
        requests = requests[np.sort(rng.choice(requests.height, size=n, replace=False))]
    clicks = (
        impressions.filter(pl.col("clicked"))
        .select("user_id", pl.col("ts").alias("click_ts"), pl.col("item_id").alias("next_click"))
        .sort("click_ts")
    )
    # Both sides are sorted by time just above; polars cannot check it per `by` group.
    joined = requests.sort("ts").join_asof(
        clicks, left_on="ts", right_on="click_ts", by="user_id", strategy="forward", check_sortedness=False
    )
    return Requests(
        user_ids=[str(u) for u in joined.get_column("user_id").to_list()],
        ts_us=to_us(joined.get_column("ts")),
        demographics=demographics_of(joined.get_column("user_id"), users),
        next_click=joined.get_column("next_click").to_list(),
    )


def demographics_of(user_ids: pl.Series, users: pl.DataFrame) -> list[dict[str, str]]:
    """Each user's known demographics (absent values left out; unknown users get none)."""
    names = [c for c in DEMOGRAPHICS if c in users.columns]
    table = pl.DataFrame({"user_id": user_ids.cast(pl.String)}).join(
        users.select("user_id", *names).unique("user_id"), on="user_id", how="left", maintain_order="left"
    )
    return [
        {k: str(v) for k, v in row.items() if k != "user_id" and v is not None} for row in table.to_dicts()
    ]


def segment_masks(past_clicks: npt.NDArray[np.int64]) -> dict[str, npt.NDArray[np.bool_]]:
    """(Q,) masks of "all" and each of SEGMENTS from each request's user's clicks before it."""
    returning = past_clicks > 0
    median = float(np.median(past_clicks[returning])) if returning.any() else 0.0
    heavy = returning & (past_clicks >= median)
    return {
        "all": np.ones(past_clicks.size, dtype=bool),
        "new users": ~returning,
        "returning users": returning,
        "heavy readers": heavy,
        "light readers": returning & ~heavy,
    }


def panel(requests: Requests, num_users: int, num_times: int, seed: int) -> tuple[list[int], list[int]]:
    """Known users and times for comparing feeds across users at one time: `num_users` distinct
    users of the sampled requests (their positions in `requests`) and `num_times` request times
    spread evenly over the sample (positions too)."""
    rng = np.random.default_rng([seed, 16])
    first: dict[str, int] = {}
    for q, user in enumerate(requests.user_ids):
        first.setdefault(user, q)
    distinct = np.array(sorted(first.values()), dtype=np.int64)
    chosen = np.sort(rng.choice(distinct, size=min(num_users, distinct.size), replace=False))
    if len(requests) == 0 or num_times <= 0:
        return chosen.tolist(), []
    at = ((np.arange(num_times) + 0.5) / num_times * len(requests)).astype(np.int64)
    return chosen.tolist(), sorted(set(at.tolist()))
