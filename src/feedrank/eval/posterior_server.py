"""The posterior oracle as a served system: the best feed any model could build from the log.

`PosteriorOracleServer` answers feed requests beside the served feed and the oracle
(eval/served.py): for a user the world knows, it reads every logged event of that user strictly
before the request's time (impressions of all split parts, with positions, clicks, dwell, shares,
hides and surveys, and the warm-up clicks of the history table), fits the posterior of their
interests under the simulator's model (sim/posterior.py) and ranks the live catalog by the utility
expected under it. A brand-new user has no events, so their feed is the new-user oracle's
(sim/prior.py: the same draws and seed). The served feed's distance to this row is what a better
model could still win from the log; the oracle's distance to it is what the log does not tell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from feedrank.data.features import to_us
from feedrank.errors import DataError
from feedrank.eval.catalog import LiveCatalog
from feedrank.sim.posterior import PosteriorOracle, UserLog
from feedrank.sim.world import World

IMPRESSION_COLUMNS = (
    "user_id",
    "item_id",
    "ts",
    "position",
    "clicked",
    "dwell_s",
    "shared",
    "hidden",
    "survey",
)


class UserEvents:
    """Every user's logged events in world indices, sorted by (user, time), sliced per request."""

    def __init__(self, world: World, impressions: pl.DataFrame, history: pl.DataFrame) -> None:
        imp = impressions.select(IMPRESSION_COLUMNS)
        users = world.user_index(imp.get_column("user_id"))
        ts = to_us(imp.get_column("ts"))
        order = np.lexsort((ts, users))
        self._users, self._ts = users[order], ts[order]
        self._items = world.item_index(imp.get_column("item_id"))[order]
        self._pos = imp.get_column("position").to_numpy().astype(np.float64)[order]
        self._clicked = imp.get_column("clicked").to_numpy().astype(bool)[order]
        self._dwell = imp.get_column("dwell_s").fill_null(0.0).to_numpy().astype(np.float64)[order]
        self._shared = imp.get_column("shared").fill_null(False).to_numpy().astype(bool)[order]
        self._hidden = imp.get_column("hidden").fill_null(False).to_numpy().astype(bool)[order]
        self._survey = imp.get_column("survey").cast(pl.Float64).fill_null(np.nan).to_numpy()[order]
        hist = history.unique(["user_id", "item_id", "ts"]) if history.height else history
        h_users = world.user_index(hist.get_column("user_id"))
        h_ts = to_us(hist.get_column("ts"))
        h_order = np.lexsort((h_ts, h_users))
        self._h_users, self._h_ts = h_users[h_order], h_ts[h_order]
        self._h_items = world.item_index(hist.get_column("item_id"))[h_order]
        self._h_dwell = hist.get_column("dwell_s").fill_null(0.0).to_numpy().astype(np.float64)[h_order]

    def before(self, user: int, now_us: int) -> UserLog:
        """The user's events strictly before `now_us` (the request's own slate is not yet logged)."""
        lo = int(np.searchsorted(self._users, user, side="left"))
        hi = int(np.searchsorted(self._users, user, side="right"))
        hi = lo + int(np.searchsorted(self._ts[lo:hi], now_us, side="left"))
        s = slice(lo, hi)
        h_lo = int(np.searchsorted(self._h_users, user, side="left"))
        h_hi = int(np.searchsorted(self._h_users, user, side="right"))
        h_hi = h_lo + int(np.searchsorted(self._h_ts[h_lo:h_hi], now_us, side="left"))
        h = slice(h_lo, h_hi)
        return UserLog(
            items=self._items[s],
            t_s=self._ts[s] / 1e6,
            position=self._pos[s],
            clicked=self._clicked[s],
            dwell_s=self._dwell[s],
            shared=self._shared[s],
            hidden=self._hidden[s],
            survey=self._survey[s],
            click_items=self._h_items[h],
            click_t_s=self._h_ts[h] / 1e6,
            click_dwell_s=self._h_dwell[h],
        )


class PosteriorOracleServer:
    """Feeds ranked by the utility expected under each user's posterior (module docstring).

    `last_stats` holds the sampler's numbers for the first user of the last call (eval/served.py
    reports them per request: effective sample size, events read, sampling rounds)."""

    name = "posterior oracle"

    def __init__(
        self, oracle: PosteriorOracle, events: UserEvents, live: LiveCatalog, item_ids: np.ndarray
    ) -> None:
        self.oracle, self.events, self.live = oracle, events, live
        self.item_ids = item_ids
        self._world_items = oracle.world.item_index(pl.Series(item_ids.astype(str), dtype=pl.String))
        self._known = oracle.world.num_users
        self.last_stats: dict[str, float] = {}

    def feeds(
        self, user_ids: Sequence[str], now_us: int, k: int, demographics: Sequence[Mapping[str, str]]
    ) -> list[list[str]]:
        rows = np.flatnonzero(self.live.mask(np.array([now_us], dtype=np.int64))[0])
        out: list[list[str]] = []
        self.last_stats = {}
        for user, demo in zip(user_ids, demographics, strict=True):
            index = self._user_index(user)
            if rows.size == 0:
                out.append([])
                continue
            log = self.events.before(index, now_us) if index >= 0 else UserLog.empty()
            post = self.oracle.fit(demo, log, key=f"{user}@{now_us}")
            utility = self.oracle.expected_utility(post, self._world_items[rows], now_us / 1e6)
            top = np.argsort(-utility, kind="stable")[:k]
            out.append([str(i) for i in self.item_ids[rows][top]])
            if not self.last_stats:
                self.last_stats = {
                    "posterior_ess": post.ess,
                    "posterior_ess_share": post.ess / len(post.weights),
                    "posterior_events": float(post.events),
                    "posterior_rounds": float(post.rounds),
                }
        return out

    def _user_index(self, user: str) -> int:
        """The world's index of a user id, or -1 for an id the world does not have (new users)."""
        try:
            return int(self.oracle.world.user_index([user])[0])
        except DataError:  # not one of this world's users: a brand-new user
            return -1


def posterior_server(
    world: World, parts: Mapping[str, Any], live: LiveCatalog, item_ids: np.ndarray, options: Any
) -> PosteriorOracleServer:
    """The posterior oracle over every part's impressions and the warm-up clicks (`parts`: the
    split's datasets; `options`: eval/served.ServedOptions, for its seed and draws)."""
    impressions = pl.concat([ds.read("impressions").select(IMPRESSION_COLUMNS) for ds in parts.values()])
    history = pl.concat([ds.read("history") for ds in parts.values()])  # each part holds it: deduplicated
    events = UserEvents(world, impressions, history)
    oracle = PosteriorOracle(world, draws=options.posterior_draws, seed=options.seed)
    return PosteriorOracleServer(oracle, events, live, item_ids)
