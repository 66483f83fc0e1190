"""Trained models behind the same `Scorer` interface as the baselines, so they are judged alike.

Features come from the `FeatureSpace` the models were trained with: every lookup at time t sees
only events before t, exactly as for the baselines.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import polars as pl
import torch
from torch import Tensor

from feedrank.artifacts.towers import HourlyItemVectors
from feedrank.candidates.logged import LoggedSources, Requests
from feedrank.data.examples import FeatureSpace
from feedrank.data.history import COUNTER_NAMES
from feedrank.eval.baselines import F64, query_micros
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.ranker import HEADS, Ranker, RankerInputs
from feedrank.models.two_tower import TwoTower

BATCH = 8192
# Rows per ranker forward pass: its activations (~500 floats a row) stay in cache at 1,024 rows;
# at 8,192 the same rows took 1.9x the CPU time (bench: BENCHMARKS.md, next-click speed). Each
# row's output does not depend on the batch (no batch statistics in eval mode).
RANKER_BATCH = 1024


def requests_of(user_ids: np.ndarray, ts_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(request of each row, first row of each request): rows of one user at one time are one
    request (a slate), numbered in order of first appearance."""
    keys = pl.DataFrame({"u": user_ids, "t": ts_us}, schema={"u": pl.String, "t": pl.Int64})
    distinct = keys.unique(maintain_order=True).with_row_index("q")
    request = keys.join(distinct, on=["u", "t"], how="left", maintain_order="left").get_column("q")
    q = request.to_numpy().astype(np.int64)
    first = np.full(distinct.height, -1, dtype=np.int64)
    first[q[::-1]] = np.arange(q.size)[::-1]
    return q, first


class TwoTowerScorer:
    """Scores (user, time, item) rows by the two-tower dot product."""

    name = "two-tower"

    def __init__(self, space: FeatureSpace, model: TwoTower) -> None:
        self.space = space
        self.model = model.eval()
        self._hourly: HourlyItemVectors | None = None  # made on first use; the model stays frozen

    def fit(self, events: pl.DataFrame) -> Self:
        return self  # everything it needs is in the feature space

    @torch.no_grad()
    def user_embeddings(self, user_ids: np.ndarray, ts_us: np.ndarray) -> Tensor:
        """(Q, d) embeddings of users at times ts (µs)."""
        out = []
        for lo in range(0, len(user_ids), BATCH):
            arrays = self.space.user_arrays(
                pl.Series(user_ids[lo : lo + BATCH], dtype=pl.String), ts_us[lo : lo + BATCH]
            )
            out.append(self.model.user(UserInputs.from_arrays(arrays)))
        return torch.cat(out) if out else torch.zeros(0, self.model.cfg.dim)

    @torch.no_grad()
    def item_embeddings(self, item_rows: np.ndarray, ts_us: np.ndarray) -> Tensor:
        """(N, d) embeddings of catalog rows as seen at times ts (µs)."""
        out = []
        for lo in range(0, len(item_rows), BATCH):
            arrays = self.space.item_arrays(item_rows[lo : lo + BATCH], ts_us[lo : lo + BATCH])
            out.append(self.model.item(ItemInputs.from_arrays(arrays)))
        return torch.cat(out) if out else torch.zeros(0, self.model.cfg.dim)

    def item_vectors_at_hour(self, hour: int) -> np.ndarray:
        """(num catalog items, d) float32 item vectors at the middle of `hour` (freshness)."""
        if self._hourly is None:
            self._hourly = HourlyItemVectors(self.model, self.space)
        return self._hourly(hour)

    def user_embeddings_per_row(self, user_ids: np.ndarray, ts_us: np.ndarray) -> Tensor:
        """(N, d) user embedding of each row, computed once per distinct (user, time): slates share it."""
        ids = np.asarray(user_ids, dtype=object)
        request, first = requests_of(ids, ts_us)
        return self.user_embeddings(ids[first], ts_us[first])[torch.from_numpy(request)]

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        ts_us = query_micros(ts)
        users = self.user_embeddings_per_row(user_ids, ts_us)
        rows = self.space.catalog.rows(pl.Series(np.asarray(item_ids, dtype=object), dtype=pl.String))
        items = self.item_embeddings(rows, ts_us)
        scores = (users * items).sum(-1)
        return scores.double().numpy()


