"""Baseline scorers: leak-free at every query time, and each one finds what it should."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Self

import numpy as np
import polars as pl
import pytest

from feedrank.data.dataset import conform
from feedrank.data.schema import IMPRESSIONS
from feedrank.errors import DataError
from feedrank.eval.baselines import (
    F64,
    GlobalPopularity,
    RandomScorer,
    RecentPopularity,
    Scorer,
    query_micros,
    score_slates,
)
from feedrank.eval.covisitation import CoVisitation

START = datetime(2024, 3, 1, tzinfo=UTC)


def canonical(rows: list[tuple[str, str, datetime, bool]]) -> pl.DataFrame:
    """Impressions from (user, item, ts, clicked) rows, one request per (user, ts)."""
    return conform(
        pl.DataFrame(
            {
                "request_id": [f"{u}@{ts.isoformat()}" for u, _, ts, _ in rows],
                "user_id": [r[0] for r in rows],
                "item_id": [r[1] for r in rows],
                "ts": [r[2] for r in rows],
                "position": [0] * len(rows),
                "clicked": [r[3] for r in rows],
                "dwell_s": [None] * len(rows),
                "shared": [False] * len(rows),
                "hidden": [False] * len(rows),
                "survey": [None] * len(rows),
                "propensity": [None] * len(rows),
            },
            schema_overrides={"ts": IMPRESSIONS.column("ts").dtype},
        ),
        IMPRESSIONS,
    )


def random_events(seed: int = 0, num_requests: int = 400) -> pl.DataFrame:
    """Slates of 5 over 48 hours on a 10-minute grid (so many requests share a timestamp)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_requests):
        user = f"u{rng.integers(25)}"
        ts = START + timedelta(minutes=10 * int(rng.integers(0, 6 * 48)))
        for item in rng.choice(30, 5, replace=False):
            rows.append((user, f"i{item}", ts, bool(rng.random() < 0.35)))
    return canonical(rows)


def dt64(values: list[datetime]) -> np.ndarray:
    return np.array([v.replace(tzinfo=None) for v in values], dtype="datetime64[us]")


class LeakyPopularity(GlobalPopularity):
    """Counts clicks at or before t: exactly the mistake the leak check must catch."""

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        later = (query_micros(ts) + 1).astype("datetime64[us]")
        return super().score(user_ids, later, item_ids)


SCORERS: dict[str, Callable[[], Scorer]] = {
    "random": lambda: RandomScorer(seed=3),
    "global_popularity": GlobalPopularity,
    "recent_popularity": lambda: RecentPopularity(timedelta(hours=3)),
    "covisitation": lambda: CoVisitation(window=timedelta(hours=2), num_recent=5),
    "covisitation_until": lambda: CoVisitation(until=START + timedelta(hours=30)),
}


def leaks(make: Callable[[], Scorer], events: pl.DataFrame, seed: int = 1) -> tuple[int, int]:
    """(rows whose score changes when events at or after the query time are dropped, rows with score > 0)."""
    rng = np.random.default_rng(seed)
    times = events.get_column("ts").unique().sort().to_list()
    # Query at event times exactly (the boundary that matters) and between them.
    query_times = [times[i] for i in rng.choice(len(times), 12)] + [times[5] + timedelta(minutes=3)]
    changed = positive = 0
    full = make().fit(events)
    for t in query_times:
        users = np.array([f"u{i}" for i in range(25)] * 31)
        items = np.repeat(np.array([f"i{i}" for i in range(30)] + ["unseen"]), 25)
        ts = dt64([t] * users.size)
        truncated = make().fit(events.filter(pl.col("ts") < t))
        expected = full.score(users, ts, items)
        changed += int((truncated.score(users, ts, items) != expected).sum())
        positive += int((expected > 0).sum())
    return changed, positive


@pytest.mark.parametrize("name", list(SCORERS))
def test_scores_use_only_events_strictly_before_the_query_time(name: str) -> None:
    changed, positive = leaks(SCORERS[name], random_events())
    assert changed == 0
    assert positive > 100  # the check compared real, mostly non-zero scores


def test_the_leak_check_catches_a_leaky_scorer() -> None:
    changed, _ = leaks(LeakyPopularity, random_events())
    assert changed > 0


def test_popularity_ranks_the_popular_item_first() -> None:
    rows = [(f"u{i}", "hot", START + timedelta(minutes=i), True) for i in range(40)]
    rows += [(f"u{i}", f"i{i % 5}", START + timedelta(minutes=i), i % 3 == 0) for i in range(40)]
    scorer = GlobalPopularity().fit(canonical(rows))
    cands = np.array([["i0", "i1", "hot", "i2", "never-seen"]])
    scores = score_slates(scorer, np.array(["u1"]), dt64([START + timedelta(days=1)]), cands)
    assert scores.shape == (1, 5)
    assert cands[0, np.argmax(scores[0])] == "hot"
    assert scores[0, 4] == 0.0


def test_recent_popularity_prefers_what_is_trending_now() -> None:
    old = [(f"u{i}", "old", START + timedelta(minutes=i), True) for i in range(50)]
    new = [(f"u{i}", "new", START + timedelta(hours=30, minutes=i), True) for i in range(10)]
    events = canonical(old + new)
    users, items = np.array(["q", "q"]), np.array(["old", "new"])
    ts = dt64([START + timedelta(hours=31)] * 2)
    assert GlobalPopularity().fit(events).score(users, ts, items).tolist() == [50.0, 10.0]
    assert RecentPopularity(timedelta(hours=24)).fit(events).score(users, ts, items).tolist() == [0.0, 10.0]


