"""Fresh items (POST /v1/items) go through the shared state, so that every replica serves them.

An item posted to one replica is appended to the state's item log (serve/state.py) and reaches
each replica's catalog and index when that replica next syncs (before every feed, and when an
event names an item it does not know yet). A reload or a replica started later replays the log,
so posted items outlive bundles; items a newer bundle already holds are skipped by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl

from feedrank.data.dataset import conform
from feedrank.data.schema import ITEMS
from feedrank.serve.catalog import ServingCatalog
from feedrank.serve.online import OnlineEvents
from feedrank.serve.state import FreshItem

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TEXT_FIELDS = ("publisher_id", "category", "subcategory", "content_type", "title")


def post_items(online: OnlineEvents, catalog: ServingCatalog, items: pl.DataFrame, now_us: int) -> int:
    """Log the items this replica does not know yet (canonical `items` rows) in the shared state
    and apply the log here; returns how many were logged. StateBackendError when the state is down."""
    online.sync_items()  # ids another replica already posted are known, not posted again
    rows = conform(items, ITEMS).unique("item_id", keep="last", maintain_order=True)
    unknown = catalog.rows(rows.get_column("item_id").to_list()) < 0
    new = rows.filter(pl.Series(unknown, dtype=pl.Boolean))
    if new.height == 0:
        return 0
    online.store.add_items(stored_items(new, now_us))
    online.sync_items()
    return int(new.height)


def stored_items(rows: pl.DataFrame, added_us: int) -> list[FreshItem]:
    out = []
    for row in rows.iter_rows(named=True):
        published = row["published_ts"]
        assert published is None or isinstance(published, datetime)
        out.append(
            FreshItem(
                item_id=row["item_id"],
                added_us=added_us,
                published_us=None if published is None else _epoch_us(published),
                **{name: row[name] for name in TEXT_FIELDS},
            )
        )
    return out


def apply_items(catalog: ServingCatalog, items: Sequence[FreshItem], now_us: int) -> int:
    """Add logged items to the catalog and its index (known ids are skipped); returns how many."""
    frame = pl.DataFrame(
        {
            "item_id": [i.item_id for i in items],
            **{name: [getattr(i, name) for i in items] for name in TEXT_FIELDS},
            "published_ts": pl.Series([i.published_us for i in items], dtype=pl.Int64).cast(
                pl.Datetime("us", "UTC")
            ),
        },
        schema_overrides=dict.fromkeys(TEXT_FIELDS, pl.String),
    )
    return catalog.add_items(frame, now_us, added_us={i.item_id: i.added_us for i in items})


def _epoch_us(when: datetime) -> int:
    return (when - EPOCH) // timedelta(microseconds=1)
