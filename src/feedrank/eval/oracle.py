"""The simulator's ground truth as a scorer: the ceiling every model is measured against.

A dataset that came from `feedrank simulate` (directly, through an import, or through a split)
remembers its lineage in its manifests; `world_of` follows it back to the simulator's output and
loads the world, so evaluation can report the oracle's value and the fraction of it a model
achieves. Logs from elsewhere have no world, and no oracle is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import polars as pl

from feedrank.data.dataset import Dataset
from feedrank.eval.baselines import F64, query_micros
from feedrank.sim import World
from feedrank.sim.prior import NewUserPrior

log = logging.getLogger(__name__)


class OracleScorer:
    """Scores (user, time, item) by the world's expected utility of the item if examined."""

    name = "oracle"

    def __init__(self, world: World) -> None:
        self.world = world

    def fit(self, events: pl.DataFrame) -> Self:
        return self

    def score(self, user_ids: np.ndarray, ts: np.ndarray, item_ids: np.ndarray) -> F64:
        users = self.world.user_index(pl.Series(np.asarray(user_ids, dtype=object), dtype=pl.String))
        items = self.world.item_index(pl.Series(np.asarray(item_ids, dtype=object), dtype=pl.String))
        t_s = query_micros(ts) / 1e6
        utility: F64 = self.world.expected_utility(users, items, t_s)
        return utility


def world_of(ds: Dataset) -> World | None:
    """The simulated world behind a dataset, if its lineage leads to `feedrank simulate` output."""
    seen: set[Path] = set()
    path: Path | None = ds.path
    while path is not None and path not in seen:
        seen.add(path)
        if (path / "world").is_dir():
            return World.load(path)
        manifest = Dataset.open(path).manifest if (path / "manifest.json").is_file() else {}
        source: dict[str, Any] = manifest.get("source") or {}
        parent = source.get("parent") or source.get("path")
        path = Path(parent) if parent else None
    log.info("no simulated world behind %s: oracle metrics are not reported", ds.path)
    return None


class NewUserOracle:
    """Scores items for a user the world does not know, from the demographics the request carries:
    the utility expected under the world's generative model of a new user (sim/prior.py)."""

    def __init__(self, world: World, draws: int = 512, seed: int = 0) -> None:
        self.prior = NewUserPrior(world, draws, seed)

    def score(self, demographics: Mapping[str, str], now_us: int, item_ids: np.ndarray) -> F64:
        items = self.prior.world.item_index(pl.Series(np.asarray(item_ids, dtype=object), dtype=pl.String))
        return self.prior.expected_utility(demographics, items, now_us / 1e6)
