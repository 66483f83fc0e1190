"""The ranker's dense features in serving: the bundle's snapshot of the past plus what came after.

A bundle's `PastEvents` holds the events up to its snapshot; the service keeps the engagements
that arrive later (serve/online.py). Here both are combined into exactly the columns training
computed from the log: online clicks top up the item click counters (and so the velocity), the
user's latest clicks for co-visitation are the snapshot's followed by the online ones, and the
session columns count online clicks as activity. Co-visitation pairs formed by online clicks are
not added (the snapshot's pairs are used); a rebuilt bundle picks them up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from feedrank.data.features import ItemCatalog
from feedrank.data.history import PastEvents
from feedrank.data.ranker_columns import COVIS_CLICKS, RecentEvents


def serving_features(
    past: PastEvents,
    catalog: ItemCatalog,
    names: Sequence[str],
    *,
    user_rows: np.ndarray,
    now_us: int,
    online: Sequence[Sequence[tuple[int, int]]],
    pair_user: np.ndarray,
    item_rows: np.ndarray,
    item_clicks: Callable[[int], np.ndarray],
    demographics: np.ndarray | None = None,
) -> np.ndarray:
    """(P, len(names)) float32 features of (user, item) pairs at `now_us`.

    Args:
        user_rows: (B,) the users' rows (-1 for a user the bundle does not know).
        online: per user, (µs, catalog row) of their engagements after the snapshot, oldest first.
        pair_user: (P,) index into `user_rows` of each pair's user; item_rows: (P,) candidates.
        item_clicks: window µs → (P,) online clicks of each pair's item in [now - window, now).
        demographics: (B, D) the users' demographic buckets (an unknown user's from its request);
            None: the directory's.
    """
    num = len(user_rows)
    now = np.full(num, now_us, dtype=np.int64)
    last = past.history(user_rows, now, COVIS_CLICKS)  # (B, 5) rows + 1, snapshot only
    session = past.session_columns(user_rows, now)  # (B, 4)
    for b, events in enumerate(online):
        recent = [(ts, row) for ts, row in events if ts < now_us]
        if not recent:
            continue
        merged = np.concatenate([last[b][last[b] > 0], np.array([row + 1 for _, row in recent])])
        last[b] = 0
        tail = merged[-COVIS_CLICKS:]
        last[b, COVIS_CLICKS - tail.size :] = tail
        session[b] = past.serving_session(int(user_rows[b]), now_us, [ts for ts, _ in recent])
    recent_events = RecentEvents(
        item_clicks=item_clicks,
        last_clicks=last[pair_user],
        session=session[pair_user],
        demographics=None if demographics is None else demographics[pair_user],
    )
    times = np.full(pair_user.size, now_us, dtype=np.int64)
    return past.features(names, user_rows[pair_user], item_rows, times, catalog, recent_events)
