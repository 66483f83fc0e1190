"""The Recommender: feeds for a batch of users at one time, stage by stage; HTTP requests that
arrive together are one batch (serve/batcher.py) under the deadline of the oldest. The HTTP
service and the simulated online A/B test both call it.

    user embedding   cache, else the user tower on the user's latest history (bundle + online)
    → candidates     the union of the candidate sources, N in all: ANN over the item index,
                     co-visitation, trending, fresh items, each in its quota
    → rank           the multi-task ranker on the N candidates, items seen at the request time
    → re-rank        drop hidden/seen, freshness, guardrails, diversity (serve/rerank.py)
    → top k          with scores and per-stage timings

The stages themselves work on the whole batch (serve/stages.py).

Serving degrades instead of failing: a failing cache becomes a miss; unreadable online state
serves the bundle's view; a failing user tower gives the default (features-only) embedding; a
failing or late candidate source is skipped; if ranking would start too late for the deadline, or
fails, the candidates keep their two-tower (retrieval) order; if re-ranking fails the ranked order
is served. Every such decision is listed in `Feed.degraded`. A batch without a deadline
(`deadline=False`, the A/B simulation) skips nothing for time.
"""

# Over 300 lines: one request's whole decision path (deadline, each degradation, cache and state
# reads) stays readable in one place; the batched computations live in serve/stages.py.

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from feedrank.bundle import Bundle
from feedrank.models.ranker import HEADS
from feedrank.serve.batcher import MicroBatcher
from feedrank.serve.cache import EmbeddingCache
from feedrank.serve.candidate_stage import CandidateStage
from feedrank.serve.catalog import ServingCatalog
from feedrank.serve.feeds import Feed as Feed
from feedrank.serve.feeds import FeedItem as FeedItem
from feedrank.serve.feeds import FeedRequest as FeedRequest
from feedrank.serve.fresh import apply_items
from feedrank.serve.online import Event, OnlineEvents, UserView
from feedrank.serve.rerank import RequestContext, Reranker
from feedrank.serve.settings import ServeSettings
from feedrank.serve.stages import FeedStages, Pools
from feedrank.serve.state import StateBackendError, StateStore, make_state_store
from feedrank.serve.users import UserRows

log = logging.getLogger(__name__)


