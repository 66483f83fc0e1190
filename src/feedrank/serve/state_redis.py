"""The Redis backend of the online state: one state that every serving replica shares.

Keys (prefix `feedrank:state:` by default), each chosen for what is asked of it:

    u:{user}:events   list of "µs|logged µs|kind|item", RPUSH + LTRIM to the newest `events_per_user`
    u:{user}:seen     set of clicked item ids
    u:{user}:hidden   set of hidden item ids
    u:{user}:gen      integer, INCR per event of the user
    clicks            stream of {u, i, t, l (logged µs)}, XADD with MAXLEN ~ `click_log_len`;
                      replicas read it with XRANGE from their cursor (the stream id of the last
                      click they applied)
    items             stream of {j: the item as JSON}, XADD with MAXLEN ~ `item_log_len`; read
                      like the clicks, so an item posted to one replica reaches every catalog

Every per-user key expires `user_ttl_s` after the user's last event (PEXPIRE on each write), so a
stream of new users costs Redis memory for the users of the last TTL only. An event is one
MULTI/EXEC transaction and a user's state is read in another, so a reader never sees the history
of an event without its generation (or the other way round).

The click log is a stream rather than per-window counters because trending and co-visitation are
computed by the same code offline and online (candidates/): each replica replays the clicks into
those counters, and replicas that replayed the same log answer alike.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feedrank.serve.state import (
    Click,
    FreshItem,
    StateBackendError,
    StateSettings,
    StoredEvent,
    UserState,
)


class RedisStateStore:
    def __init__(self, client: redis.Redis, settings: StateSettings) -> None:
        self.client = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self._ttl_ms = max(1, round(settings.user_ttl_s * 1000))

    @classmethod
    def from_settings(cls, settings: StateSettings) -> RedisStateStore:
        client = redis.Redis.from_url(
            settings.url,
            socket_connect_timeout=settings.timeout_s,
            socket_timeout=settings.timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, settings)

    def _key(self, user_id: str, part: str) -> str:
        return f"{self.prefix}u:{user_id}:{part}"

    def record(self, event: StoredEvent) -> int:
        ttl, user = self._ttl_ms, event.user_id
        pipe = self.client.pipeline(transaction=True)
        if event.kind == "hide":
            pipe.sadd(self._key(user, "hidden"), event.item_id)
            pipe.pexpire(self._key(user, "hidden"), ttl)
        else:
            events = self._key(user, "events")
            pipe.rpush(events, f"{event.ts_us}|{event.logged_us}|{event.kind}|{event.item_id}")
            pipe.ltrim(events, -self.settings.events_per_user, -1)
            pipe.pexpire(events, ttl)
        if event.kind == "click":
            pipe.sadd(self._key(user, "seen"), event.item_id)
            pipe.pexpire(self._key(user, "seen"), ttl)
            fields: dict[Any, Any] = {
                "u": user,
                "i": event.item_id,
                "t": str(event.ts_us),
                "l": str(event.logged_us),
            }
            pipe.xadd(f"{self.prefix}clicks", fields, maxlen=self.settings.click_log_len, approximate=True)
        pipe.incr(self._key(user, "gen"))
        pipe.pexpire(self._key(user, "gen"), ttl)
        results = self._run(pipe)
        return int(results[-2])

    def user(self, user_id: str) -> UserState:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self._key(user_id, "gen"))
        pipe.lrange(self._key(user_id, "events"), 0, -1)
        pipe.smembers(self._key(user_id, "seen"))
        pipe.smembers(self._key(user_id, "hidden"))
        gen, raw_events, seen, hidden = self._run(pipe)
        events = []
        for raw in raw_events:
            ts, logged, kind, item = raw.decode().split("|", 3)
            events.append((int(ts), item, kind, int(logged)))
        return UserState(
            generation=int(gen or 0),
            events=events,
            seen=frozenset(s.decode() for s in seen),
            hidden=frozenset(h.decode() for h in hidden),
        )

    def generation(self, user_id: str) -> int:
        try:
            value = self.client.get(self._key(user_id, "gen"))
        except (redis.RedisError, OSError) as exc:
            raise StateBackendError(f"redis state failed: {type(exc).__name__}: {exc}") from exc
        return int(cast("bytes", value) or 0)

    def clicks_after(self, cursor: str, limit: int = 10_000) -> tuple[list[Click], str]:
        start = f"({cursor}" if cursor else "-"
        try:
            found = self.client.xrange(f"{self.prefix}clicks", min=start, max="+", count=limit)
        except (redis.RedisError, OSError) as exc:
            raise StateBackendError(f"redis state failed: {type(exc).__name__}: {exc}") from exc
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", found)
        if not entries:
            return [], cursor
        clicks = [Click(f[b"u"].decode(), f[b"i"].decode(), int(f[b"t"]), int(f[b"l"])) for _, f in entries]
        return clicks, entries[-1][0].decode()

    def add_items(self, items: Sequence[FreshItem]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            fields: dict[Any, Any] = {"j": json.dumps(asdict(item))}
            pipe.xadd(f"{self.prefix}items", fields, maxlen=self.settings.item_log_len, approximate=True)
        self._run(pipe)

    def items_after(self, cursor: str, limit: int = 10_000) -> tuple[list[FreshItem], str]:
        start = f"({cursor}" if cursor else "-"
        try:
            found = self.client.xrange(f"{self.prefix}items", min=start, max="+", count=limit)
        except (redis.RedisError, OSError) as exc:
            raise StateBackendError(f"redis state failed: {type(exc).__name__}: {exc}") from exc
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", found)
        if not entries:
            return [], cursor
        return [FreshItem(**json.loads(f[b"j"])) for _, f in entries], entries[-1][0].decode()

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        self.client.close()

    def _run(self, pipe: Any) -> list[Any]:
        try:
            return cast("list[Any]", pipe.execute())
        except (redis.RedisError, OSError) as exc:
            raise StateBackendError(f"redis state failed: {type(exc).__name__}: {exc}") from exc
