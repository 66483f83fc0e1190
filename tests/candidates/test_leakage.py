"""Every candidate source is leak-free: fed the whole log, it answers at t as if cut at t."""

from __future__ import annotations

import numpy as np

from feedrank.candidates import CandidateSources, SourceList, merge
from tests.candidates.conftest import NUM_ITEMS, US_PER_MIN, ClickLog

PUBLISHED = np.arange(NUM_ITEMS, dtype=np.int64) * 600 * US_PER_MIN  # one new item every 10 hours


def _candidates(sources: CandidateSources, user: str, t: int) -> tuple[dict[str, SourceList], np.ndarray]:
    eligible = np.less_equal(PUBLISHED, t)
    lists = {
        "trending": sources.trending_list(t, 15, eligible),
        "covis": sources.covis_list(user, t, 15, eligible),
        "fresh": sources.fresh_list(PUBLISHED, t, 15, eligible),
    }
    merged = merge(lists, {"trending": 1, "covis": 1, "fresh": 1}, total=20)
    return lists, np.concatenate([merged.item_rows[:, None], merged.scores], axis=1)


def _same(a: dict[str, SourceList], b: dict[str, SourceList]) -> bool:
    return all(np.array_equal(a[n].rows, b[n].rows) and np.array_equal(a[n].scores, b[n].scores) for n in a)


def test_every_source_at_t_is_the_same_with_the_log_cut_at_t(clicks: ClickLog) -> None:
    full = CandidateSources().extend(clicks.users, clicks.items, clicks.ts)
    online = CandidateSources()  # the service's path: one click at a time, the future included
    for user, item, ts in zip(clicks.users.tolist(), clicks.items.tolist(), clicks.ts.tolist(), strict=True):
        online.add_click(user, item, ts)
    changed = {"trending": 0, "covis": 0}
    for e in range(100, clicks.ts.size, 50):
        t, user = int(clicks.ts[e]), str(clicks.users[e])
        cut = clicks.before(t)
        truncated = CandidateSources().extend(cut.users, cut.items, cut.ts)
        want_lists, want = _candidates(truncated, user, t)
        for sources in (full, online):
            got_lists, got = _candidates(sources, user, t)
            assert _same(got_lists, want_lists) and np.array_equal(got, want)
        # Control: a moment later the click at t is visible, and something changes.
        later_lists, _ = _candidates(full, user, t + 1)
        for name in changed:
            changed[name] += not _same({name: later_lists[name]}, {name: want_lists[name]})
    assert min(changed.values()) >= 5  # the test can fail: the click at t matters to each source
    for name in ("trending", "covis", "fresh"):
        assert any(
            _candidates(full, str(clicks.users[e]), int(clicks.ts[e]))[0][name].rows.size
            for e in range(100, 600, 50)
        )
