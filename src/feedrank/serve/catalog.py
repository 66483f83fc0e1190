"""What serving knows about items: ids, features, embeddings, the ANN index, recent engagement.

Built once per bundle. The index holds content + freshness vectors; freshness ages, so the
`ManagedIndex` is rebuilt from vectors recomputed at the current time when it is older than
`index_max_age_s`, swapped in atomically while requests keep searching the old one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import torch
from torch import nn

from feedrank.bundle import Bundle
from feedrank.data.dataset import conform
from feedrank.data.features import ItemCatalog, build_catalog
from feedrank.data.schema import ITEMS
from feedrank.data.timeline import NO_TIME
from feedrank.index import ManagedIndex, RebuildPolicy
from feedrank.models.inputs import ItemInputs, UserInputs
from feedrank.models.ranker import RankerInputs
from feedrank.serve.quantize import quantize_linear_int8
from feedrank.serve.rerank import Candidates
from feedrank.serve.settings import ServeSettings


class ServingCatalog:
    def __init__(self, bundle: Bundle, settings: ServeSettings) -> None:
        space = bundle.space
        cat = space.catalog
        self.bundle = bundle
        self.settings = settings
        self.item_ids = cat.item_ids
        self._index_of = cat.index
        self.content = bundle.item_content
        self.published_us = cat.published_us
        self.exists_us = space.item_exists_us
        self.publisher = cat.publisher

        def padded(values: np.ndarray) -> np.ndarray:
            return np.concatenate([np.zeros(1, dtype=values.dtype), values])  # row + 1; 0 = padding

        self.id_bucket_padded = padded(cat.id_bucket)
        self.category_padded = padded(cat.category)
        self.publisher_padded = padded(cat.publisher)
        towers, ranker = bundle.towers, bundle.ranker
        if settings.int8:
            towers, ranker = quantize_linear_int8(towers), quantize_linear_int8(ranker)
        self.towers = towers
        self._ranker: nn.Module = ranker
        empty = _empty_user(space.config.history_len, space.users.demographics.shape[1])
        self.default_user: np.ndarray = self.user_tower(empty)[0].numpy().astype(np.float32)
        self.click_rate, self.mean_dwell_s = _engagement_stats(bundle)
        self._add_lock = threading.Lock()
        self.index = ManagedIndex(
            bundle.index,
            RebuildPolicy(max_age_s=settings.index_max_age_s),
            source=self._index_source,
            clock=time.monotonic,
        )

    def add_items(self, items: pl.DataFrame, now_us: int, added_us: Mapping[str, int] | None = None) -> int:
        """Add fresh items (canonical `items` rows) to the catalog and the index; returns how many
        were new. Item ids already known are skipped. An item exists from its publication time,
        or from when it was added (`added_us` by id, default now) if that is earlier or unknown.

        Arrays only grow and are replaced before the index learns the new rows, so a request that
        gets a new row from the index always finds it in the arrays it reads afterwards.
        """
        with self._add_lock:
            items = conform(items, ITEMS).unique("item_id", keep="last", maintain_order=True)
            items = items.filter(
                ~pl.col("item_id").is_in(pl.Series(list(self._index_of), dtype=pl.String).implode())
            )
            if items.height == 0:
                return 0
            space = self.bundle.space
            fresh = build_catalog(items, space.config)
            start = len(self.item_ids)
            rows = np.arange(start, start + items.height, dtype=np.int64)
            content = self._content(fresh)
            old = space.catalog
            merged = ItemCatalog(
                item_ids=np.concatenate([old.item_ids, fresh.item_ids]),
                id_bucket=np.concatenate([old.id_bucket, fresh.id_bucket]),
                publisher=np.concatenate([old.publisher, fresh.publisher]),
                category=np.concatenate([old.category, fresh.category]),
                subcategory=np.concatenate([old.subcategory, fresh.subcategory]),
                content_type=np.concatenate([old.content_type, fresh.content_type]),
                published_us=np.concatenate([old.published_us, fresh.published_us]),
                index=old.index,
            )
            ids = fresh.item_ids.tolist()
            added = np.array([now_us if added_us is None else added_us.get(i, now_us) for i in ids])
            exists = np.where(fresh.published_us == NO_TIME, added, np.minimum(fresh.published_us, added))
            unknown = np.full(items.height, np.nan)
            # Replace every array first, then extend the id map, then the index.
            self.content = np.concatenate([self.content, content])
            self.published_us = merged.published_us
            self.exists_us = np.concatenate([self.exists_us, exists])
            self.publisher = merged.publisher
            self.id_bucket_padded = np.concatenate([self.id_bucket_padded, fresh.id_bucket])
            self.category_padded = np.concatenate([self.category_padded, fresh.category])
            self.publisher_padded = np.concatenate([self.publisher_padded, fresh.publisher])
            self.click_rate = np.concatenate([self.click_rate, unknown])
            self.mean_dwell_s = np.concatenate([self.mean_dwell_s, unknown])
            self.item_ids = merged.item_ids
            space.item_exists_us = self.exists_us
            space.catalog = merged
            for offset, item_id in enumerate(fresh.item_ids.tolist()):
                self._index_of[item_id] = start + offset
            self.index.add(self.item_vectors(rows, now_us), rows)
            return int(items.height)

    @torch.no_grad()
    def _content(self, catalog: ItemCatalog) -> np.ndarray:
        ids = torch.from_numpy(catalog.id_bucket)
        inputs = ItemInputs(
            item_id=ids,
            publisher=torch.from_numpy(catalog.publisher),
            category=torch.from_numpy(catalog.category),
            subcategory=torch.from_numpy(catalog.subcategory),
            content_type=torch.from_numpy(catalog.content_type),
            freshness=torch.zeros_like(ids),
        )
        out: np.ndarray = self.towers.item_tower.content(inputs).numpy().astype(np.float32)
        return out

    def rows(self, item_ids: Sequence[str]) -> np.ndarray:
        get = self._index_of.get
        return np.fromiter((get(i, -1) for i in item_ids), dtype=np.int64, count=len(item_ids))

    @torch.no_grad()
    def user_tower(self, users: UserInputs) -> torch.Tensor:
        out: torch.Tensor = self.towers.user(users)
        return out

    @torch.no_grad()
    def ranker(self, inputs: RankerInputs) -> torch.Tensor:
        out: torch.Tensor = self._ranker(inputs)
        return out

    def item_vectors(self, rows: np.ndarray, now_us: int) -> np.ndarray:
        """(N, d) float32 item vectors at time now: content + freshness."""
        vectors = self.towers.vectors_at(
            torch.from_numpy(self.content[rows]), torch.from_numpy(self.published_us[rows]), now_us
        )
        out: np.ndarray = vectors.numpy().astype(np.float32)
        return out

    def retrieve(
        self, user: np.ndarray, now_us: int, n: int, exclude: set[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to n (rows, inner-product scores) from the ANN index: items that exist at now_us and
        are not excluded. Over-fetches by the number of exclusions so n survive the filter."""
        self.index.maybe_rebuild()
        want = min(n + len(exclude) + 16, len(self.index))
        scores, ids = self.index.search(user[None, :].astype(np.float32), want)
        rows, sc = ids[0], scores[0].astype(np.float64)
        keep = rows >= 0
        keep[keep] &= self.exists_us[rows[keep]] <= now_us
        if exclude:
            keep &= ~np.isin(rows, np.fromiter(exclude, dtype=np.int64, count=len(exclude)))
        return rows[keep][:n], sc[keep][:n]

    def candidates(self, rows: np.ndarray, scores: np.ndarray) -> Candidates:
        return Candidates(
            items=rows,
            scores=scores,
            publisher=self.publisher[rows],
            published_us=self.published_us[rows],
            embeddings=self.content[rows],
            click_rate=self.click_rate[rows],
            mean_dwell_s=self.mean_dwell_s[rows],
        )

    def _index_source(self) -> tuple[np.ndarray, np.ndarray]:
        """Every catalog item's vector recomputed at the current time, for an index rebuild."""
        now = self.settings.now_us(self.bundle)
        return self.item_vectors(np.arange(self.content.shape[0]), now), np.arange(self.content.shape[0])


