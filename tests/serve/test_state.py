"""The online state boundary: both backends keep the same contract (bounds, generations, click log)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from feedrank.serve.state import (
    FreshItem,
    MemoryStateStore,
    StateSettings,
    StateStore,
    StoredEvent,
    make_state_store,
)
from feedrank.serve.state_redis import RedisStateStore


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[StateStore]:
    settings = StateSettings(events_per_user=3, marks_per_user=3, click_log_len=1000)
    if request.param == "memory":
        yield MemoryStateStore(settings)
        return
    url = request.getfixturevalue("redis_url")
    made = make_state_store(replace(settings, backend="redis", url=url))
    assert isinstance(made, RedisStateStore)
    yield made
    made.close()


def click(user: str, item: str, ts: int, kind: str = "click") -> StoredEvent:
    return StoredEvent(user, item, kind, ts)


def test_events_generations_seen_and_hidden(store: StateStore) -> None:
    assert store.user("nobody").generation == 0 and store.user("nobody").events == []
    assert store.record(click("u1", "a", 10)) == 1
    assert store.record(click("u1", "a", 11, "dwell")) == 2
    assert store.record(click("u1", "b", 12, "hide")) == 3
    assert store.record(click("u2", "c", 13)) == 4  # a new user starts above every generation issued
    state = store.user("u1")
    assert state.generation == store.generation("u1") == 3
    assert state.events == [(10, "a", "click", 10), (11, "a", "dwell", 11)]
    assert state.seen == frozenset({"a"}) and state.hidden == frozenset({"b"})


def test_seen_and_hidden_keep_the_newest_marks_only(store: StateStore) -> None:
    """Within the TTL (a week) a heavy reader's clicked and hidden items are capped, the oldest first."""
    for ts in range(1, 8):
        store.record(click("u1", f"c{ts}", ts))
        store.record(click("u1", f"h{ts}", ts, "hide"))
    store.record(click("u1", "c2", 20))  # clicked again: the newest now, kept
    state = store.user("u1")
    assert state.seen == frozenset({"c6", "c7", "c2"})
    assert state.hidden == frozenset({"h5", "h6", "h7"})


def test_a_returning_user_never_reuses_a_generation(store: StateStore) -> None:
    """An evicted or expired user's cache entries (keyed on user and generation) may outlive its
    state; a new life must not walk back through the generations they are keyed on."""
    issued = [store.record(click("u1", "a", ts)) for ts in range(5)]
    assert issued == sorted(set(issued)) and issued[-1] - issued[0] == 4  # +1 per event
    if isinstance(store, RedisStateStore):
        store.client.delete("feedrank:state:u:u1:gen", "feedrank:state:u:u1:events")  # as eviction does
    else:
        assert isinstance(store, MemoryStateStore)
        store._users.pop("u1")  # as eviction does
    assert store.generation("u1") == 0
    again = [store.record(click("u1", "b", 10 + ts)) for ts in range(5)]
    assert min(again) > max(issued)
    assert store.record(click("u2", "c", 20)) > max(again)


def test_per_user_history_keeps_the_newest_events_only(store: StateStore) -> None:
    for i in range(10):
        store.record(click("u1", f"i{i}", 100 + i))
    assert [item for _, item, _, _ in store.user("u1").events] == ["i7", "i8", "i9"]
    assert store.generation("u1") == 10


def test_the_click_log_is_read_from_a_cursor_in_arrival_order(store: StateStore) -> None:
    store.record(click("u1", "a", 30))
    store.record(click("u2", "b", 10, "dwell"))  # not a click: not logged
    store.record(click("u2", "c", 20))
    first, cursor = store.clicks_after("")
    assert [(c.user_id, c.item_id, c.ts_us) for c in first] == [("u1", "a", 30), ("u2", "c", 20)]
    assert store.clicks_after(cursor) == ([], cursor)
    assert [c.logged_us for c in first] == [30, 20]  # no receiving time: the event's own
    store.record(click("u3", "d", 40))
    more, cursor2 = store.clicks_after(cursor)
    assert [c.item_id for c in more] == ["d"] and cursor2 != cursor
    # a second reader (another replica) replays everything from the start, in pages
    page, at = store.clicks_after("", limit=2)
    rest, _ = store.clicks_after(at, limit=2)
    assert [c.item_id for c in page + rest] == ["a", "c", "d"]


def test_memory_state_is_bounded_in_users_and_expires() -> None:
    clock = FakeClock()
    store = MemoryStateStore(StateSettings(max_users=100, user_ttl_s=60.0), clock=clock)
    for i in range(1000):
        store.record(click(f"new-{i}", "a", i))
    assert store.stats()["users"] == 100 and store.stats()["users_evicted"] == 900
    assert store.user("new-0").generation == 0  # the least recently active went first
    assert store.user("new-999").generation == 1000  # each new user starts above every earlier one
    clock.t += 61.0
    assert store.user("new-999").events == [] and store.generation("new-999") == 0


