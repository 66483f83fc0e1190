# Over 300 lines: FeedStages is one pass over a batch of users (vectors, retrieve, candidates, rank,
# re-rank); the stages share the batch's pools and timings, so splitting them would pass both around.
"""The stages of a feed, for B users at one request time in one pass (B = 1 for an HTTP request).

    user vectors   one user-tower pass over the users whose embedding is not cached
    retrieve       one index search for the batch; each user's over-fetch, filters and exclusions
    candidates     the ANN lists merged with the other sources under the quotas; trending and fresh
                   items are the same for every user at one time, so they are listed once per
                   batch (under the request's deadline and each source's budget), co-visitation
                   per user
    rank           the ranker on every (user, candidate) pair in chunks; what depends only on
                   (item, time) — item features, item vectors, online click counts — once per
                   distinct candidate
    re-rank        per user (per-feed logic, cheap)

The simulated online A/B test asks for many feeds at one time, the HTTP service for one: both run
these stages (serve/recommender.py decides deadlines and degradation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl
import torch

from feedrank.bundle import Bundle
from feedrank.candidates import SOURCE_FEATURES, CandidateSet, Eligible, SourceList, merge
from feedrank.data.features import DEMOGRAPHICS, hash_column
from feedrank.data.live_features import serving_features
from feedrank.models.inputs import UserInputs
from feedrank.models.ranker import RankerInputs
from feedrank.serve.candidate_stage import CandidateStage
from feedrank.serve.catalog import ServingCatalog

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass
class Pools:
    """Each user's merged candidates, padded into (B, N) arrays."""

    rows: I64  # (B, N) catalog rows, -1 pads
    scores: F64  # (B, N) retrieval scores (the order served when ranking is skipped), NaN pads
    features: F32  # (B, N, 8) candidate-source columns of the ranker
    sets: list[CandidateSet]  # per user: which source proposed each candidate
    timings_ms: dict[str, float] = field(default_factory=dict)  # source → ms, for the batch
    skipped: dict[str, str] = field(default_factory=dict)  # source → why it was skipped


