"""The Recommender: a feed for one user, stage by stage, within a deadline.

    user embedding   cache, else the user tower on the user's latest history (bundle + online)
    → candidates     the union of the candidate sources, N in all (serve/candidate_stage.py):
                     ANN over the item index, co-visitation, trending, fresh items, each in its quota
    → rank           the multi-task ranker on the N candidates, items seen at the request time
    → re-rank        drop hidden/seen, freshness, guardrails, diversity (serve/rerank.py)
    → top k          with scores and per-stage timings

Serving degrades instead of failing: a failing cache becomes a miss; a failing user tower gives
the default (features-only) embedding; a failing or late candidate source is skipped; if ranking
would start too late for the deadline, or fails, the candidates keep their two-tower (retrieval)
order; if re-ranking fails the ranked order is served. Every such decision is listed in
`Feed.degraded`.
"""

# Over 300 lines: one request's whole decision path (deadline, each degradation, cache and state
# reads) stays readable in one place.

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from feedrank.bundle import Bundle
from feedrank.candidates import CandidateSet
from feedrank.data.features import DEMOGRAPHICS, hash_column
from feedrank.data.live_features import serving_features
from feedrank.models.inputs import UserInputs
from feedrank.models.ranker import HEADS, RankerInputs
from feedrank.serve.cache import EmbeddingCache
from feedrank.serve.candidate_stage import CandidateStage
from feedrank.serve.catalog import ServingCatalog
from feedrank.serve.online import Event, OnlineEvents, UserView
from feedrank.serve.rerank import RequestContext, Reranker
from feedrank.serve.settings import ServeSettings
from feedrank.serve.state import StateBackendError, StateStore, make_state_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedRequest:
    user_id: str
    k: int = 20
    now_us: int | None = None  # request time; None: the service clock
    exclude: Sequence[str] = ()  # item ids not to show (e.g. already on screen)
    demographics: dict[str, str] = field(default_factory=dict)  # for users the bundle does not know


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