class Recommender:
    """Answers feed requests from one loaded bundle; thread-safe for concurrent requests.

    Args:
        state: the online state shared with other replicas and kept across reloads (default: a
            new one of `settings.state`); its logged clicks are replayed here at once.
        rank: score candidates with the ranker; False serves the two-tower (retrieval) order.
        rerank: run the re-ranker; False keeps the top k by score.
        weights: head weights of the feed score (default: the bundle's).
        score_by: another feed score in place of the ranker's, (B, N) candidate rows (-1 pads) and
            the time → (B, N) scores; a baseline served through the same candidates and re-ranker
            (serve/popularity.py). Settable after construction, as it may read `online`.
        chunk_rows: users per user-tower pass and pairs per ranker pass (serve/stages.py).
    """

    def __init__(
        self,
        bundle: Bundle,
        settings: ServeSettings,
        reranker: Reranker,
        cache: EmbeddingCache | None = None,
        state: StateStore | None = None,
        *,
        rank: bool = True,
        rerank: bool = True,
        weights: Mapping[str, float] | None = None,
        score_by: Callable[[np.ndarray, int], np.ndarray] | None = None,
        chunk_rows: int = 1024,
    ) -> None:
        self.bundle = bundle
        self.settings = settings
        self.reranker = reranker
        self.cache = cache
        self.catalog = ServingCatalog(bundle, settings)
        self.candidate_stage = CandidateStage(bundle, self.catalog, settings)
        self.stages = FeedStages(bundle, self.catalog, self.candidate_stage, chunk_rows)
        self.user_rows = UserRows(bundle.space.users)  # no per-request join over every user
        store = state if state is not None else make_state_store(settings.state)
        self.online = OnlineEvents(
            store,
            self.catalog.rows,
            self.candidate_stage.record_click,
            on_items=lambda items: apply_items(self.catalog, items, settings.now_us(bundle)),
            snapshot_us=bundle.snapshot_us,
        )
        self.online.sync()
        self.weights = dict(bundle.ranker_cfg.weights.as_dict() if weights is None else weights)
        self._weights = np.array([self.weights.get(h, 0.0) for h in HEADS], dtype=np.float64)
        self.rank_enabled = rank
        self.score_by = score_by
        self.rerank_enabled = rerank
        self.unknown_item_events = 0
        self.rows_ranked = 0  # (user, candidate) pairs scored so far, for throughput reports
        self._fallbacks = 0
        self.batcher = MicroBatcher(self._serve_batch, settings.max_batch, settings.max_concurrent)

    # ------------------------------------------------------------------ requests
    def recommend(self, request: FeedRequest) -> Feed:
        """One feed under the settings' deadline (waiting included), computed in one batch with the
        requests that arrive meanwhile (serve/batcher.py)."""
        return self.batcher.submit(request, time.perf_counter())

    def _serve_batch(self, requests: Sequence[FeedRequest], start: float) -> list[Feed]:
        """Requests of one `k` and request time (None: now, when the batch starts)."""
        first = requests[0]
        now = first.now_us if first.now_us is not None else self.settings.now_us(self.bundle)
        return self.recommend_batch(
            [r.user_id for r in requests],
            now,
            first.k,
            demographics=[r.demographics for r in requests],
            exclude=[r.exclude for r in requests],
            start=start,
        )

    def recommend_batch(
        self,
        user_ids: Sequence[str],
        now_us: int,
        k: int,
        *,
        demographics: Sequence[Mapping[str, str]] | None = None,
        exclude: Sequence[Sequence[str]] | None = None,
        deadline: bool = True,
        start: float | None = None,
    ) -> list[Feed]:
        """Feeds for B users at one time. `exclude`: item ids not to show, per user; `deadline`:
        False runs every stage whatever the time (a simulation); `start`: when the request arrived
        (perf_counter), default now."""
        start = time.perf_counter() if start is None else start
        timings: dict[str, float] = {"queue": _ms(start)}
        degraded: list[str] = []
        settings, now, num = self.settings, now_us, len(user_ids)
        rank_starts_ms = settings.deadline_ms - settings.rank_budget_ms if deadline else float("inf")

        def time_left_ms() -> float:
            return rank_starts_ms - (time.perf_counter() - start) * 1e3

        t0 = time.perf_counter()
        user_rows = self.user_rows(user_ids)
        views = self._online_views(user_ids, degraded)
        timings["user.state"] = _ms(t0)  # online state: sync and reads (Redis round trips)
        users, cache_states = self._user_vectors(
            user_ids, user_rows, views, now, demographics, degraded, timings
        )
        timings["user"] = _ms(t0)
        timings["batch"] = float(num)  # feeds computed together (a count, not ms)

        t0 = time.perf_counter()
        asked = exclude if exclude is not None else [()] * num
        excluded = [set(self.catalog.rows(list(e)).tolist()) - {-1} if e else set() for e in asked]
        if settings.exclude_clicked:
            excluded = [e | v.seen if v is not None else e for e, v in zip(excluded, views, strict=True)]
        hidden = [v.hidden if v is not None else set() for v in views]
        out = [e | h for e, h in zip(excluded, hidden, strict=True)]
        ann_timing: dict[str, float] = {}
        ann = self._ann(users, now, out, ann_timing, degraded)
        budget = settings.source_budget_ms if deadline else float("inf")
        pools = self.stages.candidates(
            users, ann, now, settings.candidates, user_ids, out, time_left_ms, budget
        )
        timings["retrieve"] = _ms(t0)
        timings.update({f"source.{name}": ms for name, ms in {**ann_timing, **pools.timings_ms}.items()})
        degraded += [f"source skipped: {name} ({why})" for name, why in pools.skipped.items()]

        t0 = time.perf_counter()
        scores = pools.scores
        elapsed = (time.perf_counter() - start) * 1e3
        if elapsed > rank_starts_ms:
            degraded.append(
                f"rank skipped: {elapsed:.1f} ms used of the {settings.deadline_ms:.0f} ms deadline"
            )
        elif self.rank_enabled and (pools.rows >= 0).any():
            try:
                scores = self._rank(users, user_rows, pools, now, views, timings, demographics)
            except Exception as exc:  # serve the retrieval order rather than fail the request
                log.exception("ranking failed; serving the retrieval order")
                degraded.append(f"rank failed: {type(exc).__name__}")
        timings["rank"] = _ms(t0)

        t0 = time.perf_counter()
        feeds: list[Feed] = []
        for b, user_id in enumerate(user_ids):
            items, why = self._top_k(pools, b, scores[b], now, k, excluded[b], hidden[b])
            feeds.append(
                Feed(
                    user_id,
                    items,
                    timings,
                    degraded + why,
                    cache_states[b],
                    bool(user_rows[b] >= 0),
                    self.bundle.version,
                    candidates=pools.sets[b].counts(),
                    skipped_sources=pools.skipped,
                )
            )
        timings["rerank"] = _ms(t0)
        timings["total"] = _ms(start)
        return feeds

    def record_event(
        self, user_id: str, item_id: str, kind: str, ts_us: int | None, dwell_s: float | None
    ) -> bool:
        """Take an engagement event; False (counted, ignored) when the item is unknown."""
        row = int(self.catalog.rows([item_id])[0])
        if row < 0 and self.online.sync_items():  # posted to another replica a moment ago?
            row = int(self.catalog.rows([item_id])[0])
        if row < 0:
            self.unknown_item_events += 1
            return False
        received = self.settings.now_us(self.bundle)
        now = ts_us if ts_us is not None else received
        # In the shared state, and (a click) replayed into trending and co-visitation at once.
        event = Event(user_id, row, kind, now, dwell_s, received_us=received)
        generation = self.online.add(event, item_id)
        if self.cache is not None:  # the entry of the generation this event ended is dead
            self.cache.invalidate(user_id, generation - 1)
        return True

    # ------------------------------------------------------------------ stages
    def _online_views(self, user_ids: Sequence[str], degraded: list[str]) -> list[UserView | None]:
        """Each user's online state after applying the clicks logged since the last request; None
        (and the feed says so) when the shared state cannot be read: the bundle's view is served."""
        try:
            self.online.sync(wait=False)
            return [self.online.user(u) for u in user_ids]
        except StateBackendError as exc:
            log.warning("online state unavailable: %s", exc)
            degraded.append("online state unavailable")
            return [None] * len(user_ids)

    def _user_vectors(
        self,
        user_ids: Sequence[str],
        user_rows: np.ndarray,
        views: Sequence[UserView | None],
        now: int,
        demographics: Sequence[Mapping[str, str]] | None,
        degraded: list[str],
        timings: dict[str, float],
    ) -> tuple[np.ndarray, list[str]]:
        """(B, d) user vectors and each one's cache state (hit, miss, fallback, default); the time
        in the cache (`user.cache`) and the user tower (`user.tower`) goes into `timings`.

        Cached under the generation read with the history (serve/cache.py); without the online
        state the generation is unknown, so the cache is left alone."""
        t0 = time.perf_counter()
        timings["user.tower"] = 0.0
        num = len(user_ids)
        out = np.empty((num, self.catalog.default_user.shape[0]), dtype=np.float32)
        states = ["miss"] * num
        todo = []
        for b, (user_id, view) in enumerate(zip(user_ids, views, strict=True)):
            cached = None
            if self.cache is not None and view is not None:
                cached = self.cache.get(user_id, view.generation)
                fallbacks = self.cache.stats().get("fallbacks", 0)
                if fallbacks > self._fallbacks:
                    self._fallbacks = fallbacks
                    states[b] = "fallback"
            if cached is not None:
                out[b], states[b] = cached, "hit"
            else:
                todo.append(b)
        timings["user.cache"] = _ms(t0)
        if not todo:
            return out, states
        t0 = time.perf_counter()
        at = np.array(todo, dtype=np.int64)
        recent = [views[b].history(now) if views[b] is not None else [] for b in todo]  # type: ignore[union-attr]
        demo = [demographics[b] for b in todo] if demographics is not None else None
        try:
            out[at] = self.stages.user_vectors(user_rows[at], recent, now, demo)
        except Exception as exc:
            log.exception("user tower failed; serving the default embedding")
            degraded.append(f"user tower failed: {type(exc).__name__}; default embedding")
            out[at] = self.catalog.default_user
            for b in todo:
                states[b] = "default"
            return out, states
        finally:
            timings["user.tower"] = _ms(t0)
        t0 = time.perf_counter()
        if self.cache is not None:
            for b in todo:
                view = views[b]
                if view is not None:
                    self.cache.put(user_ids[b], out[b], view.generation)
        timings["user.cache"] += _ms(t0)
        return out, states

    def _ann(
        self,
        users: np.ndarray,
        now: int,
        exclude: list[set[int]],
        timings: dict[str, float],
        degraded: list[str],
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The ANN lists, or None when the ANN is off or failed (the other sources fill the feed)."""
        if "ann" not in self.settings.sources.enabled():
            return None
        t0 = time.perf_counter()
        try:
            return self.stages.retrieve(users, now, self.settings.candidates, exclude)
        except Exception as exc:
            log.exception("candidate source ann failed; skipped")
            degraded.append(f"source skipped: ann (failed: {type(exc).__name__})")
            return None
        finally:
            timings["ann"] = _ms(t0)

    def _rank(
        self,
        users: np.ndarray,
        user_rows: np.ndarray,
        pools: Pools,
        now: int,
        views: Sequence[UserView | None],
        timings: dict[str, float],
        demographics: Sequence[Mapping[str, str]] | None = None,
    ) -> np.ndarray:
        """(B, N) feed scores of the candidates: the ranker's head probabilities, weighted. A ranker
        trained with the candidate-source columns reads which sources proposed each candidate.
        The time of its parts goes into `timings` (rank.features, rank.model)."""
        if self.score_by is not None:
            return self.score_by(pools.rows, now)
        online = [v.timed_history(now) if v is not None else [] for v in views]
        scores, pairs = self.stages.rank(
            users,
            user_rows,
            pools.rows,
            now,
            online,
            self.online.item_clicks,
            self._weights,
            pools.features,
            timings=timings,
            demographics=demographics,
        )
        self.rows_ranked += pairs
        return scores

    def _top_k(
        self, pools: Pools, b: int, scores: np.ndarray, now: int, k: int, seen: set[int], hidden: set[int]
    ) -> tuple[list[FeedItem], list[str]]:
        """User b's feed: the re-ranker on its candidates (or the top k by score)."""
        valid = pools.rows[b] >= 0
        rows, scores = pools.rows[b][valid], scores[valid]
        candidates = self.catalog.candidates(rows, scores)
        degraded: list[str] = []
        if self.rerank_enabled:
            ctx = RequestContext(now_us=now, k=k, hidden=_array(hidden), seen=_array(seen))
            try:
                result = self.reranker.run(candidates, ctx)
                feed = result.candidates
                degraded += [f"rerank step skipped: {name}" for name in result.skipped]
            except Exception as exc:
                log.exception("re-ranking failed; serving the ranked order")
                degraded.append(f"rerank failed: {type(exc).__name__}")
                feed = candidates.by_score().take(np.arange(min(k, len(candidates))))
        else:
            feed = candidates.by_score().take(np.arange(min(k, len(candidates))))
        pool = pools.sets[b]
        position = {row: i for i, row in enumerate(pool.item_rows.tolist())}
        items = [
            FeedItem(str(self.catalog.item_ids[row]), float(score), pool.proposed_by(position[row]))
            for row, score in zip(feed.items.tolist(), feed.scores.tolist(), strict=True)
        ]
        return items, degraded


def _array(rows: set[int]) -> np.ndarray:
    return np.fromiter(rows, dtype=np.int64, count=len(rows))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3