class FeedStages:
    """The batched stages over one bundle's catalog and candidate sources; thread-safe.

    `chunk_rows`: users per user-tower pass and (user, candidate) pairs per ranker pass. The
    ranker's ~460-wide intermediates of 1,024 rows stay in cache: on the 2-core box that ran 1.8x
    faster than 4,096 rows and 2.7x faster than 16,384 (BENCHMARKS.md).
    """

    def __init__(
        self, bundle: Bundle, catalog: ServingCatalog, candidate_stage: CandidateStage, chunk_rows: int = 1024
    ) -> None:
        self.bundle = bundle
        self.catalog = catalog
        self.candidate_stage = candidate_stage
        self.chunk_rows = chunk_rows

    @torch.no_grad()
    def user_vectors(
        self,
        user_rows: I64,
        recent: Sequence[Sequence[int]],
        now_us: int,
        demographics: Sequence[Mapping[str, str]] | None = None,
    ) -> F32:
        """(B, d) user-tower outputs: the bundle's history of each user, then `recent` (rows engaged
        with online, oldest first); unknown users (row -1) by their demographics."""
        space, cat = self.bundle.space, self.catalog
        length = space.config.history_len
        num = user_rows.size
        past = space.past.history(user_rows, np.full(num, now_us, dtype=np.int64), length)  # (B, L)
        hist = np.zeros((num, length), dtype=np.int64)  # item rows + 1, oldest first, 0 pads on the left
        for i in range(num):
            merged = past[i][past[i] > 0]
            if recent[i]:
                merged = np.concatenate([merged, np.asarray(recent[i], dtype=np.int64) + 1])[-length:]
            if merged.size:
                hist[i, -merged.size :] = merged
        known = user_rows >= 0
        bucket = np.where(known, space.users.id_bucket[np.maximum(user_rows, 0)], 0)  # unknown: no id
        demo = self.demographic_buckets(user_rows, demographics)
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

    def demographic_buckets(
        self, user_rows: I64, demographics: Sequence[Mapping[str, str]] | None = None
    ) -> I64:
        """(B, D) hashed demographic buckets: the directory's for known users, the request's
        `demographics` for users the bundle does not know (row -1); 0 where missing."""
        space, num = self.bundle.space, user_rows.size
        known = user_rows >= 0
        demo = np.zeros((num, len(DEMOGRAPHICS)), dtype=np.int64)
        demo[known] = space.users.demographics[user_rows[known]]
        unknown = np.flatnonzero(~known)
        if unknown.size:
            given = demographics or [{} for _ in range(num)]
            for j, name in enumerate(DEMOGRAPHICS):
                values = pl.Series([given[i].get(name) for i in unknown.tolist()], dtype=pl.String)
                demo[unknown, j] = hash_column(values, space.config.demographic_buckets, name)
        return demo

    def retrieve(self, users: F32, now_us: int, n: int, exclude: Sequence[set[int]]) -> tuple[I64, F64]:
        """(B, n) ANN rows and inner-product scores, -1 / NaN padded: one search at the largest
        over-fetch, then each user's own over-fetch prefix (n + its exclusions + 16), items that
        exist at now, minus its exclusions, first n kept."""
        cat, num = self.catalog, users.shape[0]
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

    def candidates(
        self,
        users: F32,
        ann: tuple[I64, F64] | None,
        now_us: int,
        n: int,
        user_ids: Sequence[str],
        exclude: Sequence[set[int]],
        time_left_ms: Callable[[], float],
        budget_ms: float,
    ) -> Pools:
        """Each user's ANN list (None: the ANN is off or failed) merged with the other enabled
        sources. A source that raises, would start with no time left, or overruns `budget_ms`
        (all users' co-visitation together) is skipped for the batch."""
        stage, cat = self.candidate_stage, self.catalog
        config = stage.config
        exists_us = cat.exists_us  # the catalog as this batch reads it (it only grows)

        def exists(rows: I64) -> npt.NDArray[np.bool_]:
            return exists_us[rows] <= now_us

        def exists_for(rows_out: I64) -> Eligible:
            if not rows_out.size:
                return Eligible(exists_us.size, exists)
            return Eligible(exists_us.size, lambda rows: exists(rows) & ~np.isin(rows, rows_out))

        # Long enough that each user's top n survives removing its exclusions.
        longest = n + max((len(e) for e in exclude), default=0)
        banned = [np.fromiter(e, dtype=np.int64, count=len(e)) for e in exclude]
        everyone = Eligible(exists_us.size, exists)
        makers: dict[str, Callable[[], list[SourceList]]] = {
            "trending": lambda: _per_user(stage.sources.trending_list(now_us, longest, everyone), banned, n),
            "fresh": lambda: _per_user(
                stage.sources.fresh_list(stage.fresh_items(), now_us, longest, everyone), banned, n
            ),
            "covis": lambda: [
                stage.sources.covis_list(user, now_us, n, exists_for(out))
                for user, out in zip(user_ids, banned, strict=True)
            ],
        }
        lists: dict[str, list[SourceList]] = {}
        timings: dict[str, float] = {}
        skipped: dict[str, str] = {}
        if ann is not None:
            lists["ann"] = [SourceList(r[r >= 0], s[r >= 0]) for r, s in zip(*ann, strict=True)]
        for name in config.enabled():
            if name == "ann":
                continue
            if time_left_ms() <= 0:
                skipped[name] = "deadline"
                continue
            t0 = time.perf_counter()
            try:
                found = makers[name]()
            except Exception as exc:  # a broken source costs its seats, not the request
                skipped[name] = f"failed: {type(exc).__name__}"
                continue
            finally:
                timings[name] = (time.perf_counter() - t0) * 1e3
            if timings[name] > budget_ms:
                skipped[name] = f"overran: {timings[name]:.1f} ms"
                continue
            lists[name] = found
        stage.count_skipped(skipped)
        num = len(user_ids)
        pools = Pools(
            rows=np.full((num, n), -1, dtype=np.int64),
            scores=np.full((num, n), np.nan),
            features=np.zeros((num, n, len(SOURCE_FEATURES)), dtype=np.float32),
            sets=[],
            timings_ms=timings,
            skipped=skipped,
        )
        for b in range(num):
            pool = merge({name: per_user[b] for name, per_user in lists.items()}, config.quotas(), n)
            size = len(pool)
            pools.rows[b, :size] = pool.item_rows
            pools.scores[b, :size] = self.retrieval_scores(users[b], pool, now_us)
            pools.features[b, :size] = pool.features()
            pools.sets.append(pool)
        return pools

    def retrieval_scores(self, user: F32, pool: CandidateSet, now: int) -> F64:
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

    @torch.no_grad()
    def rank(
        self,
        users: F32,
        user_rows: I64,
        rows: I64,
        now_us: int,
        online: Sequence[list[tuple[int, int]]],
        item_clicks: Callable[[I64, int, int], I64],
        weights: F64,
        sources: F32 | None = None,
        timings: dict[str, float] | None = None,
        demographics: Sequence[Mapping[str, str]] | None = None,
    ) -> tuple[F64, int]:
        """(B, N) feed scores of candidate rows (B, N) (-1 pads → NaN): weighted head probabilities,
        and the number of pairs scored.

        `online`: per user, the (µs, row) engagements since the snapshot; `item_clicks(rows, now,
        window)`: online clicks per item; `sources`: (B, N, 8) candidate-source columns;
        `timings`: gets the ms of the item arrays and counters (`rank.features`) and of the ranker
        passes (`rank.model`); `demographics`: per user, those a user the bundle does not know came with.
        """
        t0 = time.perf_counter()
        space, cat = self.bundle.space, self.catalog
        valid = rows >= 0
        pair_user = np.nonzero(valid)[0]  # (P,) batch index of each pair's user
        pair_item = rows[valid]  # (P,)
        distinct, inverse = np.unique(pair_item, return_inverse=True)
        items = space.item_arrays(distinct, np.full(distinct.size, now_us, dtype=np.int64))
        item_emb = cat.item_vectors(distinct, now_us)
        counters = serving_features(  # the bundle's snapshot plus the events since
            space.past,
            space.catalog,
            self.bundle.ranker_cfg.counters,
            user_rows=user_rows,
            now_us=now_us,
            online=list(online),
            pair_user=pair_user,
            item_rows=pair_item,
            item_clicks=lambda window_us: item_clicks(distinct, now_us, window_us)[inverse],
            demographics=self.demographic_buckets(user_rows, demographics),
        )
        pair_sources = None
        if self.bundle.ranker_cfg.sources:
            pair_sources = (
                sources[valid]
                if sources is not None
                else np.zeros((pair_item.size, len(SOURCE_FEATURES)), dtype=np.float32)
            )
        t1 = time.perf_counter()
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
            scores[part] = torch.sigmoid(cat.ranker(inputs)).double().numpy() @ weights
        if timings is not None:
            timings["rank.features"] = (t1 - t0) * 1e3
            timings["rank.model"] = (time.perf_counter() - t1) * 1e3
        out = np.full(rows.shape, np.nan)
        out[valid] = scores
        return out, int(pair_item.size)


def _per_user(listed: SourceList, banned: Sequence[I64], n: int) -> list[SourceList]:
    """One list for every user: the shared list minus the user's exclusions, first n."""
    out = []
    for rows_out in banned:
        keep = ~np.isin(listed.rows, rows_out) if rows_out.size else np.ones(listed.rows.size, dtype=bool)
        out.append(SourceList(listed.rows[keep][:n], listed.scores[keep][:n]))
    return out
