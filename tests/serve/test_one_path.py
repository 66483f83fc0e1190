"""One recommender: a batch of users gives each user the feed of their own request (a batch of one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedrank.bundle import Bundle, load_bundle
from feedrank.candidates import SourcesConfig
from feedrank.serve.recommender import Feed, FeedRequest, Recommender
from feedrank.serve.rerank import RerankConfig, build_reranker
from feedrank.serve.settings import ServeSettings
from tests.integration.conftest import bundle_path, runs, split_dir  # noqa: F401  (the tiny world)

K = 10
HOUR_US = 3_600_000_000
ANN_ONLY = SourcesConfig(trending=0, covis=0, fresh=0)
DEMO = {"age_bucket": "25-34", "device": "mobile"}


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> Bundle:  # noqa: F811
    return load_bundle(bundle_path)


def recommender(
    bundle: Bundle,
    *,
    rerank: bool,
    candidates: int = 60,
    sources: SourcesConfig = ANN_ONLY,
    **options: object,
) -> Recommender:
    config = RerankConfig() if rerank else RerankConfig(order=())
    # A batch of one has a deadline: none may pass, or the two would differ for time, not logic.
    serve = ServeSettings(
        candidates=candidates, deadline_ms=1e9, source_budget_ms=1e9, rerank=config, sources=sources
    )
    return Recommender(bundle, serve, build_reranker(config), cache=None, rerank=rerank, **options)  # type: ignore[arg-type]


def users_of(bundle: Bundle) -> list[str]:
    known = [str(u) for u in bundle.space.users.user_ids[:: max(1, len(bundle.space.users) // 12)]]
    return [*known[:12], "someone-new", "another-new"]


def with_events(rec: Recommender, users: list[str], now: int) -> list[list[str]]:
    """Clicks, a share and hides before `now` for some users; returns per-user exclusions."""
    items = [str(i) for i in rec.catalog.item_ids[-40:]]
    rec.record_event(users[0], items[0], "click", now - HOUR_US, 45.0)
    rec.record_event(users[0], items[0], "share", now - HOUR_US, None)
    rec.record_event(users[1], items[1], "click", now - 2 * HOUR_US, 12.0)
    rec.record_event(users[-1], items[2], "click", now - HOUR_US, 30.0)  # an unknown user's history
    for user in users[:4]:
        rec.record_event(user, items[3], "hide", now - HOUR_US, None)
    return [[items[5], items[6]] if i % 3 == 0 else [] for i in range(len(users))]


def ids(feeds: list[Feed]) -> list[list[str]]:
    return [[item.item_id for item in f.items] for f in feeds]


@pytest.mark.parametrize("sources", [ANN_ONLY, SourcesConfig()], ids=["ann-only", "all-sources"])
@pytest.mark.parametrize("rerank", [True, False], ids=["rerank", "no-rerank"])
def test_a_batch_gives_each_user_the_feed_of_their_own_request(
    bundle: Bundle, rerank: bool, sources: SourcesConfig
) -> None:
    rec = recommender(bundle, rerank=rerank, sources=sources)
    now = bundle.snapshot_us + HOUR_US
    users = users_of(bundle)
    exclude = with_events(rec, users, now)
    single = [rec.recommend(FeedRequest(u, K, now, e, DEMO)) for u, e in zip(users, exclude, strict=True)]
    assert not any(f.degraded for f in single)
    batch = rec.recommend_batch(
        users, now, K, demographics=[DEMO] * len(users), exclude=exclude, deadline=False
    )
    assert all(len(f) == K for f in ids(single))  # real feeds, or the comparison proves nothing
    assert ids(batch) == ids(single)
    for one, many in zip(single, batch, strict=True):  # the same candidates, same scores
        assert one.candidates == many.candidates
        np.testing.assert_allclose([i.score for i in one.items], [i.score for i in many.items], rtol=1e-5)
        assert [i.sources for i in one.items] == [i.sources for i in many.items]
    hidden = str(rec.catalog.item_ids[-40:][3])
    clicked = str(rec.catalog.item_ids[-40:][0])
    assert all(hidden not in f for f in ids(batch)[:4]) and clicked not in ids(batch)[0]


def test_without_the_ranker_the_feed_is_the_two_tower_order(bundle: Bundle) -> None:
    two_tower = recommender(bundle, rerank=False, rank=False)
    # deadline == rank budget: a request always skips the ranker and serves the retrieval order
    skipping = Recommender(
        bundle,
        ServeSettings(
            candidates=60,
            deadline_ms=15.0,
            rank_budget_ms=15.0,
            rerank=RerankConfig(order=()),
            sources=ANN_ONLY,
        ),
        build_reranker(RerankConfig(order=())),
    )
    now = bundle.snapshot_us + HOUR_US
    users = users_of(bundle)
    expected = [skipping.recommend(FeedRequest(u, k=K, now_us=now)) for u in users]
    assert all(f.degraded and f.degraded[0].startswith("rank skipped") for f in expected)
    assert ids(two_tower.recommend_batch(users, now, K, deadline=False)) == ids(expected)
    assert two_tower.rows_ranked == 0


def test_short_feeds_and_head_weights(bundle: Bundle) -> None:
    rec = recommender(bundle, rerank=False, candidates=4, weights={"click": 1.0})
    now = bundle.snapshot_us + HOUR_US
    feeds = rec.recommend_batch(["u1", "u2"], now, K, deadline=False)
    assert [len(f.items) for f in feeds] == [4, 4] and rec.rows_ranked == 8
    click_probability = np.array([[i.score for i in f.items] for f in feeds])
    assert ((click_probability > 0) & (click_probability < 1)).all()
    assert (np.diff(click_probability, axis=1) <= 0).all()  # feed order is score order
    assert rec.recommend_batch([], now, K, deadline=False) == []
