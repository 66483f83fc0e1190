"""Rankers record their feature names; runs and bundles from before the names keep their nine counters.

A run or bundle written before the names were recorded has no `counters` key: it must load with
exactly the original counters (and its weights fit), score, and serve. A ranker with the recency
and co-visitation features serves too, and online clicks reach its features.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from feedrank.artifacts.config import RankerRunConfig
from feedrank.artifacts.store import build_space, load_ranker, load_retrieval
from feedrank.artifacts.train_config import TrainConfig
from feedrank.bundle import load_bundle, write_bundle
from feedrank.bundle.manifest import MANIFEST, file_hashes
from feedrank.candidates import SOURCE_FEATURES, merge
from feedrank.data.history import COUNTER_NAMES, RANKER_FEATURES
from feedrank.eval.model_scorer import RankerScorer
from feedrank.serve.recommender import FeedRequest, Recommender
from feedrank.serve.rerank import RerankConfig, build_reranker
from feedrank.serve.settings import ServeSettings
from feedrank.train.run import train_ranker


@pytest.fixture(scope="module")
def old_run(split_dir: Path, runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ranker trained on the nine counters and no source columns whose run.json records neither
    (as before the names were recorded and before the ranker read the candidate sources)."""
    out = tmp_path_factory.mktemp("old") / "ranker"
    cfg = RankerRunConfig(
        train=TrainConfig(epochs=1, max_steps=20, early_stop_metric="", progress=False),
        batch_size=256,
        counters=COUNTER_NAMES,
        sources=(),
    )
    train_ranker(split_dir, runs[0], out, cfg)
    info = json.loads((out / "run.json").read_text())
    del info["config"]["counters"], info["config"]["sources"]
    (out / "run.json").write_text(json.dumps(info))
    return out


def test_an_old_run_loads_with_its_nine_counters_and_scores(old_run: Path, split_dir: Path) -> None:
    ranker, cfg, retrieval_run = load_ranker(old_run)
    assert cfg.counters == COUNTER_NAMES and ranker.counter_names == COUNTER_NAMES
    assert ranker.num_counters == len(COUNTER_NAMES) and cfg.sources == () and ranker.num_sources == 0
    towers, retrieval_cfg = load_retrieval(retrieval_run)
    space = build_space(split_dir, retrieval_cfg.features)
    users = space.users.user_ids[:5].astype(object)
    items = space.catalog.item_ids[:5].astype(object)
    ts = np.full(5, np.datetime64("2024-01-05T12:00:00", "us"))
    scores = RankerScorer(space, towers, ranker, cfg.weights.as_dict()).score(users, ts, items)
    assert np.isfinite(scores).all()


def test_a_new_run_records_its_feature_names(runs: tuple[Path, Path]) -> None:
    info = json.loads((runs[1] / "run.json").read_text())
    assert tuple(info["config"]["counters"]) == RANKER_FEATURES  # the default
    assert tuple(info["config"]["sources"]) == SOURCE_FEATURES
    ranker, _, _ = load_ranker(runs[1])
    assert ranker.counter_names == RANKER_FEATURES and ranker.num_counters == len(RANKER_FEATURES)
    assert ranker.num_sources == len(SOURCE_FEATURES)


def _serve(bundle_dir: Path) -> Recommender:
    # No deadline: these tests check what the ranker reads, and a loaded CI box can overrun 50 ms
    # (the feed then comes back "rank skipped", which is the deadline working, not a failure here).
    settings = ServeSettings(deadline_ms=1e9, source_budget_ms=1e9)
    return Recommender(load_bundle(bundle_dir), settings, build_reranker(RerankConfig()), cache=None)


def test_an_old_bundle_serves_with_its_nine_counters(old_run: Path, tmp_path: Path) -> None:
    bundle_dir = write_bundle(old_run, tmp_path / "old_bundle")
    config = json.loads((bundle_dir / "config.json").read_text())
    del config["ranker"]["counters"], config["ranker"]["sources"]  # as written before either existed
    (bundle_dir / "config.json").write_text(json.dumps(config))
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest["files"] = file_hashes(bundle_dir)
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))
    rec = _serve(bundle_dir)
    assert rec.bundle.ranker_cfg.counters == COUNTER_NAMES and rec.bundle.ranker.num_counters == 9
    assert rec.bundle.ranker_cfg.sources == ()
    user = str(rec.bundle.space.users.user_ids[0])
    feed = rec.recommend(FeedRequest(user_id=user, k=5, now_us=rec.bundle.snapshot_us))
    assert len(feed.items) == 5 and "rank" not in " ".join(feed.degraded)


