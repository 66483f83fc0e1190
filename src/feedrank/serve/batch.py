# Over 300 lines: one class, the batched counterpart of the Recommender's stages, whose steps share
# the batch's arrays.
"""Batched feeds: the Recommender's stages for many users at one request time, in one pass.

    batch = BatchRecommender(recommender, candidates=150)
    feeds = batch.recommend(BatchRequest(user_ids=["u1", "u7"], now_us=now, k=10))
    feeds.rows                                   # (B, k) catalog rows, feed order, -1 pads

A per-request feed costs a few milliseconds, most of it fixed cost per call (one user-tower call,
one index search, one small ranker call, Python around them). A simulated online A/B test asks for
hundreds of thousands of feeds at a handful of distinct times, so here the user tower runs once on
the batch, the index is searched once for all users, trending and fresh items are listed once (the
same for every user at one time) and merged with each user's ANN and co-visitation lists under
the quotas, the ranker scores every (user, candidate) pair in large chunks, and what depends only
on (item, time) — item features, item vectors, the online click counts — is computed once per
distinct candidate. Re-ranking stays per user (it is per-feed logic and cheap) and can be
switched off.

Same inputs, same feeds: every stage repeats `Recommender` (the candidate union and its source
columns, history merge, over-fetch and filters, counters with the online click correction, head
weights, re-ranker); only the floating-point summation order of batched matrix products differs
(tests/serve/test_batch.py compares top k).
Left out on purpose: the embedding cache (every user vector is computed fresh, as on a cache miss),
and deadlines and degradation (a batch has no per-request deadline; an error is raised).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from feedrank.candidates import SOURCE_FEATURES, SourceList, merge
from feedrank.data.features import DEMOGRAPHICS, hash_column
from feedrank.data.live_features import serving_features
from feedrank.models.inputs import UserInputs
from feedrank.models.ranker import HEADS, RankerInputs
from feedrank.serve.recommender import Recommender
from feedrank.serve.rerank import RequestContext

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BatchRequest:
    """Feeds for B users at one time; per-user sequences are aligned with `user_ids`."""

    user_ids: Sequence[str]  # (B,)
    now_us: int  # request time, microseconds since the epoch
    k: int = 20
    demographics: Sequence[Mapping[str, str]] | None = None  # used for users the bundle does not know
    exclude: Sequence[Sequence[str]] | None = None  # item ids not to show, per user


@dataclass(frozen=True)
class BatchFeeds:
    rows: I64  # (B, k) catalog rows in feed order; -1 pads a feed shorter than k
    scores: F64  # (B, k) feed scores; NaN pads
    item_ids: npt.NDArray[np.object_]  # (B, k) item id strings; None pads


class BatchRecommender:
    """Feeds for many users at once from one Recommender's bundle, catalog and online events.

    Args:
        recommender: the per-request Recommender whose catalog, online events, head weights and
            re-ranker this uses; events recorded through it (`record_event`) reach both paths.
        candidates: ANN candidates per user (default: the recommender's settings).
        rank: score candidates with the ranker; False serves the two-tower's ANN order.
        rerank: run the recommender's re-ranker per user; False keeps the top k by score.
        weights: head weights of the feed score (default: the bundle's).
        chunk_rows: users per user-tower pass and (user, candidate) pairs per ranker pass. The
            ranker's ~460-wide intermediates of 1,024 rows stay in cache: on the 2-core box that
            ran 1.8x faster than 4,096 rows and 2.7x faster than 16,384 (BENCHMARKS.md).
    """

    def __init__(
        self,
        recommender: Recommender,
        *,
        candidates: int | None = None,
        rank: bool = True,
        rerank: bool = True,
        weights: Mapping[str, float] | None = None,
        chunk_rows: int = 1024,
    ) -> None:
        self.recommender = recommender
        self.candidates = candidates if candidates is not None else recommender.settings.candidates
        self.rank_enabled = rank
        self.rerank_enabled = rerank
        chosen = recommender.weights if weights is None else weights
        self.weights = np.array([chosen.get(h, 0.0) for h in HEADS], dtype=np.float64)
        self.chunk_rows = chunk_rows
        self.rows_ranked = 0  # (user, candidate) pairs scored so far, for throughput reports

    def recommend(self, request: BatchRequest) -> BatchFeeds:
        rec, now = self.recommender, request.now_us
        num = len(request.user_ids)
        user_rows = rec.bundle.space.users.rows(pl.Series(list(request.user_ids), dtype=pl.String))
        users = self.user_vectors(request.user_ids, user_rows, now, request.demographics)
        if request.exclude is None:
            excluded: list[set[int]] = [set() for _ in range(num)]
        else:
            excluded = [set(rec.catalog.rows(list(ids)).tolist()) - {-1} for ids in request.exclude]
        views = [rec.online.user(u) for u in request.user_ids]
        if rec.settings.exclude_clicked:
            excluded = [e | v.seen for e, v in zip(excluded, views, strict=True)]
        hidden = [v.hidden for v in views]
        exclude = [e | h for e, h in zip(excluded, hidden, strict=True)]
        rows, scores = self.retrieve(users, now, exclude)
        rows, scores, sources = self.union(users, rows, scores, now, request.user_ids, exclude)
        if self.rank_enabled and rows.size:
            scores = self.rank(users, user_rows, rows, now, request.user_ids, sources)
        return self._feeds(rows, scores, now, request.k, hidden, excluded)

    @torch.no_grad()
    def user_vectors(
        self,
        user_ids: Sequence[str],
        user_rows: I64,
        now_us: int,
        demographics: Sequence[Mapping[str, str]] | None = None,
    ) -> F32:
        """(B, d) user-tower outputs from each user's latest history (bundle past + online events)."""
        rec = self.recommender
        space, cat = rec.bundle.space, rec.catalog
        length = space.config.history_len
        num = len(user_ids)
        past = space.past.history(user_rows, np.full(num, now_us, dtype=np.int64), length)  # (B, L)
        hist = np.zeros((num, length), dtype=np.int64)  # item rows + 1, oldest first, 0 pads on the left
        for i, user_id in enumerate(user_ids):
            recent = rec.online.history(user_id, now_us)
            merged = past[i][past[i] > 0]
            if recent:
                merged = np.concatenate([merged, np.asarray(recent, dtype=np.int64) + 1])[-length:]
            if merged.size:
                hist[i, -merged.size :] = merged
        known = user_rows >= 0
        bucket = np.where(known, space.users.id_bucket[np.maximum(user_rows, 0)], 0)  # unknown: no id
        demo = np.zeros((num, len(DEMOGRAPHICS)), dtype=np.int64)
        demo[known] = space.users.demographics[user_rows[known]]
        unknown = np.flatnonzero(~known)
        if unknown.size:
            given = demographics or [{} for _ in range(num)]
            for j, name in enumerate(DEMOGRAPHICS):
                values = pl.Series([given[i].get(name) for i in unknown.tolist()], dtype=pl.String)
                demo[unknown, j] = hash_column(values, space.config.demographic_buckets, name)
        out = np.empty((num, cat.default_user.shape[0]), dtype=np.float32)
        for lo in range(0, num, self.chunk_rows):
            part = slice(lo, lo + self.chunk_rows)
            inputs = UserInputs(
                user_id=torch.from_numpy(bucket[part]),
                demographics=torch.from_numpy(demo[part]),
                hist_item=torch.from_numpy(cat.id_bucket_padded[hist[part]]),
                hist_cat=torch.from_numpy(cat.category_padded[hist[part]]),
                hist_pub=torch.from_numpy(cat.publisher_padded[hist[part]]),
            )
            out[part] = cat.user_tower(inputs).numpy()
        return out

    def retrieve(self, users: F32, now_us: int, exclude: Sequence[set[int]]) -> tuple[I64, F64]:
        """(B, N) candidate rows and inner-product scores, -1 / NaN padded, N = `candidates`.

        Row i holds what `ServingCatalog.retrieve` returns for user i: one search of the batch at
        the largest over-fetch, then each user's own over-fetch prefix (n + its exclusions + 16),
        items that exist at now, minus its exclusions, first n kept.
        """
        cat, n, num = self.recommender.catalog, self.candidates, users.shape[0]
        cat.index.maybe_rebuild()
        want = np.array([min(n + len(e) + 16, len(cat.index)) for e in exclude], dtype=np.int64)
        rows = np.full((num, n), -1, dtype=np.int64)
        scores = np.full((num, n), np.nan)
        if num == 0 or int(want.max(initial=0)) == 0:
            return rows, scores
        found_scores, ids = cat.index.search(users.astype(np.float32), int(want.max()))
        keep = (ids >= 0) & (np.arange(ids.shape[1])[None, :] < want[:, None])
        keep[keep] &= cat.exists_us[ids[keep]] <= now_us
        for i, rows_out in enumerate(exclude):
            if rows_out:
                keep[i] &= ~np.isin(ids[i], np.fromiter(rows_out, dtype=np.int64, count=len(rows_out)))
        slot = np.cumsum(keep, axis=1) - 1  # position among the kept results of the row
        keep &= slot < n
        r, c = np.nonzero(keep)
        rows[r, slot[r, c]] = ids[r, c]
        scores[r, slot[r, c]] = found_scores[r, c]
        return rows, scores

    def union(
        self,
        users: F32,
        rows: I64,
        scores: F64,
        now_us: int,
        user_ids: Sequence[str],
        exclude: Sequence[set[int]],
    ) -> tuple[I64, F64, F32]:
        """Each user's ANN list merged with the other enabled sources, as the per-request stage does.

        Returns (B, N) candidate rows (-1 pads), their retrieval scores (as `Recommender` orders
        an unranked pool) and (B, N, 8) source columns. Trending and fresh items are the same for
        every user at one time, so they are listed once per batch; the sources are not timed here
        (the per-request deadline does not apply to a batch).
        """
        rec, n = self.recommender, self.candidates
        stage, cat = rec.candidate_stage, rec.catalog
        width = len(SOURCE_FEATURES)
        others = [name for name in stage.config.enabled() if name != "ann"]
        exists = cat.exists_us <= now_us
        # Long enough that each user's top n survives removing its exclusions.
        longest = n + max((len(e) for e in exclude), default=0)
        shared: dict[str, SourceList] = {}
        if "trending" in others:
            shared["trending"] = stage.sources.trending_list(now_us, longest, exists)
        if "fresh" in others:
            shared["fresh"] = stage.sources.fresh_list(cat.published_us, now_us, longest, exists)
        out_rows = np.full((rows.shape[0], n), -1, dtype=np.int64)
        out_scores = np.full((rows.shape[0], n), np.nan)
        features = np.zeros((rows.shape[0], n, width), dtype=np.float32)
        for b, user_id in enumerate(user_ids):
            found = rows[b] >= 0
            lists = {"ann": SourceList(rows[b][found], scores[b][found])}
            banned = np.fromiter(exclude[b], dtype=np.int64, count=len(exclude[b]))
            for name, listed in shared.items():
                keep = ~np.isin(listed.rows, banned)
                lists[name] = SourceList(listed.rows[keep][:n], listed.scores[keep][:n])
            if "covis" in others:
                eligible = exists.copy()
                eligible[banned] = False
                lists["covis"] = stage.sources.covis_list(user_id, now_us, n, eligible)
            pool = merge(lists, stage.config.quotas(), n)
            size = len(pool)
            out_rows[b, :size] = pool.item_rows
            out_scores[b, :size] = rec.retrieval_scores(users[b], pool, now_us)
            features[b, :size] = pool.features()
        return out_rows, out_scores, features

    @torch.no_grad()
    def rank(
        self,
        users: F32,
        user_rows: I64,
        rows: I64,
        now_us: int,
        user_ids: Sequence[str] | None = None,
        sources: F32 | None = None,
    ) -> F64:
        """(B, N) feed scores of candidate rows (B, N) (-1 pads → NaN): weighted head probabilities.

        `sources`: (B, N, 8) candidate-source columns, for a ranker trained with them.
        """
        rec = self.recommender
        space, cat = rec.bundle.space, rec.catalog
        valid = rows >= 0
        pair_user = np.nonzero(valid)[0]  # (P,) batch index of each pair's user
        pair_item = rows[valid]  # (P,)
        distinct, inverse = np.unique(pair_item, return_inverse=True)
        # What depends only on (item, now) once per distinct candidate.
        items = space.item_arrays(distinct, np.full(distinct.size, now_us, dtype=np.int64))
        item_emb = cat.item_vectors(distinct, now_us)
        online = (
            [rec.online.timed_history(u, now_us) for u in user_ids] if user_ids else [[]] * len(user_rows)
        )
        counters = serving_features(  # the bundle's snapshot plus the events since, as in Recommender
            space.past,
            space.catalog,
            rec.bundle.ranker_cfg.counters,
            user_rows=user_rows,
            now_us=now_us,
            online=online,
            pair_user=pair_user,
            item_rows=pair_item,
            item_clicks=lambda window_us: rec.online.item_clicks(distinct, now_us, window_us)[inverse],
        )
        pair_sources = None
        if rec.bundle.ranker_cfg.sources:
            pair_sources = (
                sources[valid]
                if sources is not None
                else np.zeros((pair_item.size, len(SOURCE_FEATURES)), dtype=np.float32)
            )
        scores = np.empty(pair_item.size, dtype=np.float64)
        for lo in range(0, pair_item.size, self.chunk_rows):
            part = slice(lo, lo + self.chunk_rows)
            at = inverse[part]
            inputs = RankerInputs(
                user_emb=torch.from_numpy(users[pair_user[part]]),
                item_emb=torch.from_numpy(item_emb[at]),
                publisher=torch.from_numpy(items["item_pub"][at]),
                category=torch.from_numpy(items["item_cat"][at]),
                content_type=torch.from_numpy(items["item_type"][at]),
                freshness=torch.from_numpy(items["item_fresh"][at]),
                counters=torch.from_numpy(counters[part]),
                sources=torch.from_numpy(pair_sources[part]) if pair_sources is not None else None,
            )
            scores[part] = torch.sigmoid(cat.ranker(inputs)).double().numpy() @ self.weights
        self.rows_ranked += int(pair_item.size)
        out = np.full(rows.shape, np.nan)
        out[valid] = scores
        return out

    def _feeds(
        self, rows: I64, scores: F64, now_us: int, k: int, hidden: list[set[int]], excluded: list[set[int]]
    ) -> BatchFeeds:
        """Top k per user: the re-ranker on each user's candidates, or the top k by score."""
        num = rows.shape[0]
        out_rows = np.full((num, k), -1, dtype=np.int64)
        out_scores = np.full((num, k), np.nan)
        if self.rerank_enabled:
            rec = self.recommender
            for i in range(num):
                valid = rows[i] >= 0
                candidates = rec.catalog.candidates(rows[i][valid], scores[i][valid])
                ctx = RequestContext(now_us=now_us, k=k, hidden=_array(hidden[i]), seen=_array(excluded[i]))
                feed = rec.reranker.run(candidates, ctx).candidates
                out_rows[i, : len(feed)] = feed.items
                out_scores[i, : len(feed)] = feed.scores
        elif rows.size:
            # Stable sort on the retrieval order, as Candidates.by_score does; pads sort last.
            order = np.argsort(-np.where(rows >= 0, scores, -np.inf), axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(rows, order, axis=1)
            width = top.shape[1]
            out_rows[:, :width] = top
            out_scores[:, :width] = np.where(top >= 0, np.take_along_axis(scores, order, axis=1), np.nan)
        ids = np.full((num, k), None, dtype=object)
        shown = out_rows >= 0
        ids[shown] = self.recommender.catalog.item_ids[out_rows[shown]]
        return BatchFeeds(rows=out_rows, scores=out_scores, item_ids=ids)


def _array(rows: set[int]) -> I64:
    return np.fromiter(rows, dtype=np.int64, count=len(rows))
