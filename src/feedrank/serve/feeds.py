"""What a feed request asks and what it gets back (serve/recommender.py answers it)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeedRequest:
    user_id: str
    k: int = 20
    now_us: int | None = None  # request time; None: the service clock
    exclude: Sequence[str] = ()  # item ids not to show (e.g. already on screen)
    demographics: Mapping[str, str] = field(default_factory=dict)  # for users the bundle does not know


@dataclass
class FeedItem:
    item_id: str
    score: float
    sources: list[str] = field(default_factory=list)  # the candidate sources that proposed it


@dataclass
class Feed:
    user_id: str
    items: list[FeedItem]
    timings_ms: dict[str, float]
    degraded: list[str]
    cache: str  # hit | miss | fallback | default
    known_user: bool
    bundle: str
    candidates: dict[str, int] = field(default_factory=dict)  # source → candidates it proposed
    skipped_sources: dict[str, str] = field(default_factory=dict)  # source → why it was skipped
