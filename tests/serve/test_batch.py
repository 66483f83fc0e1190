"""The batched path gives the per-request path's feeds: same users, same time, same online events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedrank.bundle import Bundle, load_bundle
from feedrank.candidates import SourcesConfig
from feedrank.serve.batch import BatchRecommender, BatchRequest
from feedrank.serve.recommender import FeedRequest, Recommender
from feedrank.serve.rerank import RerankConfig, build_reranker
from feedrank.serve.settings import ServeSettings
from tests.integration.conftest import bundle_path, runs, split_dir  # noqa: F401  (the tiny world)

K = 10
HOUR_US = 3_600_000_000
ANN_ONLY = SourcesConfig(trending=0, covis=0, fresh=0)


@pytest.fixture(scope="module")
def bundle(bundle_path: Path) -> Bundle:  # noqa: F811
    return load_bundle(bundle_path)


def recommender(
    bundle: Bundle,
    *,
    rerank: bool,
    candidates: int = 60,
    sources: SourcesConfig = ANN_ONLY,
    **settings: float,
) -> Recommender:
    config = RerankConfig() if rerank else RerankConfig(order=())
    # No source may be skipped for time: a skipped source would make the two paths differ.
    settings = {"source_budget_ms": 1e9, **settings}
    serve = ServeSettings(candidates=candidates, deadline_ms=1e9, rerank=config, sources=sources, **settings)  # type: ignore[arg-type]
    return Recommender(bundle, serve, build_reranker(config), cache=None)


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


def per_request(rec: Recommender, users: list[str], now: int, exclude: list[list[str]]) -> list[list[str]]:
    demo = {"age_bucket": "25-34", "device": "mobile"}
    feeds = [
        rec.recommend(FeedRequest(u, k=K, now_us=now, exclude=e, demographics=demo))
        for u, e in zip(users, exclude, strict=True)
    ]
    assert not any(f.degraded for f in feeds)
    return [[item.item_id for item in f.items] for f in feeds]


@pytest.mark.parametrize("sources", [ANN_ONLY, SourcesConfig()], ids=["ann-only", "all-sources"])
@pytest.mark.parametrize("rerank", [True, False], ids=["rerank", "no-rerank"])
def test_batch_feeds_equal_per_request_feeds(bundle: Bundle, rerank: bool, sources: SourcesConfig) -> None:
    rec = recommender(bundle, rerank=rerank, sources=sources)
    now = bundle.snapshot_us + HOUR_US
    users = users_of(bundle)
    exclude = with_events(rec, users, now)
    expected = per_request(rec, users, now, exclude)
    batch = BatchRecommender(rec, rerank=rerank)
    demo = [{"age_bucket": "25-34", "device": "mobile"}] * len(users)
    feeds = batch.recommend(BatchRequest(users, now, K, demographics=demo, exclude=exclude))
    got = [[i for i in row if i is not None] for row in feeds.item_ids.tolist()]
    assert all(len(f) == K for f in expected)  # real feeds, or the comparison proves nothing
    assert got == expected
    assert batch.rows_ranked == len(users) * rec.settings.candidates
    hidden = str(rec.catalog.item_ids[-40:][3])
    assert all(hidden not in f for f in got[:4])
    assert np.array_equal(feeds.rows >= 0, np.isfinite(feeds.scores))


def test_two_tower_order_equals_a_request_whose_ranking_was_skipped(bundle: Bundle) -> None:
    # deadline == rank budget: the per-request path always skips the ranker and serves ANN order
    rec = recommender(bundle, rerank=False, rank_budget_ms=15.0)
    rec_skip = Recommender(
        bundle,
        ServeSettings(
            candidates=60,
            deadline_ms=15.0,
            rank_budget_ms=15.0,
            rerank=RerankConfig(order=()),
            sources=ANN_ONLY,
        ),
        build_reranker(RerankConfig(order=())),
        cache=None,
    )
    now = bundle.snapshot_us + HOUR_US
    users = users_of(bundle)
    expected = [[i.item_id for i in rec_skip.recommend(FeedRequest(u, k=K, now_us=now)).items] for u in users]
    feeds = BatchRecommender(rec, rank=False, rerank=False).recommend(BatchRequest(users, now, K))
    assert feeds.item_ids.tolist() == expected


def test_short_feeds_are_padded_and_weights_change_the_score(bundle: Bundle) -> None:
    rec = recommender(bundle, rerank=False, candidates=4)
    now = bundle.snapshot_us + HOUR_US
    batch = BatchRecommender(rec, rerank=False, weights={"click": 1.0})
    feeds = batch.recommend(BatchRequest(["u1", "u2"], now, K))
    assert feeds.rows.shape == (2, K)
    assert (feeds.rows[:, :4] >= 0).all() and (feeds.rows[:, 4:] == -1).all()
    assert all(i is None for i in feeds.item_ids[:, 4:].ravel())
    click_probability = feeds.scores[:, :4]
    assert ((click_probability > 0) & (click_probability < 1)).all()
    assert (np.diff(click_probability, axis=1) <= 0).all()  # feed order is score order
    empty = batch.recommend(BatchRequest([], now, K))
    assert empty.rows.shape == (0, K)