class Recommender:
    """Answers feed requests from one loaded bundle; thread-safe for concurrent requests."""

    def __init__(
        self,
        bundle: Bundle,
        settings: ServeSettings,
        reranker: Reranker,
        cache: EmbeddingCache | None = None,
        state: StateStore | None = None,
    ) -> None:
        """`state`: the online state shared with other replicas and kept across reloads (default:
        a new one of `settings.state`). Its logged clicks are replayed here at once."""
        self.bundle = bundle
        self.settings = settings
        self.reranker = reranker
        self.cache = cache
        self.catalog = ServingCatalog(bundle, settings)
        self.candidate_stage = CandidateStage(bundle, self.catalog, settings)
        store = state if state is not None else make_state_store(settings.state)
        self.online = OnlineEvents(store, self.catalog.rows, self.candidate_stage.record_click)
        self.online.sync()
        self.weights = bundle.ranker_cfg.weights.as_dict()
        self._weights = np.array([self.weights.get(h, 0.0) for h in HEADS])
        self.unknown_item_events = 0
        self._slots = threading.BoundedSemaphore(max(1, settings.max_concurrent))

    # ------------------------------------------------------------------ requests
    def recommend(self, request: FeedRequest) -> Feed:
        start = time.perf_counter()  # the deadline runs from arrival, waiting included
        with self._slots:
            return self._recommend(request, start)

    def _recommend(self, request: FeedRequest, start: float) -> Feed:
        timings: dict[str, float] = {"queue": _ms(start)}
        degraded: list[str] = []
        now = request.now_us if request.now_us is not None else self.settings.now_us(self.bundle)
        user_row = int(self.bundle.space.users.rows(pl.Series([request.user_id]))[0])

        t0 = time.perf_counter()
        view = self._online_view(request.user_id, degraded)
        user, cache_state = self._user_embedding(request, user_row, now, view, degraded)
        timings["user"] = _ms(t0)

        t0 = time.perf_counter()
        exclude = set(self.catalog.rows(request.exclude).tolist()) - {-1}
        if view is not None and self.settings.exclude_clicked:
            exclude |= view.seen
        hidden = view.hidden if view is not None else set()
        rank_starts_ms = self.settings.deadline_ms - self.settings.rank_budget_ms

        def time_left_ms() -> float:
            return rank_starts_ms - (time.perf_counter() - start) * 1e3

        stage = self.candidate_stage.run(user, request.user_id, now, exclude | hidden, time_left_ms)
        pool = stage.candidates
        rows = pool.item_rows
        timings["retrieve"] = _ms(t0)
        timings.update({f"source.{name}": ms for name, ms in stage.timings_ms.items()})
        degraded += [f"source skipped: {name} ({why})" for name, why in stage.skipped.items()]

        t0 = time.perf_counter()
        scores: np.ndarray | None = None
        elapsed = (time.perf_counter() - start) * 1e3
        if elapsed > rank_starts_ms:
            degraded.append(
                f"rank skipped: {elapsed:.1f} ms used of the {self.settings.deadline_ms:.0f} ms deadline"
            )
        elif rows.size:
            try:
                scores = self._rank(user, user_row, pool, now, view)
            except Exception as exc:  # serve the retrieval order rather than fail the request
                log.exception("ranking failed; serving the retrieval order")
                degraded.append(f"rank failed: {type(exc).__name__}")
        if scores is None:  # retrieval order: the index's score, or the two-tower's for other sources
            scores = self.retrieval_scores(user, pool, now)
        timings["rank"] = _ms(t0)

        t0 = time.perf_counter()
        candidates = self.catalog.candidates(rows, scores)
        ctx = RequestContext(
            now_us=now,
            k=request.k,
            hidden=np.fromiter(hidden, dtype=np.int64, count=len(hidden)),
            seen=np.fromiter(exclude, dtype=np.int64, count=len(exclude)),
        )
        try:
            result = self.reranker.run(candidates, ctx)
            feed = result.candidates
            degraded += [f"rerank step skipped: {name}" for name in result.skipped]
        except Exception as exc:
            log.exception("re-ranking failed; serving the ranked order")
            degraded.append(f"rerank failed: {type(exc).__name__}")
            feed = candidates.by_score().take(np.arange(min(request.k, len(candidates))))
        timings["rerank"] = _ms(t0)
        timings["total"] = _ms(start)
        position = {row: i for i, row in enumerate(rows.tolist())}
        items = [
            FeedItem(str(self.catalog.item_ids[row]), float(score), pool.proposed_by(position[row]))
            for row, score in zip(feed.items.tolist(), feed.scores.tolist(), strict=True)
        ]
        return Feed(
            request.user_id,
            items,
            timings,
            degraded,
            cache_state,
            user_row >= 0,
            self.bundle.version,
            candidates=pool.counts(),
            skipped_sources=stage.skipped,
        )

    def record_event(
        self, user_id: str, item_id: str, kind: str, ts_us: int | None, dwell_s: float | None
    ) -> bool:
        """Take an engagement event; False (counted, ignored) when the item is unknown."""
        row = int(self.catalog.rows([item_id])[0])
        if row < 0:
            self.unknown_item_events += 1
            return False
        now = ts_us if ts_us is not None else self.settings.now_us(self.bundle)
        # In the shared state, and (a click) replayed into trending and co-visitation at once.
        event = Event(user_id=user_id, item_row=row, kind=kind, ts_us=now, dwell_s=dwell_s)
        generation = self.online.add(event, item_id)
        if self.cache is not None:  # the entry of the generation this event ended is dead
            self.cache.invalidate(user_id, generation - 1)
        return True

    def _online_view(self, user_id: str, degraded: list[str]) -> UserView | None:
        """The user's online state after applying the clicks logged since the last request; None
        (and the feed says so) when the shared state cannot be read: the bundle's view is served."""
        try:
            self.online.sync(wait=False)
            return self.online.user(user_id)
        except StateBackendError as exc:
            log.warning("online state unavailable: %s", exc)
            degraded.append("online state unavailable")
            return None

    # ------------------------------------------------------------------ stages
    def _user_embedding(
        self, request: FeedRequest, user_row: int, now: int, view: UserView | None, degraded: list[str]
    ) -> tuple[np.ndarray, str]:
        # Keyed by the generation read with the history: see serve/cache.py. Without the online
        # state the generation is unknown, so the cache is left alone.
        cache = self.cache if view is not None else None
        generation = view.generation if view is not None else 0
        cached = cache.get(request.user_id, generation) if cache is not None else None
        if cached is not None:
            return cached, "hit"
        state = "miss"
        if self.cache is not None and self.cache.stats().get("fallbacks", 0) > getattr(self, "_fallbacks", 0):
            self._fallbacks = self.cache.stats()["fallbacks"]
            state = "fallback"
        try:
            recent = view.history(now) if view is not None else []
            vector = self.user_vector(request, user_row, now, recent)
        except Exception as exc:
            log.exception("user tower failed; serving the default embedding")
            degraded.append(f"user tower failed: {type(exc).__name__}; default embedding")
            return self.catalog.default_user, "default"
        if cache is not None:
            cache.put(request.user_id, vector, generation)
        return vector, state

    def user_vector(self, request: FeedRequest, user_row: int, now: int, recent: list[int]) -> np.ndarray:
        """(d,) float32 user-tower output from the user's latest history: the bundle's, then
        `recent` (catalog rows engaged with online, oldest first)."""
        space = self.bundle.space
        length = space.config.history_len
        past = space.past.history(np.array([user_row]), np.array([now]), length)[0]  # rows + 1, 0 pads
        merged = np.array([r for r in past.tolist() if r > 0] + [r + 1 for r in recent], dtype=np.int64)
        merged = merged[-length:]
        hist = np.zeros(length, dtype=np.int64)
        if merged.size:
            hist[-merged.size :] = merged
        if user_row >= 0:
            user_bucket = int(space.users.id_bucket[user_row])
            demo = space.users.demographics[user_row]
        else:  # an unknown user: no id embedding (bucket 0, learned through id dropout)
            user_bucket = 0
            demo = np.array(
                [
                    hash_column(
                        pl.Series([request.demographics.get(d)]), space.config.demographic_buckets, d
                    )[0]
                    for d in DEMOGRAPHICS
                ]
            )
        cat = self.catalog
        inputs = UserInputs(
            user_id=torch.tensor([user_bucket]),
            demographics=torch.from_numpy(np.asarray(demo, dtype=np.int64)[None, :]),
            hist_item=torch.from_numpy(cat.id_bucket_padded[hist][None, :]),
            hist_cat=torch.from_numpy(cat.category_padded[hist][None, :]),
            hist_pub=torch.from_numpy(cat.publisher_padded[hist][None, :]),
        )
        out: np.ndarray = self.catalog.user_tower(inputs)[0].numpy().astype(np.float32)
        return out

    def retrieval_scores(self, user: np.ndarray, pool: CandidateSet, now: int) -> np.ndarray:
        """(N,) user·item inner products: the ANN's own where it proposed the item (the index's
        vectors), else computed now, so an ANN-only pool keeps exactly the ANN order."""
        scores = np.zeros(len(pool))
        ann = pool.names.index("ann") if "ann" in pool.names else -1
        from_ann = pool.sources[:, ann] if ann >= 0 else np.zeros(len(pool), dtype=bool)
        scores[from_ann] = pool.scores[from_ann, ann]
        others = ~from_ann
        if others.any():
            scores[others] = self.catalog.item_vectors(pool.item_rows[others], now) @ user
        return scores

    def _rank(
        self, user: np.ndarray, user_row: int, pool: CandidateSet, now: int, view: UserView | None
    ) -> np.ndarray:
        """(N,) feed scores of the candidates: the ranker's head probabilities, weighted.

        A ranker trained with the candidate-source columns reads which sources proposed each
        candidate and their scores (a skipped source's columns are zeros, as when it is off).
        """
        space = self.bundle.space
        rows = pool.item_rows
        n = rows.size
        times = np.full(n, now, dtype=np.int64)
        items = space.item_arrays(rows, times)
        counters = serving_features(  # the bundle's snapshot plus the events since (online)
            space.past,
            space.catalog,
            self.bundle.ranker_cfg.counters,
            user_rows=np.array([user_row]),
            now_us=now,
            online=[view.timed_history(now) if view is not None else []],
            pair_user=np.zeros(n, dtype=np.int64),
            item_rows=rows,
            item_clicks=lambda window_us: self.online.item_clicks(rows, now, window_us),
        )
        inputs = RankerInputs(
            user_emb=torch.from_numpy(user).expand(n, -1),
            item_emb=torch.from_numpy(self.catalog.item_vectors(rows, now)),
            publisher=torch.from_numpy(items["item_pub"]),
            category=torch.from_numpy(items["item_cat"]),
            content_type=torch.from_numpy(items["item_type"]),
            freshness=torch.from_numpy(items["item_fresh"]),
            counters=torch.from_numpy(counters),
            sources=torch.from_numpy(pool.features()) if self.bundle.ranker_cfg.sources else None,
        )
        probs = torch.sigmoid(self.catalog.ranker(inputs)).double().numpy()
        scores: np.ndarray = probs @ self._weights
        return scores


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
