"""Time-dependent features computed only from the past: user histories and engagement counters.

`PastEvents` indexes every engagement and view known to the system (the pre-window history plus
the impressions of the log); every lookup takes a query time t and sees only events strictly
before t, so the same code serves training (t = each impression's time), evaluation and the
service (t = now) without leakage. An engagement is a click (shares and long dwells are clicks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from feedrank.data.features import US_PER_HOUR, ItemCatalog, UserDirectory, to_us
from feedrank.data.timeline import EventIndex

COUNTER_WINDOWS_H = (1, 6, 24)
COUNTER_NAMES = (
    *(f"item_clicks_{w}h" for w in COUNTER_WINDOWS_H),
    "item_views_24h",
    "item_ctr_24h",
    "item_clicks_all",
    "user_clicks_all",
    "user_category_share",
    "user_publisher_share",
)
CTR_PRIOR_VIEWS = 20.0  # pseudo-views that pull a new item's CTR towards the global rate


@dataclass(frozen=True)
class PastEvents:
    """Indexes of engagements and views, keyed by user row or item row, for strictly-before lookups."""

    user_clicks: EventIndex  # key user row → value item row + 1 (0 is padding)
    item_clicks: EventIndex  # key item row
    item_views: EventIndex  # key item row
    user_category_clicks: EventIndex  # key user row * num_categories + category bucket
    user_publisher_clicks: EventIndex  # key user row * num_publishers + publisher bucket
    num_categories: int
    num_publishers: int
    global_ctr: float

    def history(self, user_rows: np.ndarray, ts_us: np.ndarray, n: int) -> np.ndarray:
        """(N, n) item rows + 1 of each user's last n engagements before t, oldest first; 0 pads."""
        return self.user_clicks.last_n(user_rows, ts_us, n, pad=0)

    def counters(
        self, user_rows: np.ndarray, item_rows: np.ndarray, ts_us: np.ndarray, catalog: ItemCatalog
    ) -> np.ndarray:
        """(N, len(COUNTER_NAMES)) float32 engagement counters at time t, log-scaled where counts."""
        cols: list[np.ndarray] = []
        for w in COUNTER_WINDOWS_H:
            cols.append(np.log1p(self.item_clicks.count_before(item_rows, ts_us, w * US_PER_HOUR)))
        clicks_24 = self.item_clicks.count_before(item_rows, ts_us, 24 * US_PER_HOUR)
        views_24 = self.item_views.count_before(item_rows, ts_us, 24 * US_PER_HOUR)
        cols.append(np.log1p(views_24))
        cols.append((clicks_24 + CTR_PRIOR_VIEWS * self.global_ctr) / (views_24 + CTR_PRIOR_VIEWS))
        cols.append(np.log1p(self.item_clicks.count_before(item_rows, ts_us)))
        user_all = self.user_clicks.count_before(user_rows, ts_us)
        cols.append(np.log1p(user_all))
        safe = np.maximum(item_rows, 0)
        cat = np.where(item_rows >= 0, catalog.category[safe], 0)
        pub = np.where(item_rows >= 0, catalog.publisher[safe], 0)
        cat_clicks = self.user_category_clicks.count_before(user_rows * self.num_categories + cat, ts_us)
        pub_clicks = self.user_publisher_clicks.count_before(user_rows * self.num_publishers + pub, ts_us)
        cols.append(np.where(cat > 0, (cat_clicks + 0.1) / (user_all + 1.0), 0.0))
        cols.append(np.where(pub > 0, (pub_clicks + 0.1) / (user_all + 1.0), 0.0))
        return np.stack(cols, axis=1).astype(np.float32)


def build_past_events(
    history: pl.DataFrame,
    impressions: pl.DataFrame,
    catalog: ItemCatalog,
    users: UserDirectory,
    *,
    ctr_prior: float,
) -> PastEvents:
    """Index the pre-window history and the impressions' clicks and views.

    History rows without a time count as "before everything"; within a user they keep their
    `seq` order. `ctr_prior` (the base click rate that smooths a new item's CTR) is fitted on the
    training window by the caller: computing it here from all impressions would leak the future.
    """
    hist = history.sort("user_id", "seq")
    h_user = users.rows(hist.get_column("user_id"))
    h_item = catalog.rows(hist.get_column("item_id"))
    h_ts = to_us(hist.get_column("ts"))

    imp = impressions.select("user_id", "item_id", "ts", "clicked")
    i_user = users.rows(imp.get_column("user_id"))
    i_item = catalog.rows(imp.get_column("item_id"))
    i_ts = to_us(imp.get_column("ts"))
    clicked = imp.get_column("clicked").to_numpy().astype(bool)

    c_user = np.concatenate([h_user, i_user[clicked]])
    c_item = np.concatenate([h_item, i_item[clicked]])
    c_ts = np.concatenate([h_ts, i_ts[clicked]])
    known = (c_user >= 0) & (c_item >= 0)
    c_user, c_item, c_ts = c_user[known], c_item[known], c_ts[known]

    num_categories = int(catalog.category.max(initial=0)) + 1
    num_publishers = int(catalog.publisher.max(initial=0)) + 1
    views_known = i_item >= 0
    return PastEvents(
        user_clicks=EventIndex(c_user, c_ts, c_item + 1),
        item_clicks=EventIndex(c_item, c_ts),
        item_views=EventIndex(i_item[views_known], i_ts[views_known]),
        user_category_clicks=EventIndex(c_user * num_categories + catalog.category[c_item], c_ts),
        user_publisher_clicks=EventIndex(c_user * num_publishers + catalog.publisher[c_item], c_ts),
        num_categories=num_categories,
        num_publishers=num_publishers,
        global_ctr=ctr_prior,
    )
