"""The simulated dataset on disk: schema, manifest, determinism, streaming, world files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.data.dataset import Dataset
from feedrank.data.schema import TABLES
from feedrank.errors import DatasetError, SourceNotFoundError
from feedrank.sim import SimConfig, World, simulate
from tests.sim.conftest import tiny_config


def read_all(ds: Dataset) -> dict[str, pl.DataFrame]:
    return {name: ds.read(name) for name in TABLES}


def test_tables_conform_to_the_schema_and_manifest(tiny: Dataset) -> None:
    for name, table in TABLES.items():
        files = sorted((tiny.path / name).glob("*.parquet"))
        df = pl.concat([pl.read_parquet(f) for f in files])
        assert df.schema == table.polars_schema(), name
        assert df.height == tiny.rows(name), name
        assert df.select(pl.col(table.required).null_count()).sum_horizontal().item() == 0, name
        assert df.select(pl.struct(list(table.key)).is_duplicated().any()).item() is False, name
    src = tiny.manifest["source"]
    assert src["format"] == "simulator" and src["seed"] == 0
    assert SimConfig.from_dict(src["config"]) == tiny_config()
    assert tiny.rows("impressions") == tiny_config().num_impressions
    assert tiny.manifest["click_only"] is False


def test_events_refer_to_described_users_and_items(tiny: Dataset) -> None:
    t = read_all(tiny)
    for events in ("impressions", "history"):
        assert t[events].join(t["users"], on="user_id", how="anti").height == 0
        assert t[events].join(t["items"], on="item_id", how="anti").height == 0


def test_row_level_invariants(tiny: Dataset) -> None:
    imp = tiny.read("impressions")
    clicked = imp["clicked"]
    assert ((imp["dwell_s"] > 0) == clicked).all()
    assert not (imp["shared"] & ~clicked).any()
    assert not (imp["hidden"] & clicked).any()
    assert imp.filter(pl.col("survey").is_not_null())["clicked"].all()
    assert imp["survey"].drop_nulls().is_in([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    assert ((imp["propensity"] > 0) & (imp["propensity"] <= 1)).all()
    slates = imp.group_by("request_id").agg(pl.len(), pl.col("position").sort(), pl.col("user_id").n_unique())
    assert (slates["len"] == 10).all() and (slates["user_id"] == 1).all()
    assert slates["position"].to_list()[0] == list(range(10))


def test_shown_items_are_live_at_the_request(tiny: Dataset) -> None:
    cfg = tiny_config()
    imp = tiny.read("impressions").join(tiny.read("items"), on="item_id")
    age_h = ((imp["ts"] - imp["published_ts"]).dt.total_microseconds() / 3.6e9).to_numpy()
    # The catalog is fixed at a chunk's first request and a chunk never spans more than an hour.
    assert age_h.min() > 0 and age_h.max() <= cfg.catalog_hours + 1
    assert (age_h > cfg.catalog_hours).mean() < 0.02


def test_history_precedes_the_window_in_seq_order(tiny: Dataset) -> None:
    hist = tiny.read("history")
    start = tiny_config().start_dt
    assert hist.height > 0 and (hist["ts"] < start).all()
    per_user = hist.sort("user_id", "seq").group_by("user_id", maintain_order=True).agg("seq", "ts")
    for seq, ts in zip(per_user["seq"].to_list(), per_user["ts"].to_list(), strict=True):
        assert seq == list(range(len(seq)))
        assert ts == sorted(ts)


def test_same_seed_gives_identical_tables_and_another_seed_does_not(tmp_path: Path, tiny: Dataset) -> None:
    again = simulate(tiny_config(), tmp_path / "again")
    first, second = read_all(tiny), read_all(again)
    for name in TABLES:
        assert first[name].equals(second[name]), name
    other = read_all(simulate(tiny_config(seed=1), tmp_path / "other"))
    assert not first["impressions"].equals(other["impressions"])
    assert not first["users"].equals(other["users"])


def test_small_shards_stream_to_many_files(tmp_path: Path) -> None:
    cfg = tiny_config(shard_rows=1_000, chunk_requests=50)
    ds = simulate(cfg, tmp_path / "ds")
    shards = sorted((ds.path / "impressions").glob("*.parquet"))
    assert len(shards) >= 5 and len(shards) == ds.manifest["tables"]["impressions"]["shards"]
    assert sum(pl.read_parquet(s).height for s in shards) == cfg.num_impressions
    assert max(pl.read_parquet(s).height for s in shards) < 1_000 + 50 * cfg.slate_size


def test_world_round_trips_exactly(tmp_path: Path, tiny: Dataset) -> None:
    fresh = World.generate(tiny_config())
    loaded = World.load(tiny.path)  # the dataset directory finds its world/
    assert loaded.config == fresh.config
    for part in ("users", "publishers", "items"):
        a, b = getattr(fresh, part), getattr(loaded, part)
        for name in a.__dataclass_fields__:
            assert np.array_equal(getattr(a, name), getattr(b, name)), (part, name)
    users = np.arange(fresh.num_users)[:, None]
    items = fresh.live_items(fresh.start_s + 3600.0)[None, :]
    t = fresh.start_s + 3600.0
    assert np.array_equal(fresh.expected_utility(users, items, t), loaded.expected_utility(users, items, t))
    again = World.load(loaded.save(tmp_path / "w2"))
    assert np.array_equal(again.expected_utility(users, items, t), loaded.expected_utility(users, items, t))


def test_world_ids_map_to_table_rows(tiny: Dataset) -> None:
    world = World.load(tiny.path)
    items = tiny.read("items")
    idx = world.item_index(items["item_id"])
    assert np.array_equal(world.item_ids(idx).to_numpy(), items["item_id"].to_numpy())
    cats = np.array(world.vocab.topics)[world.items.main_topic[idx]]
    assert (cats == items["category"].to_numpy()).all()
    pubs = world.publisher_index(items["publisher_id"])
    assert np.array_equal(pubs, world.items.publisher[idx])
    users = tiny.read("users")
    assert np.array_equal(world.user_index(users["user_id"]), np.arange(world.num_users))


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    simulate(tiny_config(num_impressions=1_000), tmp_path / "ds")
    with pytest.raises(DatasetError, match="already exists"):
        simulate(tiny_config(num_impressions=1_000), tmp_path / "ds")
    assert simulate(tiny_config(num_impressions=1_000), tmp_path / "ds", overwrite=True).rows("impressions")


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    def fail(done: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        simulate(tiny_config(), tmp_path / "ds", progress=fail)
    assert list(tmp_path.iterdir()) == []


def test_progress_reports_impressions_written(tmp_path: Path) -> None:
    seen: list[int] = []
    ds = simulate(tiny_config(chunk_requests=64), tmp_path / "ds", progress=seen.append)
    assert seen == sorted(seen) and len(seen) > 5
    assert seen[-1] == ds.rows("impressions")


def test_thousand_impressions_work(tmp_path: Path) -> None:
    ds = simulate(SimConfig(num_impressions=1_000), tmp_path / "ds")
    assert ds.rows("impressions") == 1_000


def test_loading_a_missing_world_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError, match=r"world\.json"):
        World.load(tmp_path)
