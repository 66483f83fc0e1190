"""Source columns of logged rows: leak-free, and what the sources' own lists say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.artifacts.store import build_space
from feedrank.candidates import SOURCE_FEATURES, SourceList, source_features
from feedrank.candidates.logged import LiveItems, LoggedSources, Requests, live_spans
from feedrank.data.examples import FeatureSpace
from feedrank.data.features import to_us
from feedrank.data.history import PastEvents, build_past_events
from feedrank.data.split import open_split
from feedrank.progress import reporting
from tests.integration.conftest import TINY_FEATURES, split_dir  # noqa: F401  (the tiny world)

DIM = 8


@pytest.fixture(scope="module")
def world(split_dir: Path) -> tuple[FeatureSpace, pl.DataFrame, pl.DataFrame]:  # noqa: F811
    parts = open_split(split_dir)
    impressions = pl.concat([ds.read("impressions") for ds in parts.values()]).sort("ts")
    history = pl.concat([ds.read("history") for ds in parts.values()]).unique(maintain_order=True)
    return build_space(split_dir, TINY_FEATURES), impressions, history


def _past(space: FeatureSpace, impressions: pl.DataFrame, history: pl.DataFrame) -> PastEvents:
    return build_past_events(history, impressions, space.catalog, space.users, ctr_prior=0.1)


def _columns(space: FeatureSpace, past: PastEvents, requests: pl.DataFrame, shift_us: int = 0) -> np.ndarray:
    """Columns of every catalog item for each request, with fixed random vectors for the ANN."""
    rng = np.random.default_rng(0)
    items = rng.normal(size=(len(space.catalog), DIM)).astype(np.float32)
    users = rng.normal(size=(requests.height, DIM)).astype(np.float32)
    logged = LoggedSources.from_past(past, space.catalog, space.users, list_size=40)
    num_items = len(space.catalog)
    asked = Requests(
        space.users.rows(requests.get_column("user_id")),
        to_us(requests.get_column("ts")) + shift_us,
        users,
        lambda hour: items,
    )
    return logged.features(
        asked,
        np.repeat(np.arange(requests.height), num_items),
        np.tile(np.arange(num_items), requests.height),
    ).reshape(requests.height, num_items, len(SOURCE_FEATURES))


def test_columns_at_t_are_the_same_with_the_log_cut_at_t(
    world: tuple[FeatureSpace, pl.DataFrame, pl.DataFrame],
) -> None:
    space, impressions, history = world
    full = _past(space, impressions, history)
    clicks = impressions.filter(pl.col("clicked"))
    requests = clicks.gather(np.linspace(clicks.height // 3, clicks.height - 1, 8).astype(np.int64))
    changed = 0
    for r in range(requests.height):
        one = requests[r : r + 1]
        t = one.get_column("ts")[0]
        cut = _past(space, impressions.filter(pl.col("ts") < t), history)
        want = _columns(space, cut, one)
        assert np.array_equal(_columns(space, full, one), want)
        # Control: a microsecond later the events at t (the click itself among them) are seen.
        changed += not np.array_equal(_columns(space, full, one, shift_us=1), want)
        assert want[..., :4].sum() > 0  # some source listed something: the comparison is not empty
    assert changed >= requests.height // 2


def test_the_replay_reports_each_request(world: tuple[FeatureSpace, pl.DataFrame, pl.DataFrame]) -> None:
    space, impressions, history = world
    requests = impressions.filter(pl.col("clicked")).head(5)
    seen: list[tuple[str, int, int]] = []
    with reporting(lambda *args: seen.append(args)):
        columns = _columns(space, _past(space, impressions, history), requests)
    assert columns.shape[0] == 5
    assert seen == [("candidate-source columns (requests replayed)", i, 5) for i in range(1, 6)]


def test_columns_are_the_sources_lists_looked_up() -> None:
    lists = {
        "ann": SourceList(np.array([5, 2]), np.array([1.5, 0.5])),
        "trending": SourceList(np.array([2]), np.array([np.e - 1.0])),
    }
    got = source_features(lists, np.array([2, 5, 7]))
    names = list(SOURCE_FEATURES)
    assert got[0, names.index("from_ann")] == 1 and got[0, names.index("from_trending")] == 1
    assert got[0, names.index("trending_score")] == pytest.approx(1.0)  # log1p-scaled count
    assert got[1, names.index("ann_score")] == pytest.approx(1.5)
    assert got[1, names.index("from_trending")] == 0
    assert not got[2].any()  # listed by no source


def test_live_items_follow_the_window_and_refuse_going_back() -> None:
    live = LiveItems(np.array([0, 1, 2, 0]), np.array([10, 20, 30, 100]), num_items=3, window_us=50)
    assert live.at(25).tolist() == [0, 1]  # events strictly before t
    assert live.at(75).tolist() == [2]  # the events at 10 and 20 fell out of the window
    assert live.at(101).tolist() == [0]  # item 0 is live again after its event at 100
    with pytest.raises(ValueError, match="back in time"):
        live.at(50)


def test_live_items_from_runs_of_events_are_the_live_items_of_every_event() -> None:
    """`live_spans` keeps a row per run of an item's events (no gap over the window): far fewer
    rows, the same live items at every t, gaps of exactly the window included."""
    rng = np.random.default_rng(4)
    items = rng.integers(0, 30, size=3_000)
    ts = np.sort(rng.integers(0, 20_000, size=items.size))
    ts[::7] = ts[::7] // 500 * 500  # ties, and gaps of exactly the window
    runs = live_spans(items, ts, 500)
    assert runs[0].size < items.size / 3
    every, spans = LiveItems(items, ts, 30, 500), LiveItems(runs[0], runs[1], 30, 500, last_us=runs[2])
    for t in np.unique(np.r_[ts, ts + 1, ts + 500, ts + 501]).tolist():
        assert np.array_equal(spans.at(t), every.at(t)), t
    # runs broken one microsecond too late (a gap of window + 1 kept inside a run) answer otherwise
    wrong = live_spans(items, ts, 501)
    every, spans = LiveItems(items, ts, 30, 500), LiveItems(wrong[0], wrong[1], 30, 500, last_us=wrong[2])
    assert any(not np.array_equal(spans.at(t), every.at(t)) for t in np.unique(ts + 501).tolist())


def test_one_walk_over_many_requests_lists_what_each_request_alone_gets(
    world: tuple[FeatureSpace, pl.DataFrame, pl.DataFrame],
) -> None:
    """The walk reuses state between requests (the live items' vectors among it); none of it
    may leak from one request into the next."""
    space, impressions, history = world
    past = _past(space, impressions, history)
    clicks = impressions.filter(pl.col("clicked"))
    requests = clicks.gather(np.linspace(clicks.height // 4, clicks.height - 1, 40).astype(np.int64))
    rng = np.random.default_rng(3)
    hourly: dict[int, np.ndarray] = {}

    def items_at(hour: int) -> np.ndarray:  # different vectors every hour, as the towers give
        if hour not in hourly:
            hourly[hour] = rng.normal(size=(len(space.catalog), DIM)).astype(np.float32)
        return hourly[hour]

    users = rng.normal(size=(requests.height, DIM)).astype(np.float32)
    asked = Requests(
        space.users.rows(requests.get_column("user_id")), to_us(requests.get_column("ts")), users, items_at
    )
    logged = LoggedSources.from_past(past, space.catalog, space.users, list_size=40)
    together = dict(logged.walk(asked, np.arange(requests.height)))
    hours = {int(t) // 3_600_000_000 for t in asked.ts_us}
    assert len(hours) > 1  # the walk crosses hours
    for r in range(requests.height):
        ((_, alone),) = logged.walk(asked, np.array([r]))
        assert alone.keys() == together[r].keys()
        for name, listed in alone.items():
            assert np.array_equal(listed.rows, together[r][name].rows), name
            if name == "trending":  # sliding decayed sums: a longer walk rounds differently
                assert np.allclose(listed.scores, together[r][name].scores, rtol=1e-9), name
            else:
                assert np.array_equal(listed.scores, together[r][name].scores), name