def test_memory_click_log_is_bounded() -> None:
    store = MemoryStateStore(StateSettings(click_log_len=5))
    for i in range(12):
        store.record(click("u", f"i{i}", i))
    clicks, _ = store.clicks_after("")
    assert [c.item_id for c in clicks] == [f"i{i}" for i in range(7, 12)]


def test_redis_keys_expire_and_the_stream_is_capped(redis_url: str) -> None:
    settings = StateSettings(backend="redis", url=redis_url, user_ttl_s=30.0, click_log_len=100)
    store = RedisStateStore.from_settings(settings)
    for i in range(2000):
        store.record(click(f"u{i % 3}", f"i{i}", i))
    store.record(click("u0", "x", 5000, "hide"))
    raw = redis.Redis.from_url(redis_url)
    for part in ("events", "seen_at", "hidden_at", "gen"):
        assert 0 < raw.pttl(f"feedrank:state:u:u0:{part}") <= 30_000
    assert raw.xlen("feedrank:state:clicks") < 2000  # trimmed to about click_log_len
    raw.close()
    store.close()


def test_redis_state_is_bounded_in_users(redis_url: str) -> None:
    """A stream of new users keeps at most max_users users' keys; the least recently active go whole."""
    settings = StateSettings(backend="redis", url=redis_url, max_users=100, click_log_len=100)
    store = RedisStateStore.from_settings(settings)
    store.record(click("new-0", "x", 0, "hide"))  # the oldest user has all four keys
    for i in range(1000):
        store.record(click(f"new-{i}", "a", 1 + i))
    store.record(click("new-500", "b", 2000))  # evicted long ago: starts over
    raw = redis.Redis.from_url(redis_url)
    user_keys = list(raw.scan_iter("feedrank:state:u:*", count=10_000))
    # 100 users x (events, seen, gen); without the cap all 1,001 users' keys stay (their TTL is a week)
    assert len(user_keys) == 300
    assert not any(key.startswith(b"feedrank:state:u:new-0:") for key in user_keys)
    stats = store.stats()
    assert stats["users"] == 100 and stats["users_evicted"] == 901 and stats["users_expired"] == 0
    assert store.user("new-0") == store.user("nobody")  # no hidden set left behind either
    assert store.user("new-999").generation == 1001 and store.user("new-899").generation == 0
    assert store.user("new-500").events == [(2000, "b", "click", 2000)]
    assert store.user("new-500").generation == 1002  # not 1 again: its old generation 502 stays unused
    raw.close()
    store.close()


def test_redis_users_past_their_ttl_leave_the_users_index(redis_url: str) -> None:
    store = RedisStateStore.from_settings(
        StateSettings(backend="redis", url=redis_url, user_ttl_s=0.05, max_users=100)
    )
    for i in range(10):
        store.record(click(f"u{i}", "a", i))
    time.sleep(0.2)  # longer than the TTL: the keys expire and the next event drops them from the index
    store.record(click("late", "a", 100))
    stats = store.stats()
    assert stats["users"] == 1 and stats["users_expired"] == 10 and stats["users_evicted"] == 0
    store.close()


def test_events_keep_when_the_service_took_them(store: StateStore) -> None:
    store.record(StoredEvent("u1", "a", "click", 100, received_us=250))
    store.record(StoredEvent("u1", "b", "click", 300, received_us=200))  # a client clock ahead
    assert store.user("u1").events == [(100, "a", "click", 250), (300, "b", "click", 300)]
    clicks, _ = store.clicks_after("")
    assert [(c.ts_us, c.logged_us) for c in clicks] == [(100, 250), (300, 300)]


def test_the_item_log_is_read_from_a_cursor_in_arrival_order(store: StateStore) -> None:
    assert store.items_after("") == ([], "")
    first = [
        FreshItem("n1", 10, publisher_id="p", category="c", published_us=5, title="Tëst | x"),
        FreshItem("n2", 11),
    ]
    store.add_items(first)
    found, cursor = store.items_after("")
    assert found == first  # every field comes back as it went in
    assert store.items_after(cursor) == ([], cursor)
    store.add_items([FreshItem("n3", 12, content_type="video")])
    more, cursor2 = store.items_after(cursor)
    assert [i.item_id for i in more] == ["n3"] and cursor2 != cursor
    page, at = store.items_after("", limit=2)
    rest, _ = store.items_after(at, limit=2)
    assert [i.item_id for i in page + rest] == ["n1", "n2", "n3"]


def test_memory_item_log_is_bounded() -> None:
    store = MemoryStateStore(StateSettings(item_log_len=4))
    store.add_items([FreshItem(f"n{i}", i) for i in range(10)])
    items, _ = store.items_after("")
    assert [i.item_id for i in items] == ["n6", "n7", "n8", "n9"]
    assert store.stats()["items_logged"] == 10