class RankerScorer:
    """Scores rows by the ranker's feed score: a weighted sum of its head probabilities."""

    name = "ranker"

    def __init__(
        self,
        space: FeatureSpace,
        towers: TwoTower,
        ranker: Ranker,
        weights: dict[str, float],
        logged_sources: LoggedSources | None = None,
    ) -> None:
        self.space = space
        self.towers = TwoTowerScorer(space, towers)
        self.ranker = ranker.eval()
        self.weights = weights
        self._logged_sources = logged_sources
        self._content: Tensor | None = None  # (catalog items, d) the item tower's content vectors

    def fit(self, events: pl.DataFrame) -> Self:
        return self

    @torch.no_grad()
    def source_columns(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        """(N, 8) candidate-source columns of logged rows: the sources asked at each row's time.

        Rows of one user at one time share one request (one set of source lists).
        """
        ids, ts_us = np.asarray(user_ids, dtype=object), query_micros(ts)
        request, first = requests_of(ids, ts_us)
        vectors = self.towers.user_embeddings(ids[first], ts_us[first])
        return self._source_columns(ids, ts_us, item_ids, request, first, vectors)

    def _source_columns(
        self,
        ids: np.ndarray,
        ts_us: np.ndarray,
        item_ids: np.ndarray,
        request: np.ndarray,
        first: np.ndarray,
        vectors: Tensor,
    ) -> np.ndarray:
        if self._logged_sources is None:
            space = self.space
            self._logged_sources = LoggedSources.from_past(space.past, space.catalog, space.users)
        user_rows = self.space.users.rows(pl.Series(ids[first], dtype=pl.String))
        rows = self.space.catalog.rows(pl.Series(np.asarray(item_ids, dtype=object), dtype=pl.String))
        logged = Requests(user_rows, ts_us[first], vectors.numpy(), self.towers.item_vectors_at_hour)
        return self._logged_sources.features(logged, request, rows)

    @torch.no_grad()
    def probabilities(
        self,
        user_ids: np.ndarray,
        ts: np.ndarray,
        item_ids: np.ndarray,
        sources: np.ndarray | None = None,
        *,
        rows: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(N, len(HEADS)) head probabilities, with no position term (as at serving time).

        `sources`: (N, 8) candidate-source columns for a ranker that reads them; when not given
        (logged rows), they are computed by asking the sources at each row's time.
        `rows`: the (user directory rows, catalog rows) of `user_ids` and `item_ids` when the
        caller has them (next-click's pools), so that millions of ids are not looked up again.
        """
        ts_us = query_micros(ts)
        if rows is not None:
            users, items = rows
        else:
            users = self.space.users.rows(pl.Series(np.asarray(user_ids, dtype=object), dtype=pl.String))
            items = self.space.catalog.rows(pl.Series(np.asarray(item_ids, dtype=object), dtype=pl.String))
        return self._probabilities(user_ids, ts_us, item_ids, users, items, sources)

    def _probabilities(
        self,
        user_ids: np.ndarray,
        ts_us: np.ndarray,
        item_ids: np.ndarray,
        users: np.ndarray,
        rows: np.ndarray,
        sources: np.ndarray | None,
    ) -> np.ndarray:
        names = self.ranker.counter_names or COUNTER_NAMES  # unnamed: the original nine
        counters = self.space.past.features(names, users, rows, ts_us, self.space.catalog)
        ids = np.asarray(user_ids, dtype=object)
        request, first = requests_of(ids, ts_us)  # one user vector per slate, not per row
        vectors = self.towers.user_embeddings(ids[first], ts_us[first])
        user_emb_all = vectors[torch.from_numpy(request)]
        if self.ranker.num_sources and sources is None:
            sources = self._source_columns(ids, ts_us, item_ids, request, first, vectors)
        source_block = torch.from_numpy(sources) if self.ranker.num_sources and sources is not None else None
        out = []
        for lo in range(0, len(rows), RANKER_BATCH):
            sl = slice(lo, lo + RANKER_BATCH)
            items = ItemInputs.from_arrays(self.space.item_arrays(rows[sl], ts_us[sl]))
            inputs = RankerInputs(
                user_emb=user_emb_all[sl],
                item_emb=self._item_embeddings(rows[sl], items),
                publisher=items.publisher,
                category=items.category,
                content_type=items.content_type,
                freshness=items.freshness,
                counters=torch.from_numpy(counters[sl]),
                sources=source_block[sl] if source_block is not None else None,
            )
            out.append(torch.sigmoid(self.ranker(inputs)))
        probs = torch.cat(out) if out else torch.zeros(0, len(HEADS))
        return probs.double().numpy()

    def _item_embeddings(self, rows: np.ndarray, items: ItemInputs) -> Tensor:
        """The item tower's output for catalog rows: the catalog's content vectors, computed once
        (as training's tower tables hold them), plus each row's freshness; rows outside the
        catalog (-1) through the tower itself."""
        item_tower = self.towers.model.item_tower
        if self._content is None:
            everything = np.arange(len(self.space.catalog))
            zeros = np.zeros(everything.size, dtype=np.int64)
            catalog = ItemInputs.from_arrays(self.space.item_arrays(everything, zeros))
            self._content = item_tower.content(catalog)
        known = torch.from_numpy(rows >= 0)
        content = self._content[torch.from_numpy(np.maximum(rows, 0))]
        out: Tensor = content + item_tower.freshness(items.freshness)
        if not bool(known.all()):
            out[~known] = self.towers.model.item(items)[~known]
        return out

    def score(
        self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray, sources: np.ndarray | None = None
    ) -> F64:
        probs = self.probabilities(user_ids, ts, item_ids, sources)
        w = np.array([self.weights.get(h, 0.0) for h in HEADS])
        result: F64 = probs @ w
        return result