def _empty_user(history_len: int, num_demographics: int) -> UserInputs:
    zeros = torch.zeros(1, history_len, dtype=torch.int64)
    return UserInputs(
        user_id=torch.zeros(1, dtype=torch.int64),
        demographics=torch.zeros(1, num_demographics, dtype=torch.int64),
        hist_item=zeros,
        hist_cat=zeros,
        hist_pub=zeros,
    )


def _engagement_stats(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """(I,) click rate and mean dwell (s) of clicked views over the bundle's events; NaN if unseen."""
    events = pl.read_parquet(bundle.path / "events.parquet")
    stats = events.group_by("item_id").agg(
        pl.col("clicked").mean().alias("ctr"),
        pl.col("dwell_s").filter(pl.col("clicked")).mean().alias("dwell"),
    )
    rows = bundle.space.catalog.rows(stats.get_column("item_id"))
    ok = rows >= 0
    n = len(bundle.space.catalog)
    ctr, dwell = np.full(n, np.nan), np.full(n, np.nan)
    ctr[rows[ok]] = stats.get_column("ctr").cast(pl.Float64).to_numpy()[ok]
    dwell[rows[ok]] = stats.get_column("dwell").cast(pl.Float64).fill_null(np.nan).to_numpy()[ok]
    return ctr, dwell
