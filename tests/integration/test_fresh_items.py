"""Fresh items (POST /v1/items) go through the shared state: every replica serves them, reloads keep them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from feedrank.bundle.signing import Trust
from feedrank.candidates import SourcesConfig
from feedrank.serve.recommender import FeedRequest
from feedrank.serve.rerank import RerankConfig
from feedrank.serve.service import FeedService
from feedrank.serve.settings import ServeSettings
from feedrank.serve.state import MemoryStateStore, StateSettings, StateStore, make_state_store
from tests.integration.http import BUNDLE_KEY

# Only the fresh source proposes candidates and the feed keeps every one: a feed is the fresh list.
FRESH_ONLY = ServeSettings(
    clock="bundle",
    candidates=60,
    deadline_ms=600_000,
    source_budget_ms=600_000,
    sources=SourcesConfig(ann=0, trending=0, covis=0, fresh=1),
    rerank=RerankConfig(order=()),
)


@pytest.fixture(params=["memory", "redis"])
def shared_state(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    url = request.getfixturevalue("redis_url")
    store = make_state_store(StateSettings(backend="redis", url=url, key_prefix=f"fresh-{id(request)}:"))
    yield store
    store.close()  # type: ignore[attr-defined]


def replica(bundle_path: Path, state: StateStore) -> FeedService:
    service = FeedService(FRESH_ONLY, Trust(key=BUNDLE_KEY), state=state)
    service.load(bundle_path)
    return service


def posted(service: FeedService, ids: list[str]) -> pl.DataFrame:
    now = service.settings.now_us(service.recommender.bundle)
    published = datetime.fromtimestamp(now / 1e6, tz=UTC)
    return pl.DataFrame(
        {
            "item_id": ids,
            "publisher_id": ["p1"] * len(ids),
            "category": ["news"] * len(ids),
            "published_ts": [published] * len(ids),
        }
    )


def feed_ids(service: FeedService, user: str) -> set[str]:
    return {item.item_id for item in service.feed(FeedRequest(user, k=60)).items}


def test_an_item_posted_to_one_replica_is_served_by_another(
    bundle_path: Path, shared_state: StateStore
) -> None:
    a, b = replica(bundle_path, shared_state), replica(bundle_path, shared_state)
    fresh = [f"fresh-{i}" for i in range(5)]
    assert not set(fresh) & feed_ids(b, "reader")
    assert a.add_items(posted(a, fresh)) == 5
    assert set(fresh) <= feed_ids(b, "reader")  # B's next feed, no wait: it syncs first
    assert set(fresh) <= feed_ids(a, "reader")
    assert b.add_items(posted(b, [*fresh[:2], "fresh-new"])) == 1  # known to B through the state
    assert "fresh-new" in feed_ids(a, "another")


def test_an_event_on_an_item_another_replica_just_took_is_accepted(
    bundle_path: Path, shared_state: StateStore
) -> None:
    a, b = replica(bundle_path, shared_state), replica(bundle_path, shared_state)
    assert a.add_items(posted(a, ["fresh-x"])) == 1
    assert b.event("reader", "fresh-x", "click", None, None)  # before any feed on B
    assert b.recommender.online.unknown_clicks == 0
    assert a.event("reader-2", "fresh-x", "click", None, None)
    assert a.recommender.online.unknown_clicks == b.recommender.online.unknown_clicks == 0


def test_a_reload_and_a_later_replica_keep_posted_items(bundle_path: Path) -> None:
    state = MemoryStateStore()
    a = replica(bundle_path, state)
    assert a.add_items(posted(a, ["fresh-kept"])) == 1
    first = a.recommender.catalog.exists_us[a.recommender.catalog.rows(["fresh-kept"])[0]]
    a.load(bundle_path)  # a new Recommender from the bundle alone
    catalog = a.recommender.catalog
    assert catalog.rows(["fresh-kept"])[0] >= 0
    assert catalog.exists_us[catalog.rows(["fresh-kept"])[0]] == first  # from when it was posted
    assert "fresh-kept" in feed_ids(a, "reader")
    later = replica(bundle_path, state)
    assert "fresh-kept" in feed_ids(later, "reader")
    assert later.add_items(posted(later, ["fresh-kept"])) == 0
