"""Indexes bounded to the queries' users and times (`PastEvents.bound_queries`) answer those
queries as the whole indexes do, hold less, and raise on any other query."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from feedrank.candidates import logged
from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.candidates.merge import SOURCE_FEATURES
from feedrank.data import affinity, bounded_views, history
from feedrank.data.dataset import Dataset
from feedrank.data.examples import FeatureSpace, fit_feature_space
from feedrank.data.features import to_us
from feedrank.data.history import FEATURE_NAMES, INDEXES
from feedrank.data.timeline import NO_TIME
from feedrank.train.ranker_rows import ScopedEvaluate, bound_to_queries
from tests.data.conftest import EXAMPLE_FEATURES, tiny_split

H_US = 3_600_000_000
NAMES = tuple(sorted(FEATURE_NAMES))  # every column: each index a ranker can read


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Dataset]:
    return tiny_split(tmp_path_factory.mktemp("query-scope"))


@pytest.fixture(scope="module")
def whole(parts: dict[str, Dataset]) -> FeatureSpace:
    space = fit_feature_space(parts, EXAMPLE_FEATURES)
    space.catalog.published_us[::3] = NO_TIME  # items whose age is since their first view
    return space


def _scoped(parts: dict[str, Dataset]) -> FeatureSpace:
    space = fit_feature_space(parts, EXAMPLE_FEATURES)
    space.catalog.published_us[::3] = NO_TIME
    return space


def _queries(space: FeatureSpace, parts: dict[str, Dataset]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user rows, item rows, µs): the valid part's impressions of every third request, and random
    catalog items (some -1) asked by the same users at the same times. The test part is later."""
    valid = parts["valid"].read("impressions")
    valid = valid.filter(pl.col("request_id").rank("dense") % 3 == 0)
    users = space.users.rows(valid.get_column("user_id"))
    items = space.catalog.rows(valid.get_column("item_id"))
    ts = to_us(valid.get_column("ts"))
    drawn = np.random.default_rng(0).integers(-1, len(space.catalog), size=users.size)
    return np.r_[users, users], np.r_[items, drawn], np.r_[ts, ts]


def _logged(space: FeatureSpace) -> LoggedSources:
    return LoggedSources.from_past(space.past, space.catalog, space.users)


def _sources(
    space: FeatureSpace,
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    logged: LoggedSources | None = None,
) -> np.ndarray:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(len(space.catalog), 4)).astype(np.float32)
    first = np.unique(ts, return_index=True)[1]
    requests = Requests(
        users[first], ts[first], rng.normal(size=(first.size, 4)).astype(np.float32), lambda hour: vectors
    )
    return (logged or _logged(space)).features(requests, np.searchsorted(ts[first], ts), items)


def test_bounded_queries_give_the_same_features_sources_and_histories(
    parts: dict[str, Dataset], whole: FeatureSpace
) -> None:
    scoped = _scoped(parts)
    users, items, ts = _queries(whole, parts)
    scoped.past.bound_queries(int(ts.min()), int(ts.max()), users)
    expected = whole.past.features(NAMES, users, items, ts, whole.catalog)
    np.testing.assert_array_equal(scoped.past.features(NAMES, users, items, ts, scoped.catalog), expected)
    np.testing.assert_array_equal(scoped.past.history(users, ts, 5), whole.past.history(users, ts, 5))
    scoped_sources, whole_sources = _logged(scoped), _logged(whole)
    got = _sources(scoped, users, items, ts, scoped_sources)
    np.testing.assert_array_equal(got, _sources(whole, users, items, ts, whole_sources))
    assert got[:, SOURCE_FEATURES.index("covis_score")].any()
    # one run's sources are built once and shared (replay, validation); an unbounded past's are not
    assert _logged(scoped) is scoped_sources and _logged(whole) is not whole_sources
    # co-visitation kept the asked users' clicks and the votes their recent clicks read, not all
    scoped_covis, whole_covis = scoped_sources.sources.covis, whole_sources.sources.covis
    assert 0 < len(scoped_covis._clicks) < len(whole_covis._clicks)
    assert 0 < len(scoped_covis._votes) < len(whole_covis._votes)
    # it held less: no event after the last query, and the user-keyed indexes of these users alone
    assert 0 < len(scoped.past.user_clicks) < len(whole.past.user_clicks)
    assert 0 < len(scoped.past.item_views) < len(whole.past.item_views)
    for name in ("user_category_clicks", "user_publisher_clicks"):
        assert 0 < len(getattr(scoped.past, name)) < len(getattr(whole.past, name))
    assert 0 < len(scoped.past.affinity.user_all) < len(whole.past.affinity.user_all)
    assert 0 < len(scoped.past.category_views[1]) < len(whole.past.category_views[1])
    assert 0 < len(scoped.past.sessions._index) < len(whole.past.sessions._index)


