"""Candidate sources in the service: online updates, provenance in the feed, graceful failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from feedrank.candidates import SourceList, SourcesConfig
from feedrank.serve.recommender import Recommender
from feedrank.serve.settings import ServeSettings
from tests.integration.http import admin_client


# No deadline and no source budget: on a busy 2-core box a cold first request could otherwise
# skip the sources it tests (trending once overran its 10 ms budget at a load average of 15).
@pytest.fixture
def client(bundle_path: Path) -> Iterator[TestClient]:
    settings = ServeSettings(clock="bundle", deadline_ms=1e9, source_budget_ms=1e9)
    with admin_client(settings, bundle_path) as c:
        yield c


def _recommender(client: TestClient) -> Recommender:
    recommender: Recommender = client.app.state.service.recommender  # type: ignore[attr-defined]
    return recommender


def _now(r: Recommender) -> int:
    return r.settings.now_us(r.bundle)


def _eligible(r: Recommender) -> np.ndarray:
    return np.ones(len(r.catalog.item_ids), dtype=bool)


def _score(found: SourceList, row: int) -> float:
    hit = np.flatnonzero(found.rows == row)
    return float(found.scores[hit[0]]) if hit.size else 0.0


def test_a_click_is_trending_and_co_visited_in_the_very_next_request(client: TestClient) -> None:
    r = _recommender(client)
    sources = r.candidate_stage.sources
    x, y = (str(r.catalog.item_ids[k]) for k in (3, 7))
    trending_before = sources.trending_list(_now(r), 5, _eligible(r))
    assert 7 not in trending_before.rows.tolist()
    covis_before = _score(sources.covis_list("reader-b", _now(r), 500, _eligible(r)), 7)
    clicks = [("reader-a", x), ("reader-a", y)] + [(f"fan-{k}", y) for k in range(6)] + [("reader-b", x)]
    events = [{"user_id": user, "item_id": item, "type": "click"} for user, item in clicks]
    assert client.post("/v1/events", json={"events": events}).json() == {"accepted": 9, "ignored": 0}
    assert sources.trending_list(_now(r), 5, _eligible(r)).rows[0] == 7  # six clicks just now
    covis_after = _score(sources.covis_list("reader-b", _now(r), 500, _eligible(r)), 7)
    assert covis_after >= covis_before + 0.99  # reader-a went on from x to y a moment ago
    feed = client.post("/v1/feed", json={"user_id": "reader-b", "k": 100}).json()
    assert feed["candidates"]["trending"] > 0 and feed["candidates"]["covis"] > 0, feed["skipped_sources"]
    assert all(item["sources"] for item in feed["items"])  # every item says who proposed it
    assert {s for item in feed["items"] for s in item["sources"]} >= {"ann", "trending"}


def test_ann_only_is_still_selectable(bundle_path: Path) -> None:
    settings = ServeSettings(
        clock="bundle", candidates=50, sources=SourcesConfig(trending=0, covis=0, fresh=0)
    )
    with admin_client(settings, bundle_path) as c:
        feed = c.post("/v1/feed", json={"user_id": "anyone", "k": 10}).json()
    assert feed["candidates"] == {"ann": 50, "trending": 0, "covis": 0, "fresh": 0}
    assert len(feed["items"]) == 10
    assert all(item["sources"] == ["ann"] for item in feed["items"])
    assert set(feed["timings_ms"]) >= {"source.ann", "retrieve", "rank"}


def test_a_raising_source_is_skipped_and_counted(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> SourceList:
        raise RuntimeError("trending store unreachable")

    monkeypatch.setattr(_recommender(client).candidate_stage.sources, "trending_list", broken)
    feed = client.post("/v1/feed", json={"user_id": "anyone", "k": 10}).json()
    assert len(feed["items"]) == 10
    assert feed["candidates"]["trending"] == 0 and feed["candidates"]["ann"] > 0
    assert feed["skipped_sources"] == {"trending": "failed: RuntimeError"}
    assert "source skipped: trending (failed: RuntimeError)" in feed["degraded"]
    metrics = client.get("/metrics").text
    assert 'feedrank_source_skipped_total{reason="failed",source="trending"} 1' in metrics
    assert 'feedrank_source_latency_ms_count{source="covis"} 1' in metrics
    assert 'feedrank_source_candidates_total{source="ann"}' in metrics


def test_a_source_over_its_budget_is_skipped(bundle_path: Path) -> None:
    settings = ServeSettings(
        clock="bundle", deadline_ms=1e9, source_budget_ms=0.0
    )  # every non-ANN source overruns
    with admin_client(settings, bundle_path) as c:
        feed = c.post("/v1/feed", json={"user_id": "anyone", "k": 10}).json()
    assert set(feed["skipped_sources"]) == {"trending", "covis", "fresh"}
    assert all(why.startswith("overran") for why in feed["skipped_sources"].values())
    assert len(feed["items"]) == 10
    assert feed["candidates"] == {"ann": 500, "trending": 0, "covis": 0, "fresh": 0}
