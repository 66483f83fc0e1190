"""The HTTP service end to end on a bundle of the tiny world (FastAPI's test client, real app)."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feedrank.serve.cache import CacheSettings
from feedrank.serve.settings import ServeSettings
from tests.integration.http import admin_client
from tests.serve.conftest import RedisServer


@pytest.fixture
def client(bundle_path: Path) -> Iterator[TestClient]:
    # No deadline: a loaded CI box can overrun 50 ms, and these tests check what a feed holds.
    settings = ServeSettings(clock="bundle", deadline_ms=1e9, source_budget_ms=1e9)
    with admin_client(settings, bundle_path) as c:
        yield c


def known_user(bundle_path: Path) -> str:
    events = bundle_path / "events.parquet"
    import polars as pl

    return str(pl.read_parquet(events).filter(pl.col("clicked")).get_column("user_id")[0])


def test_feed_for_a_known_and_a_brand_new_user(client: TestClient, bundle_path: Path) -> None:
    user = known_user(bundle_path)
    first = client.post("/v1/feed", json={"user_id": user, "k": 10}).json()
    assert len(first["items"]) == 10 and first["known_user"] and first["cache"] == "miss"
    assert len({i["item_id"] for i in first["items"]}) == 10
    assert set(first["timings_ms"]) >= {"user", "retrieve", "rank", "rerank", "total"}
    assert first["degraded"] == []
    again = client.post("/v1/feed", json={"user_id": user, "k": 10}).json()
    assert again["cache"] == "hit"
    assert [i["item_id"] for i in again["items"]] == [i["item_id"] for i in first["items"]]
    new = client.post("/v1/feed", json={"user_id": "someone-new", "demographics": {"country": "de"}}).json()
    assert not new["known_user"] and len(new["items"]) == 20


def test_events_invalidate_the_cache_and_extend_the_history(client: TestClient, bundle_path: Path) -> None:
    user = known_user(bundle_path)
    before = client.post("/v1/feed", json={"user_id": user, "k": 5}).json()
    clicked = before["items"][0]["item_id"]
    response = client.post(
        "/v1/events",
        json={
            "events": [
                {"user_id": user, "item_id": clicked, "type": "click"},
                {"user_id": user, "item_id": "no-such-item", "type": "click"},
            ]
        },
    ).json()
    assert response == {"accepted": 1, "ignored": 1}
    after = client.post("/v1/feed", json={"user_id": user, "k": 5, "exclude": [clicked]}).json()
    assert after["cache"] == "miss"  # recomputed from the extended history
    assert clicked not in {i["item_id"] for i in after["items"]}
    hide = before["items"][1]["item_id"]
    client.post("/v1/events", json={"events": [{"user_id": user, "item_id": hide, "type": "hide"}]})
    feed = client.post("/v1/feed", json={"user_id": user, "k": 20}).json()
    assert hide not in {i["item_id"] for i in feed["items"]}
    metrics = client.get("/metrics").text
    assert 'feedrank_events_total{accepted="false",type="click"} 1' in metrics
    assert "feedrank_unknown_item_events_total 1" in metrics
    assert 'feedrank_stage_latency_ms_bucket{stage="rank",le="+Inf"}' in metrics
    assert "feedrank_cache_hits_total" in metrics and "feedrank_cache_fallbacks_total 0" in metrics


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"user_id": ""}, 422),
        ({"user_id": "u1", "k": 0}, 422),
        ({"user_id": "u1", "k": 500}, 422),
        ({"user_id": "u1", "now": "yesterday"}, 422),
        ({"user_id": "u1", "exclude": "i1"}, 422),
    ],
)
def test_malformed_feed_requests_get_4xx(client: TestClient, body: dict[str, object], status: int) -> None:
    response = client.post("/v1/feed", json=body)
    assert response.status_code == status
    assert response.json()["detail"]


def test_malformed_bodies_and_events(client: TestClient) -> None:
    assert (
        client.post(
            "/v1/feed", content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    huge = json.dumps({"user_id": "u1", "exclude": ["x" * 100] * 1000})
    response = client.post("/v1/feed", content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    bad_event = {"events": [{"user_id": "u1", "item_id": "i1", "type": "purchase"}]}
    assert client.post("/v1/events", json=bad_event).status_code == 422
    assert client.post("/v1/events", json={"events": []}).status_code == 422
    negative = {"events": [{"user_id": "u1", "item_id": "i1", "type": "dwell", "dwell_s": -3}]}
    assert client.post("/v1/events", json=negative).status_code == 422


def test_health_readiness_and_docs(bundle_path: Path) -> None:
    with admin_client(ServeSettings(clock="bundle"), None, root=bundle_path.parent) as empty:
        assert empty.get("/healthz").json() == {"status": "ok"}
        assert empty.get("/readyz").status_code == 503
        assert empty.post("/v1/feed", json={"user_id": "u1"}).status_code == 503
        assert empty.post("/admin/reload", json={"bundle": str(bundle_path)}).status_code == 200
        assert empty.get("/readyz").status_code == 200
        assert "/v1/feed" in empty.get("/openapi.json").json()["paths"]


def test_a_missed_deadline_serves_the_ann_order_and_says_so(bundle_path: Path) -> None:
    settings = ServeSettings(clock="bundle", deadline_ms=0.001, rank_budget_ms=0.0)
    with admin_client(settings, bundle_path) as c:
        feed = c.post("/v1/feed", json={"user_id": "anyone", "k": 5}).json()
    assert len(feed["items"]) == 5
    assert any(d.startswith("rank skipped") for d in feed["degraded"])


def test_reload_under_concurrent_requests_fails_none(bundle_path: Path, tmp_path: Path) -> None:
    first = shutil.copytree(bundle_path, tmp_path / "b1")
    second = shutil.copytree(bundle_path, tmp_path / "b2")
    with admin_client(ServeSettings(clock="bundle"), first) as client:
        statuses = reload_while_requests_run(client, [second, first, second])
    assert statuses and set(statuses) == {200}


def reload_while_requests_run(client: TestClient, bundles: list[Path]) -> list[int]:
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            statuses.append(client.post("/v1/feed", json={"user_id": "u1", "k": 5}).status_code)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for path in bundles:
        assert client.post("/admin/reload", json={"bundle": str(path)}).status_code == 200
    stop.set()
    for t in threads:
        t.join()
    return statuses


def test_a_corrupted_bundle_is_refused_and_the_old_one_keeps_serving(
    bundle_path: Path, tmp_path: Path
) -> None:
    good = shutil.copytree(bundle_path, tmp_path / "good")
    bad = shutil.copytree(bundle_path, tmp_path / "bad")
    (bad / "items.parquet").write_bytes(b"tampered")
    with admin_client(ServeSettings(clock="bundle"), good) as client:
        response = client.post("/admin/reload", json={"bundle": str(bad)})
        assert response.status_code == 400 and "corrupted: items.parquet" in response.json()["detail"]
        assert client.post("/v1/feed", json={"user_id": "u1"}).status_code == 200
        assert client.post("/admin/reload", json={"bundle": str(tmp_path / "nowhere")}).status_code == 404


def test_redis_stopped_while_requests_run_fails_no_request(
    bundle_path: Path, redis_server: RedisServer
) -> None:
    settings = ServeSettings(clock="bundle", cache=CacheSettings(backend="redis", url=redis_server.url))
    statuses: list[int] = []
    with admin_client(settings, bundle_path) as c:

        def hammer(n: int) -> None:
            for i in range(n):
                statuses.append(c.post("/v1/feed", json={"user_id": f"u{i % 7}", "k": 5}).status_code)

        hammer(10)
        worker = threading.Thread(target=hammer, args=(40,))
        worker.start()
        redis_server.stop()
        worker.join()
        hammer(10)
        metrics = c.get("/metrics").text
    assert set(statuses) == {200} and len(statuses) == 60
    fallbacks = [line for line in metrics.splitlines() if line.startswith("feedrank_cache_fallbacks_total")]
    assert fallbacks and float(fallbacks[0].split()[-1]) > 0


def test_fresh_items_are_added_and_served(client: TestClient, bundle_path: Path) -> None:
    import polars as pl

    end = pl.read_parquet(bundle_path / "events.parquet").get_column("ts").max()
    assert isinstance(end, datetime)
    fresh = [
        {
            "item_id": f"fresh-{i}",
            "publisher_id": "p1",
            "category": "news",
            "content_type": "article",
            "published_ts": end.isoformat(),
        }
        for i in range(50)
    ]
    before = client.post(
        "/v1/events", json={"events": [{"user_id": "u1", "item_id": "fresh-0", "type": "click"}]}
    )
    assert before.json() == {"accepted": 0, "ignored": 1}
    assert client.post("/v1/items", json={"items": fresh}).json() == {"added": 50, "known": 0}
    assert client.post("/v1/items", json={"items": fresh[:5]}).json() == {"added": 0, "known": 5}
    after = client.post(
        "/v1/events", json={"events": [{"user_id": "u1", "item_id": "fresh-0", "type": "click"}]}
    )
    assert after.json() == {"accepted": 1, "ignored": 0}
    # 50 brand-new items from the same publisher and category: some reach a feed of 100
    feed = client.post("/v1/feed", json={"user_id": "someone", "k": 100}).json()
    assert any(i["item_id"].startswith("fresh-") for i in feed["items"])
    assert client.post("/v1/items", json={"items": [{"item_id": ""}]}).status_code == 422
