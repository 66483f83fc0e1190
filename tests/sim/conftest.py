"""Simulated datasets shared by the simulator tests (each simulated once per session)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.sim import SimConfig, World, simulate

# Large enough that the behavioural tests have tens of thousands of rows per bin, small enough to
# simulate in well under a second.
BEHAVIOUR_CONFIG = SimConfig.preset("tiny", num_impressions=200_000, seed=11)


@dataclass
class Simulated:
    """A simulated dataset with its impressions joined to the ground truth."""

    dataset: Dataset
    world: World
    impressions: pl.DataFrame  # canonical columns + user/item indices, t_s, utility, affinity, ...


def join_truth(dataset: Dataset, world: World) -> pl.DataFrame:
    imp = dataset.read("impressions")
    users = world.user_index(imp["user_id"])
    items = world.item_index(imp["item_id"])
    t_s: npt.NDArray[np.float64] = imp["ts"].dt.epoch("us").to_numpy() / 1e6
    f = world.features(users, items, t_s)
    return imp.with_columns(
        pl.Series("u", users),
        pl.Series("i", items),
        pl.Series("t_s", t_s),
        pl.Series("utility", world.model.utility(f)),
        pl.Series("click_prob", world.model.click_prob(f)),
        pl.Series("affinity", f.affinity),
        pl.Series("clickbait", f.clickbait > 0),
        pl.Series("age_h", (t_s - world.items.published_s[items]) / 3600.0),
    )


@pytest.fixture(scope="session")
def behaviour(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    ds = simulate(BEHAVIOUR_CONFIG, tmp_path_factory.mktemp("sim") / "behaviour")
    world = World.load(ds.path)
    return Simulated(ds, world, join_truth(ds, world))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return simulate(SimConfig.preset("tiny", num_impressions=5_000), tmp_path_factory.mktemp("sim") / "tiny")


def tiny_config(**overrides: object) -> SimConfig:
    return SimConfig.preset("tiny", **{"num_impressions": 5_000, **overrides})
