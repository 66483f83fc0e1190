"""A bounded item view index (`PastEvents.bound_views`) answers as the whole one for later queries."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.data import bounded_views
from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace, fit_feature_space
from feedrank.data.features import to_us
from feedrank.data.history import RANKER_FEATURES, VIEW_LOOKBACK_US
from feedrank.data.timeline import NO_TIME
from tests.data.conftest import EXAMPLE_FEATURES, tiny_split

H_US = 3_600_000_000


@pytest.fixture(scope="module")
def spaces(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Dataset], FeatureSpace, FeatureSpace]:
    parts = tiny_split(tmp_path_factory.mktemp("bounded-views"))
    return parts, fit_feature_space(parts, EXAMPLE_FEATURES), fit_feature_space(parts, EXAMPLE_FEATURES)


def _queries(space: FeatureSpace, parts: dict[str, Dataset]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user rows, item rows, µs) of the test part's impressions, and of random catalog items
    (some never shown, some -1) asked by the same users at the same times."""
    test = parts["test"].read("impressions")
    users = space.users.rows(test.get_column("user_id"))
    items = space.catalog.rows(test.get_column("item_id"))
    ts = to_us(test.get_column("ts"))
    drawn = np.random.default_rng(0).integers(-1, len(space.catalog), size=users.size)
    return np.r_[users, users], np.r_[items, drawn], np.r_[ts, ts]


def test_bounded_views_give_the_same_features_and_sources(
    spaces: tuple[dict[str, Dataset], FeatureSpace, FeatureSpace],
) -> None:
    parts, whole, bounded = spaces
    users, items, ts = _queries(whole, parts)
    for space in (whole, bounded):  # items without a publication time: their age is since their first view
        space.catalog.published_us[::3] = NO_TIME
    bounded.past.bound_views(int(ts.min()))
    assert bounded.past.views_from_us == int(ts.min()) - VIEW_LOOKBACK_US
    expected = whole.past.features(RANKER_FEATURES, users, items, ts, whole.catalog)
    got = bounded.past.features(RANKER_FEATURES, users, items, ts, bounded.catalog)
    np.testing.assert_array_equal(got, expected)
    # it held a part of the views: those of the last 48 h before the queries and one per older item
    assert 0 < len(bounded.past.item_views) < len(whole.past.item_views)
    # the candidate sources' live catalog, asked at the same times
    rng = np.random.default_rng(1)
    dim = 4
    item_vectors = rng.normal(size=(len(whole.catalog), dim)).astype(np.float32)
    first = np.unique(ts, return_index=True)[1]
    requests = Requests(
        users[first],
        ts[first],
        rng.normal(size=(first.size, dim)).astype(np.float32),
        lambda hour: item_vectors,
    )
    row_request = np.searchsorted(ts[first], ts)
    columns = [
        LoggedSources.from_past(space.past, space.catalog, space.users).features(requests, row_request, items)
        for space in (whole, bounded)
    ]
    np.testing.assert_array_equal(columns[1], columns[0])
    assert columns[0].any()
    # an hour's latest views before the bound are read from the log, as without an index
    lo = int(bounded.past.views_from_us) - 6 * H_US
    for a, b in zip(
        bounded.past.latest_views(lo, lo + 12 * H_US),
        whole.past.latest_views(lo, lo + 12 * H_US),
        strict=True,
    ):
        np.testing.assert_array_equal(np.sort(a), np.sort(b))


def test_a_query_before_the_bound_raises(
    spaces: tuple[dict[str, Dataset], FeatureSpace, FeatureSpace],
) -> None:
    parts, _, bounded = spaces
    users, items, ts = _queries(bounded, parts)
    bounded.past.bound_views(int(ts.min()))
    early = ts - 3 * H_US
    with pytest.raises(ValueError, match="bounded item view index"):
        bounded.past.features(RANKER_FEATURES, users, items, early, bounded.catalog)


def test_counts_merged_along_the_way_are_the_same(
    spaces: tuple[dict[str, Dataset], FeatureSpace, FeatureSpace], monkeypatch: pytest.MonkeyPatch
) -> None:
    parts, whole, _ = spaces
    monkeypatch.setattr(bounded_views, "MERGE_ROWS", 5)  # merge the per-key counts after every shard
    fresh = fit_feature_space(parts, EXAMPLE_FEATURES)
    fresh.catalog.published_us[:] = whole.catalog.published_us  # as the first test left it
    users, items, ts = _queries(whole, parts)
    fresh.past.bound_views(int(ts.min()))
    names = ("user_category_ctr_lift", "item_age_log_h", "item_views_24h", "session_activities")
    expected = whole.past.features(names, users, items, ts, whole.catalog)
    np.testing.assert_array_equal(fresh.past.features(names, users, items, ts, fresh.catalog), expected)