def test_window_boundaries_are_start_inclusive_and_end_exclusive() -> None:
    t = START + timedelta(hours=24)
    events = canonical([("a", "x", START, True), ("b", "x", t, True), ("c", "x", START, False)])
    scorer = RecentPopularity(timedelta(hours=24)).fit(events)
    one = np.array(["q"])
    assert scorer.score(one, dt64([t]), np.array(["x"])).tolist() == [1.0]  # START = t - window counts
    later = dt64([t + timedelta(microseconds=1)])
    assert scorer.score(one, later, np.array(["x"])).tolist() == [1.0]  # START fell out, t came in


def planted_pair_events() -> pl.DataFrame:
    rows = []
    for u in range(30):  # everyone who reads A reads B five minutes later
        t = START + timedelta(hours=u)
        rows += [(f"u{u}", "A", t, True), (f"u{u}", "B", t + timedelta(minutes=5), True)]
        rows += [(f"u{u}", f"n{u % 7}", t + timedelta(hours=3), True)]  # outside the window
        rows += [(f"u{u}", "C", t + timedelta(minutes=5), False)]  # shown, not clicked
    rows += [("q", "A", START + timedelta(days=3), True), ("q", "D", START + timedelta(days=1), True)]
    return canonical(rows)


def test_covisitation_recovers_a_planted_pair() -> None:
    scorer = CoVisitation(window=timedelta(hours=1)).fit(planted_pair_events())
    cands = np.array(["B", "C", "n0", "n1", "A", "unseen"])
    t = START + timedelta(days=3, hours=1)
    scores = scorer.score(np.array(["q"] * 6), dt64([t] * 6), cands)
    assert scores.tolist() == [30.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # Before q's click on A, q's history (D) has no co-clicks: nothing to recommend.
    before = scorer.score(np.array(["q"]), dt64([START + timedelta(days=2)]), np.array(["B"]))
    assert before.tolist() == [0.0]


def test_covisitation_until_freezes_the_pair_counts() -> None:
    frozen = CoVisitation(until=START + timedelta(hours=10, minutes=1)).fit(planted_pair_events())
    t = dt64([START + timedelta(days=3, hours=1)])
    # Pairs of users u0..u10 complete at u's hour + 5 min: those of u0..u9 before `until`.
    assert frozen.score(np.array(["q"]), t, np.array(["B"])).tolist() == [10.0]


@pytest.mark.parametrize("seed", range(3))
def test_co_click_pairs_match_a_double_loop(seed: int) -> None:
    from feedrank.eval.covisitation import co_clicks

    rng = np.random.default_rng(seed)
    n = 300
    user = np.sort(rng.integers(0, 12, n))
    ts = rng.integers(0, 500, n)
    order = np.lexsort((ts, user))
    user, ts, item = user[order], ts[order], rng.integers(0, 9, n)
    first, second, when = co_clicks(user, item, ts, window_us=40, max_lag=n)
    got = sorted(zip(first.tolist(), second.tolist(), when.tolist(), strict=True))
    expected = sorted(
        (int(item[i]), int(item[j]), int(ts[j]))
        for i in range(n)
        for j in range(i + 1, n)
        if user[i] == user[j] and ts[j] - ts[i] <= 40 and item[i] != item[j]
    )
    assert got == expected and len(got) > 50


def test_random_scorer_is_deterministic_and_uniform() -> None:
    users, items = np.array(["u"] * 1000), np.array([f"i{i}" for i in range(1000)])
    ts = dt64([START] * 1000)
    a = RandomScorer(seed=5).score(users, ts, items)
    assert np.array_equal(a, RandomScorer(seed=5).score(users, ts, items))
    assert not np.array_equal(a, RandomScorer(seed=6).score(users, ts, items))
    assert a.min() >= 0.0 and a.max() < 1.0 and abs(a.mean() - 0.5) < 0.05


def test_misuse_is_reported() -> None:
    with pytest.raises(DataError, match="clicked"):
        GlobalPopularity().fit(pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "ts": [START]}))
    with pytest.raises(RuntimeError, match="fit"):
        CoVisitation().score(np.array(["u"]), dt64([START]), np.array(["i"]))
    with pytest.raises(ValueError):
        GlobalPopularity().fit(random_events(num_requests=3)).score(
            np.array(["u"]), dt64([]), np.array(["i"])
        )


class _Fitted:
    """A scorer written against the protocol only, to check `Scorer` is satisfiable."""

    def fit(self, events: pl.DataFrame) -> Self:
        return self

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        return np.zeros(len(item_ids))


def test_score_slates_reshapes_the_flat_scores() -> None:
    scorer: Scorer = _Fitted()
    out = score_slates(scorer, np.array(["a", "b"]), dt64([START, START]), np.array([["x", "y", "z"]] * 2))
    assert out.shape == (2, 3)
    with pytest.raises(ValueError):
        score_slates(scorer, np.array(["a"]), dt64([START]), np.array(["x", "y"]))
