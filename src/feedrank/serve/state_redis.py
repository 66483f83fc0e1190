"""The Redis backend of the online state: one state that every serving replica shares.

Keys (prefix `feedrank:state:` by default), each chosen for what is asked of it:

    u:{user}:events   list of "µs|logged µs|kind|item", RPUSH + LTRIM to the newest `events_per_user`
    u:{user}:seen_at  sorted set of clicked item ids by when they were logged (µs), ZREMRANGEBYRANK
                      to the newest `marks_per_user`
    u:{user}:hidden_at  the same for hidden items
    u:{user}:gen      integer, +1 per event of the user; a user without the key (new, evicted or
                      expired) starts above `gen_high`, the highest generation issued, so a
                      returning user never reuses a generation an old cache entry is keyed on
    gen_high          integer, the highest generation issued to any user
    users             sorted set of user ids by their last event (the Redis server's clock, ms):
                      at most `max_users` users; each event's transaction ends in a script that
                      drops the users whose TTL has passed and deletes the keys of the least
                      recently active users beyond `max_users` (counted in `users_evicted`)
    clicks            stream of {u, i, t, l (logged µs)}, XADD with MAXLEN ~ `click_log_len`;
                      replicas read it with XRANGE from their cursor (the stream id of the last
                      click they applied)
    items             stream of {j: the item as JSON}, XADD with MAXLEN ~ `item_log_len`; read
                      like the clicks, so an item posted to one replica reaches every catalog

Every per-user key expires `user_ttl_s` after the user's last event (PEXPIRE on each write), and
at most `max_users` users are kept, so a stream of new users costs Redis memory for at most
`max_users` users whatever Redis' own `maxmemory` says (BENCHMARKS.md: 1M new users). An event is
one MULTI/EXEC transaction and a user's state is read in another, so a reader never sees the
history of an event without its generation (or the other way round); an evicted user's keys go
in one script, so a user is kept or dropped whole. The script names the user's keys itself
(not through KEYS), which a single Redis allows and Redis Cluster would not.

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

# KEYS: the users index, the evicted and expired counters; ARGV: the user, max_users, the TTL in
# ms, the prefix of every user's keys. Runs last in an event's transaction: the user is already
# written and has the newest score, so it is never the one evicted.
_KEEP_USERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if expired > 0 then redis.call('INCRBY', KEYS[3], expired) end
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], over)
  for i = 1, #popped, 2 do
    local base = ARGV[4] .. popped[i] .. ':'
    redis.call('DEL', base .. 'events', base .. 'seen_at', base .. 'hidden_at', base .. 'gen')
  end
  redis.call('INCRBY', KEYS[2], over)
end
return over
"""


# KEYS: the user's generation, the highest generation issued; ARGV: the TTL in ms. The user's next
# generation: one more than the last, or above every generation issued when the user has none (an
# evicted or expired user's keys are gone, and restarting at 1 would let the user reach a
# generation whose embedding from the old history is still cached).
_NEXT_GENERATION = """
local g
if redis.call('EXISTS', KEYS[1]) == 1 then
  g = redis.call('INCR', KEYS[1])
else
  g = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
  redis.call('SET', KEYS[1], g)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if g > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], g) end
return g
"""


class RedisStateStore:
    def __init__(self, client: redis.Redis, settings: StateSettings) -> None:
        self.client = client
        self.settings = settings
        self.prefix = settings.key_prefix
        self._ttl_ms = max(1, round(settings.user_ttl_s * 1000))
        self._keep_users = client.register_script(_KEEP_USERS)
        self._next_generation = client.register_script(_NEXT_GENERATION)
        self._users_keys = [f"{self.prefix}{name}" for name in ("users", "users_evicted", "users_expired")]

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
            self._mark(pipe, self._key(user, "hidden_at"), event)
        else:
            events = self._key(user, "events")
            pipe.rpush(events, f"{event.ts_us}|{event.logged_us}|{event.kind}|{event.item_id}")
            pipe.ltrim(events, -self.settings.events_per_user, -1)
            pipe.pexpire(events, ttl)
        if event.kind == "click":
            self._mark(pipe, self._key(user, "seen_at"), event)
            fields: dict[Any, Any] = {
                "u": user,
                "i": event.item_id,
                "t": str(event.ts_us),
                "l": str(event.logged_us),
            }
            pipe.xadd(f"{self.prefix}clicks", fields, maxlen=self.settings.click_log_len, approximate=True)
        self._next_generation(
            keys=[self._key(user, "gen"), f"{self.prefix}gen_high"], args=[ttl], client=pipe
        )
        args: list[str | int] = [user, self.settings.max_users, ttl, f"{self.prefix}u:"]
        self._keep_users(keys=self._users_keys, args=args, client=pipe)
        results = self._run(pipe)
        return int(results[-2])

    def _mark(self, pipe: redis.client.Pipeline, key: str, event: StoredEvent) -> None:
        """Add the event's item to a user's seen or hidden set, keeping its newest `marks_per_user`."""
        pipe.zadd(key, {event.item_id: event.logged_us})
        pipe.zremrangebyrank(key, 0, -self.settings.marks_per_user - 1)
        pipe.pexpire(key, self._ttl_ms)

    def user(self, user_id: str) -> UserState:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self._key(user_id, "gen"))
        pipe.lrange(self._key(user_id, "events"), 0, -1)
        pipe.zrange(self._key(user_id, "seen_at"), 0, -1)
        pipe.zrange(self._key(user_id, "hidden_at"), 0, -1)
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
        pipe = self.client.pipeline(transaction=False)
        pipe.zcard(self._users_keys[0])
        pipe.get(self._users_keys[1])
        pipe.get(self._users_keys[2])
        pipe.xlen(f"{self.prefix}clicks")
        users, evicted, expired, clicks = self._run(pipe)
        return {
            "users": int(users),
            "users_evicted": int(evicted or 0),
            "users_expired": int(expired or 0),
            "clicks_kept": int(clicks),
        }

    def close(self) -> None:
        self.client.close()

    def _run(self, pipe: Any) -> list[Any]:
        try:
            return cast("list[Any]", pipe.execute())
        except (redis.RedisError, OSError) as exc:
            raise StateBackendError(f"redis state failed: {type(exc).__name__}: {exc}") from exc