def test_a_query_outside_the_bounds_raises(parts: dict[str, Dataset], whole: FeatureSpace) -> None:
    scoped = _scoped(parts)
    users, items, ts = _queries(whole, parts)
    asked = np.unique(users[users >= 0])
    scoped.past.bound_queries(int(ts.min()), int(ts.max()), users[users != asked[0]])
    with pytest.raises(ValueError, match=f"user row {asked[0]}"):
        scoped.past.features(NAMES, users, items, ts, scoped.catalog)
    keep = users != asked[0]
    later = ts[keep] + 1
    with pytest.raises(ValueError, match="after"):
        scoped.past.features(NAMES, users[keep], items[keep], later, scoped.catalog)
    with pytest.raises(ValueError, match="after"):
        scoped.past.history(users[keep], later, 5)
    with pytest.raises(ValueError, match="after"):
        _sources(scoped, users[keep], items[keep], later)
    with pytest.raises(RuntimeError, match="were built"):  # an index built whole cannot be bounded
        scoped.past.bound_queries(int(ts.min()), int(ts.max()), users)


def test_breaking_the_bounds_by_hand_changes_the_features(
    parts: dict[str, Dataset], whole: FeatureSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The equality above can fail: indexes that lose a queried user, or the last hour of events
    before the last query, answer differently."""
    users, items, ts = _queries(whole, parts)
    expected = whole.past.features(NAMES, users, items, ts, whole.catalog)
    # a queried user's events left out of the user-keyed indexes (the queries' check not told)
    busiest = np.bincount(users[users >= 0]).argmax()
    dropped = _scoped(parts)
    dropped.past.bound_queries(int(ts.min()), int(ts.max()), users)

    def without_busiest(mask: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        return np.asarray((rows >= 0) & (rows != busiest), dtype=bool)

    for module in (history, bounded_views, affinity):
        monkeypatch.setattr(module, "user_scope", without_busiest)
    got = dropped.past.features(NAMES, users, items, ts, dropped.catalog)
    assert not np.array_equal(got, expected)
    monkeypatch.undo()
    # the events of the hour before the last query left out (the queries' check not told)
    early = _scoped(parts)
    early.past.bound_queries(int(ts.min()), int(ts.max()), users)
    early.past.until_us = int(ts.max()) - H_US
    for name in INDEXES:
        getattr(early.past, name)
    early.past.until_us = int(ts.max())
    assert not np.array_equal(early.past.features(NAMES, users, items, ts, early.catalog), expected)
    # co-visitation without the votes after the asked users' latest clicks before the first query
    sources = _sources(whole, users, items, ts)
    fewer = _scoped(parts)
    fewer.past.bound_queries(int(ts.min()), int(ts.max()), users)
    kept = logged._covis_kept
    monkeypatch.setattr(logged, "_covis_kept", lambda past, u, i, t, n: kept(past, u, i, t, 0))
    assert not np.array_equal(_sources(fewer, users, items, ts), sources)


def test_train_ranker_bounds_to_its_rows_and_a_validation_that_names_its_own(
    parts: dict[str, Dataset],
) -> None:
    train = parts["train"].read("impressions").tail(200)
    valid = parts["valid"].read("impressions").head(100)
    named = ScopedEvaluate(lambda model: {}, valid.get_column("user_id"), valid.get_column("ts"))
    space = _scoped(parts)
    assert bound_to_queries(space, train, named)
    past = space.past
    rows = space.users.rows(pl.concat([train.get_column("user_id"), valid.get_column("user_id")]))
    assert past.query_users is not None
    assert np.array_equal(np.flatnonzero(past.query_users), np.unique(rows[rows >= 0]))
    assert past.until_us == int(to_us(valid.get_column("ts")).max())
    assert past.views_from_us is not None
    # a validation that does not name its rows: nothing is bounded
    other = _scoped(parts)
    assert not bound_to_queries(other, train, lambda model: {})
    assert other.past.until_us is None and other.past.query_users is None


def test_features_in_blocks_of_rows_are_the_features_at_once(
    parts: dict[str, Dataset], whole: FeatureSpace, monkeypatch: pytest.MonkeyPatch
) -> None:
    users, items, ts = _queries(whole, parts)
    expected = whole.past.features(NAMES, users, items, ts, whole.catalog)  # one block
    assert ts.size < history.FEATURE_BLOCK
    monkeypatch.setattr(history, "FEATURE_BLOCK", 7)  # blocks that split runs of one (user, t)
    np.testing.assert_array_equal(whole.past.features(NAMES, users, items, ts, whole.catalog), expected)
