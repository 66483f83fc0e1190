"""Co-visitation: items clicked after (or together with) the user's recent clicks, in sessions.

A session is a user's run of clicks with no gap over `session_gap_min`. Within a session, each
click h and each later click c at most `max_lag` clicks on (c != h) make a co-click, known from
the time of c: it votes for c after h with weight 1 ("clicked after") and for h after c with
`backward_weight` ("clicked together"). At t a vote made at time s weighs 0.5 ** ((t - s) / h)
for the half-life h (None: 1). The score of item c for user u at t is

    sum over u's last `num_recent` clicks before t of the decayed votes for c after that click

All of it reads only events strictly before t (clicks, votes and the recent clicks alike).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from feedrank.candidates.postings import F64, I64, Postings, Slice, compact

US_PER_MIN = 60_000_000


@dataclass(frozen=True)
class CoVisitationConfig:
    session_gap_min: float = 30.0
    max_lag: int = 10  # pair each click with at most this many later clicks of its session
    backward_weight: float = 0.5  # vote of a later click for an earlier one (0: "after" only)
    half_life_h: float | None = 24.0  # decay of a vote with its age; None: no decay
    num_recent: int = 10  # the user's latest clicks that vote


class CoVisitation:
    """Session co-click votes and per-user recent clicks (see the module docstring)."""

    def __init__(
        self, config: CoVisitationConfig = CoVisitationConfig(), max_users: int | None = None
    ) -> None:
        """`max_users`: keep the clicks of at most this many users (the least recently active go)."""
        if config.max_lag < 1 or config.num_recent < 1 or config.session_gap_min < 0:
            raise ValueError(f"co-visitation needs max_lag, num_recent >= 1 and a gap >= 0: {config}")
        self.config = config
        self.gap_us = int(config.session_gap_min * US_PER_MIN)
        self._votes = Postings()  # key: item voted after; value: item voted for; weight
        self._clicks = Postings(max_keys=max_users)  # key: user; value: item clicked

    def extend(
        self,
        users: np.ndarray,
        item_rows: I64,
        ts_us: I64,
        recent_kept: np.ndarray | None = None,
        votes_kept: np.ndarray | None = None,
    ) -> None:
        """Bulk load clicks (any order; ties keep input order). Users: any hashable ids, e.g. str.

        For a replay whose queries are known (candidates/logged.py): `recent_kept` (E,) bool, the
        clicks whose users are asked for (the others' recent clicks are never read); `votes_kept`
        (num_items,) bool, the items whose votes after them are read (those the asked users'
        recent clicks can hold). Every session still makes its votes; only those are kept.
        """
        order = np.argsort(ts_us, kind="stable")
        order = order[np.argsort(users[order], kind="stable")]  # by (user, time)
        users, items, ts = users[order], item_rows[order], ts_us[order]
        new_user = np.r_[True, users[1:] != users[:-1]] if users.size else np.zeros(0, dtype=bool)
        session = np.cumsum(new_user | (np.diff(ts, prepend=ts[:1]) > self.gap_us))
        pairs = co_clicks(session, items, ts, None, self.config.max_lag, votes_kept)
        self._vote(*pairs, votes_kept)
        if recent_kept is not None:
            kept = recent_kept[order]
            users, ts, items = users[kept], ts[kept], items[kept]
        self._clicks.extend(users, ts, items)

    def add(self, user: Hashable, item_row: int, ts_us: int) -> None:
        """One click as it happens: votes with the user's session so far, then the click itself.

        A click that arrives late (older than clicks of the user already taken) votes with the
        clicks before it only; the later ones it missed are not paired with it. `extend` of the
        same clicks in time order gives exactly the votes of `add` in time order.
        """
        tail = self._clicks.last(user, ts_us + 1, self.config.max_lag)  # clicks up to and at ts
        # The session reaches back while no gap between consecutive clicks is over the limit.
        gaps = np.diff(np.r_[tail.ts, ts_us])
        broken = np.flatnonzero(gaps > self.gap_us)
        start = int(broken[-1]) + 1 if broken.size else 0
        earlier = tail.values[start:]
        earlier = earlier[earlier != item_row]
        self._vote(earlier, np.full(earlier.size, item_row), np.full(earlier.size, ts_us))
        self._clicks.add(user, ts_us, item_row)

    def recent(self, user: Hashable, t_us: int, n: int | None = None) -> Slice:
        """The user's last n (default num_recent) clicks strictly before t, oldest first."""
        return self._clicks.last(user, t_us, n or self.config.num_recent)

    def scores(self, user: Hashable, t_us: int, num_items: int) -> F64:
        """(num_items,) decayed votes for each item after the user's recent clicks before t."""
        rows, active = self.active(user, t_us, num_items)
        out = np.zeros(num_items)
        out[rows] = active
        return out

    def active(self, user: Hashable, t_us: int, num_items: int) -> tuple[I64, F64]:
        """`scores` of the items voted for only: (rows ascending, their scores).

        The cost is the votes after the user's recent clicks, not the catalog. Each item's score
        adds the votes after each recent click in turn, as a dense sum over the catalog would.
        """
        values: list[I64] = []
        weights: list[F64] = []
        for h in self.recent(user, t_us).values.tolist():  # a repeated click votes again
            votes = self._votes.between(h, None, t_us)
            known = votes.values < num_items
            weight = votes.weights[known]
            if self.config.half_life_h is not None:
                age_h = (t_us - votes.ts[known]) / (60 * US_PER_MIN)
                weight = weight * np.exp2(-age_h / self.config.half_life_h)
            values.append(votes.values[known])
            weights.append(weight)
        if not values:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        rows, at = compact(np.concatenate(values), num_items)
        out = np.zeros(rows.size)
        start = 0
        for weight in weights:  # one click's votes at a time: the dense sum's order
            out += np.bincount(at[start : start + weight.size], weights=weight, minlength=rows.size)
            start += weight.size
        return rows, out

    def prune(self, before_us: int) -> int:
        return self._votes.prune(before_us) + self._clicks.prune(before_us)

    def _vote(self, first: I64, second: I64, ts: I64, kept: np.ndarray | None = None) -> None:
        """Votes for `second` after `first` (and back, weighted); `kept`: (num_items,) bool, the
        items whose votes after them are kept (all when None)."""
        forward = slice(None) if kept is None else kept[first]
        self._votes.extend(first[forward], ts[forward], second[forward])
        if self.config.backward_weight > 0:
            back = slice(None) if kept is None else kept[second]
            weight = np.full(first.size, self.config.backward_weight)[back]
            self._votes.extend(second[back], ts[back], first[back], weight)


def co_clicks(
    group: np.ndarray,
    item: I64,
    ts_us: I64,
    window_us: int | None,
    max_lag: int,
    kept: np.ndarray | None = None,
) -> tuple[I64, I64, I64]:
    """Co-click pairs among clicks sorted by (group, time), e.g. group = user or session.

    Args:
        group: (E,) keys that must match (a user, a session); the clicks are sorted by them.
        item, ts_us: (E,) int64 item codes and µs times.
        window_us: largest gap between the two clicks (inclusive); None: any within the group.
        max_lag: largest distance in the sorted order between the two clicks.
        kept: (num items,) bool: only the pairs with a kept first or second item (None: all);
            filtered lag by lag, the pairs of every lag are never held at once (9.1M clicks at
            100M impressions made 5 GB of them).

    Returns:
        (first item, second item, time of the second click), each (P,) int64; items differ.
    """
    firsts, seconds, times = [], [], []
    for lag in range(1, max_lag + 1):
        if lag >= item.size:
            break
        close = group[lag:] == group[:-lag]
        if window_us is not None:
            close &= ts_us[lag:] - ts_us[:-lag] <= window_us
        # Sorted by (group, time): if no click has a close partner `lag` places on, none has further on.
        if not close.any():
            break
        pair = close & (item[lag:] != item[:-lag])
        if kept is not None:
            pair &= kept[item[:-lag]] | kept[item[lag:]]
        firsts.append(item[:-lag][pair])
        seconds.append(item[lag:][pair])
        times.append(ts_us[lag:][pair])
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(firsts), np.concatenate(seconds), np.concatenate(times)
