"""Online state outside the bundle: no stale cache writes, reloads and new replicas keep it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from feedrank.bundle.signing import Trust
from feedrank.serve.recommender import FeedRequest, Recommender
from feedrank.serve.service import FeedService
from feedrank.serve.settings import ServeSettings
from feedrank.serve.state import MemoryStateStore
from tests.integration.http import BUNDLE_KEY

HOUR_US = 3_600_000_000


def known_user(bundle_path: Path) -> str:
    events = pl.read_parquet(bundle_path / "events.parquet")
    return str(events.filter(pl.col("clicked")).get_column("user_id")[0])


def serving(bundle_path: Path, state: MemoryStateStore | None = None) -> FeedService:
    service = FeedService(ServeSettings(clock="bundle"), Trust(key=BUNDLE_KEY), state=state)
    service.load(bundle_path)
    return service


def trending(rec: Recommender, now: int) -> np.ndarray:
    return rec.candidate_stage.sources.trending.scores(now, len(rec.catalog.item_ids))


def test_an_embedding_computed_before_an_event_cannot_overwrite_its_invalidation(bundle_path: Path) -> None:
    rec = serving(bundle_path).recommender
    user = known_user(bundle_path)
    now = rec.bundle.snapshot_us + HOUR_US
    clicked = str(rec.catalog.item_ids[-1])
    compute = rec.stages.user_vectors
    before: list[int] = []

    def computed_then_event_lands(
        rows: np.ndarray, recent: Sequence[Sequence[int]], t: int, demo: object = None
    ) -> np.ndarray:
        vectors = compute(rows, recent, t)  # from the history read before the event
        if not before:
            before.append(rec.online.user(user).generation)
            assert rec.record_event(user, clicked, "click", now - 1_000_000, None)  # before the put
        return vectors

    rec.stages.user_vectors = computed_then_event_lands  # type: ignore[method-assign,assignment]
    assert rec.recommend(FeedRequest(user, k=5, now_us=now)).cache == "miss"
    rec.stages.user_vectors = compute  # type: ignore[method-assign]
    stale = rec.cache.get(user, before[0]) if rec.cache is not None else None
    assert stale is not None  # the late put happened, after the event's invalidation

    after = rec.recommend(FeedRequest(user, k=5, now_us=now))
    assert after.cache == "miss"  # ... and nobody reads it: the event moved the generation on
    view = rec.online.user(user)
    assert view.generation == before[0] + 1 and rec.catalog.rows([clicked])[0] in view.history(now)
    row = int(rec.bundle.space.users.rows(pl.Series([user]))[0])
    fresh = compute(np.array([row]), [view.history(now)], now)[0]
    cached = rec.cache.get(user, view.generation) if rec.cache is not None else None
    assert cached is not None and not np.allclose(stale, fresh)
    np.testing.assert_allclose(cached, fresh, rtol=1e-5)
    assert rec.recommend(FeedRequest(user, k=5, now_us=now)).cache == "hit"
    assert clicked not in [i.item_id for i in after.items]


def test_a_reload_keeps_events_posted_before_it(bundle_path: Path) -> None:
    service = serving(bundle_path)
    old = service.recommender
    user = known_user(bundle_path)
    now = service.settings.now_us(old.bundle)
    items = [str(i) for i in old.catalog.item_ids[:3]]
    for item in items:
        assert service.event(user, item, "click", now - 60_000_000, None)
    assert service.event(user, str(old.catalog.item_ids[5]), "hide", None, None)
    at = now + 1
    before_reload = (old.online.user(user), trending(old, at))
    service.load(bundle_path)  # the same bundle again: a new Recommender, empty of its own state
    new = service.recommender
    assert new is not old
    view = new.online.user(user)
    assert view.history(at) == before_reload[0].history(at) and len(view.history(at)) == 3
    assert view.hidden == before_reload[0].hidden == {5}
    np.testing.assert_array_equal(trending(new, at), before_reload[1])
    feed = new.recommend(FeedRequest(user, k=50, now_us=at))
    assert not {*items, str(old.catalog.item_ids[5])} & {i.item_id for i in feed.items}


def test_a_replica_started_later_sees_the_same_trending_and_histories(bundle_path: Path) -> None:
    state = MemoryStateStore()
    first = serving(bundle_path, state)
    rec_a = first.recommender
    now = first.settings.now_us(rec_a.bundle)
    hot = str(rec_a.catalog.item_ids[7])
    base = trending(rec_a, now)
    for i in range(5):
        assert first.event(f"reader-{i}", hot, "click", now - 30_000_000, None)
    moved = trending(rec_a, now)
    assert moved[7] > base[7]
    later = serving(bundle_path, state).recommender  # shares the state, not the process's counters
    np.testing.assert_array_equal(trending(later, now), moved)
    assert later.online.user("reader-3").history(now) == [7] == rec_a.online.user("reader-3").history(now)
    # an event taken by the new replica reaches the first one's next feed
    assert later.record_event("reader-0", str(rec_a.catalog.item_ids[8]), "click", now - 1_000_000, None)
    rec_a.recommend(FeedRequest("reader-0", k=5, now_us=now))  # syncs before serving
    np.testing.assert_array_equal(trending(rec_a, now), trending(later, now))


def test_a_newer_bundle_does_not_count_the_events_its_snapshot_holds(bundle_path: Path) -> None:
    state = MemoryStateStore()
    service = serving(bundle_path, state)
    old = service.recommender
    now = service.settings.now_us(old.bundle)
    hot = str(old.catalog.item_ids[7])
    for i in range(5):  # taken before the newer bundle is cut: that bundle holds them
        assert old.record_event(f"early-{i}", hot, "click", now - 30_000_000, None)
    cut = service.settings.now_us(old.bundle)
    while service.settings.now_us(old.bundle) <= cut:  # the service clock moves past the cut
        pass
    for i in range(3):
        assert old.record_event(f"late-{i}", hot, "click", now - 20_000_000, None)
    assert old.record_event("early-0", str(old.catalog.item_ids[9]), "click", now - 10_000_000, None)
    window = 24 * HOUR_US
    assert old.online.item_clicks(np.array([7]), now, window)[0] == 8  # its own bundle holds none

    newer = Recommender(replace(old.bundle, snapshot_us=cut), service.settings, old.reranker, state=state)
    assert newer.online.item_clicks(np.array([7]), now, window)[0] == 3  # not 8: no double count
    assert newer.online.bundle_clicks == 5
    assert newer.online.user("early-0").history(now) == [9]  # the click on 7 is the bundle's
    assert newer.online.user("late-0").history(now) == [7]
    assert newer.online.user("early-0").seen == {7, 9}  # still not shown again
    feed = newer.recommend(FeedRequest("early-0", k=50, now_us=now))
    assert not {hot, str(old.catalog.item_ids[9])} & {i.item_id for i in feed.items}
