"""Online state that every serving replica reads and writes: the `StateStore` boundary.

What happens after a bundle's snapshot lives here, apart from any bundle, so that several
replicas (or `--workers N`) agree and a reload keeps it:

    per user   the latest engagement events (bounded in number, expiring `user_ttl_s` after the
               user's last event), the items they clicked (seen) and hid, and a generation that
               every event of the user increments (the embedding cache keys on it: serve/cache.py);
               a user who was evicted or expired starts above every generation the store has
               issued, so no generation of a user ever repeats and an entry cached in an earlier
               life (still within the cache's TTL) is never read as the current one
    global     the click log, in arrival order with a cursor, bounded to `click_log_len` clicks;
               each replica replays it into its trending, co-visitation and item click counters
    global     the fresh-item log (POST /v1/items), in arrival order with a cursor, bounded to
               `item_log_len` items; each replica adds them to its catalog and index

Every event carries the time the service received it (`received_us`, the service clock) beside
the client's time: a bundle whose snapshot was cut after an event was received already holds it,
so that bundle's view leaves the event out instead of counting it twice (serve/online.py).

Items are named by id, not by catalog row, so a bundle with another catalog reads the same state.
`MemoryStateStore` (here, the default) serves one process; `RedisStateStore` (state_redis.py) is
the shared one. Both take an event atomically: a reader sees all of its effects or none of them,
and the generation moves only together with the history.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Generic, Literal, Protocol, TypeVar

from feedrank.errors import ConfigError, FeedrankError

ENGAGEMENTS = frozenset({"click", "dwell", "share"})
KINDS = ENGAGEMENTS | {"hide"}
T = TypeVar("T")


class StateBackendError(FeedrankError):
    """The shared online state could not be read or written (the request degrades or is refused)."""


@dataclass(frozen=True)
class StateSettings:
    """Where online state lives and how much of it is kept (`--set state.backend=redis`)."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"  # redis backend only
    key_prefix: str = "feedrank:state:"
    events_per_user: int = 150  # engagement events kept per user (the newest)
    # Clicked (seen) and hidden items kept per user, each set its newest: within a week's TTL a
    # heavy reader would otherwise grow both without bound; an item clicked this long ago has left
    # the live catalog, so forgetting it does not bring it back into the feed.
    marks_per_user: int = 1_000
    user_ttl_s: float = 7 * 86_400.0  # a user's state expires this long after their last event
    max_users: int = 200_000  # least recently active users beyond this are dropped (both backends)
    click_log_len: int = 1_000_000  # clicks kept in the shared log (trending, co-visitation, counts)
    item_log_len: int = 100_000  # fresh items (POST /v1/items) kept in the shared log
    timeout_s: float = 0.5  # redis connect and read timeout

    def __post_init__(self) -> None:
        if self.backend not in ("memory", "redis"):
            raise ConfigError(f"state backend must be 'memory' or 'redis', got {self.backend!r}")
        for name in (
            "events_per_user",
            "marks_per_user",
            "user_ttl_s",
            "max_users",
            "click_log_len",
            "item_log_len",
            "timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"state setting {name} must be > 0, got {getattr(self, name)!r}")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    user_id: str
    item_id: str
    kind: str  # click | dwell | share | hide
    ts_us: int  # when it happened (the client's time)
    received_us: int | None = None  # when the service took it (its clock); None: ts_us

    @property
    def logged_us(self) -> int:
        """From when on a log (and a bundle cut from it) can hold the event: never before it happened."""
        return self.ts_us if self.received_us is None else max(self.ts_us, self.received_us)


@dataclass(frozen=True)
class UserState:
    """One user's online state, read at one instant (consistent with its generation)."""

    generation: int = 0
    # (µs, item id, kind, logged µs: StoredEvent.logged_us), oldest first
    events: list[tuple[int, str, str, int]] = field(default_factory=list)
    seen: frozenset[str] = frozenset()  # items the user clicked
    hidden: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Click:
    user_id: str
    item_id: str
    ts_us: int
    logged_us: int  # StoredEvent.logged_us


@dataclass(frozen=True, slots=True)
class FreshItem:
    """An item posted while serving (a canonical `items` row) and when the service took it."""

    item_id: str
    added_us: int
    publisher_id: str | None = None
    category: str | None = None
    subcategory: str | None = None
    content_type: str | None = None
    published_us: int | None = None
    title: str | None = None


class StateStore(Protocol):
    """The backend boundary. Failures raise (the caller decides how to degrade)."""

    def record(self, event: StoredEvent) -> int:
        """Take one event atomically; returns the user's generation after it."""
        ...

    def user(self, user_id: str) -> UserState: ...

    def generation(self, user_id: str) -> int: ...

    def clicks_after(self, cursor: str, limit: int = 10_000) -> tuple[list[Click], str]:
        """Up to `limit` clicks logged after `cursor` ("" = from the oldest kept), and the new cursor."""
        ...

    def add_items(self, items: Sequence[FreshItem]) -> None:
        """Append fresh items to the shared item log (replicas skip ids they already know)."""
        ...

    def items_after(self, cursor: str, limit: int = 10_000) -> tuple[list[FreshItem], str]:
        """Up to `limit` items logged after `cursor` ("" = from the oldest kept), and the new cursor."""
        ...

    def stats(self) -> dict[str, int]: ...


@dataclass(slots=True)
class _User:
    """Small on purpose (a million of them must fit): a list, and sets only once used."""

    expires_at: float
    generation: int = 0
    events: list[tuple[int, str, str, int]] = field(default_factory=list)
    seen: dict[str, None] | None = None  # insertion-ordered sets: the oldest go first past the cap
    hidden: dict[str, None] | None = None


def _mark(marks: dict[str, None] | None, item_id: str, cap: int) -> dict[str, None]:
    """`marks` with `item_id` as its newest entry, at most `cap` entries (the oldest dropped)."""
    marks = marks if marks is not None else {}
    marks.pop(item_id, None)
    marks[item_id] = None
    while len(marks) > cap:
        del marks[next(iter(marks))]
    return marks


class MemoryStateStore:
    """Online state of one process: an LRU of users (each bounded, expiring) and a bounded click log.

    Memory is bounded by `max_users` x (`events_per_user` events + 2 x `marks_per_user` seen and
    hidden items) plus `click_log_len` clicks and `item_log_len` items; thread-safe.
    """

    def __init__(
        self, settings: StateSettings = StateSettings(), clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._log: _Log[Click] = _Log(settings.click_log_len)
        self._items: _Log[FreshItem] = _Log(settings.item_log_len)
        self._evicted = 0
        self._expired = 0
        self._highest_generation = 0  # a new or returning user starts above it (see the module doc)

    def record(self, event: StoredEvent) -> int:
        now = self._clock()
        with self._lock:
            user = self._live(event.user_id, now)
            if user is None:
                user = self._users[event.user_id] = _User(expires_at=0.0, generation=self._highest_generation)
                while len(self._users) > self.settings.max_users:
                    self._users.popitem(last=False)
                    self._evicted += 1
            self._users.move_to_end(event.user_id)
            user.expires_at = now + self.settings.user_ttl_s
            if event.kind == "hide":
                user.hidden = _mark(user.hidden, event.item_id, self.settings.marks_per_user)
            else:
                user.events.append((event.ts_us, event.item_id, event.kind, event.logged_us))
                if len(user.events) > self.settings.events_per_user:
                    del user.events[0]
            if event.kind == "click":
                user.seen = _mark(user.seen, event.item_id, self.settings.marks_per_user)
                self._log.append(Click(event.user_id, event.item_id, event.ts_us, event.logged_us))
            user.generation += 1
            self._highest_generation = max(self._highest_generation, user.generation)
            return user.generation

    def user(self, user_id: str) -> UserState:
        with self._lock:
            user = self._live(user_id, self._clock())
            if user is None:
                return UserState()
            return UserState(
                user.generation, list(user.events), frozenset(user.seen or ()), frozenset(user.hidden or ())
            )

    def generation(self, user_id: str) -> int:
        with self._lock:
            user = self._live(user_id, self._clock())
            return 0 if user is None else user.generation

    def clicks_after(self, cursor: str, limit: int = 10_000) -> tuple[list[Click], str]:
        with self._lock:
            return self._log.after(cursor, limit)

    def add_items(self, items: Sequence[FreshItem]) -> None:
        with self._lock:
            for item in items:
                self._items.append(item)

    def items_after(self, cursor: str, limit: int = 10_000) -> tuple[list[FreshItem], str]:
        with self._lock:
            return self._items.after(cursor, limit)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "users": len(self._users),
                "users_evicted": self._evicted,
                "users_expired": self._expired,
                "clicks_logged": self._log.next_seq - 1,
                "items_logged": self._items.next_seq - 1,
            }

    def _live(self, user_id: str, now: float) -> _User | None:
        user = self._users.get(user_id)
        if user is not None and now >= user.expires_at:
            del self._users[user_id]
            self._expired += 1
            return None
        return user


class _Log(Generic[T]):
    """An append-only log bounded to its newest `maxlen` entries, read from a cursor (a sequence
    number as text); not thread-safe (the store's lock guards it)."""

    def __init__(self, maxlen: int) -> None:
        self._entries: deque[tuple[int, T]] = deque(maxlen=maxlen)
        self.next_seq = 1

    def append(self, entry: T) -> None:
        self._entries.append((self.next_seq, entry))
        self.next_seq += 1

    def after(self, cursor: str, limit: int) -> tuple[list[T], str]:
        after = int(cursor) if cursor else 0
        log = self._entries
        if not log or log[-1][0] <= after:
            return [], cursor
        size = len(log)
        start = max(0, after - log[0][0] + 1)  # sequence numbers are consecutive
        stop = min(size, start + limit)
        if start < size - stop:  # a deque is cheap to walk from the nearer end only
            taken = list(islice(log, start, stop))
        else:
            taken = [log[i - size] for i in range(start, stop)]
        return [entry for _, entry in taken], str(taken[-1][0])


def make_state_store(settings: StateSettings) -> StateStore:
    if settings.backend == "redis":
        from feedrank.serve.state_redis import RedisStateStore  # imports redis only when it is used

        return RedisStateStore.from_settings(settings)
    return MemoryStateStore(settings)