def ranked(
    rec: Recommender,
    user: np.ndarray,
    row: int,
    rows: np.ndarray,
    now: int,
    user_id: str,
    sources: np.ndarray | None = None,
) -> np.ndarray:
    """The served ranker's feed scores of `rows` for one user (online history included)."""
    online = [rec.online.user(user_id).timed_history(now)]
    scores, _ = rec.stages.rank(
        user, np.array([row]), rows[None, :], now, online, rec.online.item_clicks, rec._weights, sources
    )
    out: np.ndarray = scores[0]
    return out


def test_a_recency_ranker_serves_and_online_clicks_reach_its_features(
    bundle_path: Path, tmp_path: Path
) -> None:
    rec = _serve(shutil.copytree(bundle_path, tmp_path / "b"))
    assert rec.bundle.ranker_cfg.counters == RANKER_FEATURES
    space = rec.bundle.space
    user = str(space.users.user_ids[0])
    now = rec.bundle.snapshot_us + 3_600_000_000  # an hour after the snapshot: a new session
    feed = rec.recommend(FeedRequest(user_id=user, k=5, now_us=now))
    assert len(feed.items) == 5 and not feed.degraded
    rows = space.catalog.rows(pl.Series([it.item_id for it in feed.items]))
    zeros = np.zeros((1, *rec.catalog.default_user.shape), np.float32)
    before = ranked(rec, zeros, 0, rows, now, user)
    assert rec.record_event(user, feed.items[0].item_id, "click", now - 60_000_000, None)
    after = ranked(rec, zeros, 0, rows, now, user)
    assert not np.array_equal(before, after)  # the click counters and the session moved


def test_the_served_ranker_reads_which_sources_proposed_each_candidate(bundle_path: Path) -> None:
    rec = _serve(bundle_path)
    assert rec.bundle.ranker_cfg.sources == SOURCE_FEATURES
    space = rec.bundle.space
    user = str(space.users.user_ids[0])
    now = rec.bundle.snapshot_us
    row = int(space.users.rows(pl.Series([user], dtype=pl.String))[0])
    vector = rec.stages.user_vectors(np.array([row]), [[]], now)
    ann = rec.stages.retrieve(vector, now, rec.settings.candidates, [set()])
    pools = rec.stages.candidates(
        vector, ann, now, rec.settings.candidates, [user], [set()], lambda: 1e9, 1e9
    )
    assert pools.sets[0].sources[:, 1:].any()  # other sources than the ANN proposed some candidates
    scores = ranked(rec, vector, row, pools.rows[0], now, user, pools.features)
    silent = np.zeros_like(pools.features)
    assert not np.allclose(ranked(rec, vector, row, pools.rows[0], now, user, silent), scores)


def test_pool_negatives_come_from_each_clicks_candidate_pool(
    split_dir: Path, runs: tuple[Path, Path]
) -> None:
    from feedrank.data.examples import ranker_examples
    from feedrank.data.split import open_split
    from feedrank.train.run import SourceReplay, _tower_tables

    towers, retrieval_cfg = load_retrieval(runs[0])
    space = build_space(split_dir, retrieval_cfg.features)
    train = open_split(split_dir)["train"].read("impressions")
    rows, requests = ranker_examples(space, train.head(3_000))
    replay = SourceReplay(space, towers, requests, _tower_tables(towers, space, requests))
    cfg = RankerRunConfig(loss=dataclasses.replace(RankerRunConfig().loss, pool_negatives=4, pool_size=30))
    out = replay.with_pool_negatives(rows, cfg, np.random.default_rng(0))
    added = slice(rows["item_row"].size, out["item_row"].size)
    clicks = np.flatnonzero(rows["y_click"] > 0)
    assert clicks.size and out["item_row"][added].size > 2 * clicks.size  # about 4 per click
    assert not out["y_click"][added].any() and not out["y_share"][added].any()
    # each negative is in its request's pool (the same lists the source columns read) ...
    pools = {
        r: merge(lists, replay.logged.sources.config.quotas(), 30).item_rows
        for r, lists in replay.logged.walk(replay.requests, np.unique(rows["request_index"][clicks]))
    }
    for request, item in zip(
        out["request_index"][added].tolist(), out["item_row"][added].tolist(), strict=True
    ):
        assert item in pools[request]
    # ... and never a click of that request
    clicked = {
        (r, i)
        for r, i in zip(
            rows["request_index"][clicks].tolist(), rows["item_row"][clicks].tolist(), strict=True
        )
    }
    pairs = set(zip(out["request_index"][added].tolist(), out["item_row"][added].tolist(), strict=True))
    assert not pairs & clicked
